"""Fixtures of the pipeline tests: a tenant with ten days of history; what a run recorded."""

from datetime import date, timedelta

import dagster as dg
import pytest

from tagflow.assets.partitions import tenant_day_key
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.pipelines.sensors import recorded_source_versions
from tests.conftest import drop_tenant, unique_tenant_name

START = date(2026, 3, 1)
DAYS = 10


@pytest.fixture(scope="session")
def ten_days(pg_url, admin_conn):
    """A tenant with 10 days of history (and one day of data before, for the carry-in)."""
    tenant = unique_tenant_name("range")
    generate_plant(
        pg_url,
        [tenant],
        tags=14,
        days=DAYS + 1,
        start=START - timedelta(days=1),
        seed=11,
        rows_per_tag_day=30,
    )
    yield tenant
    drop_tenant(admin_conn, tenant)


def recorded_source_version(instance: dg.DagsterInstance, tenant: str, day: str) -> str | None:
    """The source fingerprint the latest materialisation of the tenant-day was built from (the
    late-data sensor's view); None if it was never materialised."""
    key = str(tenant_day_key(tenant, day))
    return recorded_source_versions(instance, [key]).get(key)
