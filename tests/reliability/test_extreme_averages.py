"""A tenant whose tags hold the largest finite values, materialised through the real day step
from an embedded PostgreSQL: every dataset is published and passes its audit, and the averages
the read API gives are the exact ones, from the store and from the source alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow.compute as pc
import pytest

from tagflow.cli.runs import materialize_days
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tagflow.schemas.registry import DATASETS
from tagflow.settings import Settings
from tests.conftest import copy_rows, drop_tenant, unique_tenant_name
from tests.pipelines.test_materialize import check_evaluations

D0 = datetime(2026, 3, 1, tzinfo=UTC)  # materialised
D1 = D0 + timedelta(days=1)  # left to the source fallback
BIRTH = datetime(2020, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)

# Per day, hand-worked: 12 hours at +1e308 and 12 at -1e308 average to exactly 0; one hour at
# 1e308 in a day of zeros to 1e308 · 3600 / 86400 = 1e308 / 24 (one correctly rounded
# division); 10 for 12 hours then 20 for 12 hours to 15.
ALTERNATING, SPIKE, NORMAL = "extreme/alternating", "extreme/spike", "plain/normal"
DAY_MEANS = {ALTERNATING: 0.0, SPIKE: 1e308 / 24, NORMAL: 15.0}


def source_rows() -> list[tuple]:
    rows = []
    for day in (D0, D1):
        rows += [(1, day + h * HOUR, 1e308 if h % 2 == 0 else -1e308) for h in range(24)]
        rows += [(2, day, 0.0), (2, day + 5 * HOUR, 1e308), (2, day + 6 * HOUR, 0.0)]
        rows += [(3, day, 10.0), (3, day + 12 * HOUR, 20.0)]
    return rows


@pytest.fixture(scope="module")
def extreme(pg_url, admin_conn, tmp_path_factory):
    from tagflow.schemas.source_ddl import create_tenant

    tenant = unique_tenant_name("extreme")
    create_tenant(admin_conn, tenant, "extreme-key")
    tags = [(1, ALTERNATING, BIRTH, None), (2, SPIKE, BIRTH, None), (3, NORMAL, BIRTH, None)]
    copy_rows(admin_conn, tenant, tags, source_rows(), [])
    root = tmp_path_factory.mktemp("extreme-store")
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=pg_url, store=str(root))
    runs = materialize_days(tenant, D0.date(), D1.date(), instance, settings)
    yield tenant, root, instance, runs
    drop_tenant(admin_conn, tenant)


def test_every_dataset_is_published_and_passes_its_audit(extreme):
    tenant, root, instance, runs = extreme
    assert [run.success for run in runs] == [True]
    assert check_evaluations(instance, runs[0].run_id) == {name: True for name in DATASETS}
    store = DatasetStore(root)
    for width in ("1m", "1h", "1d"):
        table = store.read(f"samples_{width}", tenant, date(2026, 3, 1))
        assert pc.all(pc.is_finite(table["twa"])).as_py()


def test_stored_day_averages_are_exact(extreme):
    tenant, root, _, _ = extreme
    day = DatasetStore(root).read("samples_1d", tenant, date(2026, 3, 1)).to_pylist()
    assert {row["tag_name"]: row["twa"] for row in day} == DAY_MEANS
    hours = DatasetStore(root).read("samples_1h", tenant, date(2026, 3, 1))
    alternating = hours.filter(pc.equal(hours["tag_name"], ALTERNATING))["twa"].to_pylist()
    assert alternating == [1e308 if h % 2 == 0 else -1e308 for h in range(24)]


def test_the_source_fallback_gives_the_same_exact_averages(extreme, pg_url):
    tenant, root, _, _ = extreme
    with Client(store=root, tenant=tenant, source_url=pg_url) as client:
        days = client.sample_metric_data("1d", time_range=(D0, D1 + timedelta(days=1)))
        # 2 h buckets are rolled up at read time, from stored 1 h samples on the first day.
        two_hours = client.sample_metric_data("2h", time_range=(D0, D1 + timedelta(days=1)))
    assert list(days["time"]) == [D0, D1]
    for name, mean in DAY_MEANS.items():
        assert list(days[name]) == [mean, mean]
    assert list(two_hours[ALTERNATING]) == [0.0] * 24
    assert list(two_hours[SPIKE]) == ([0.0, 0.0, 1e308 / 2] + [0.0] * 9) * 2
