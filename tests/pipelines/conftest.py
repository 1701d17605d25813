"""Fixtures of the pipeline tests: a tenant with ten days of history."""

from datetime import date, timedelta

import pytest

from tagflow.demo.synthetic_plant import generate_plant
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
