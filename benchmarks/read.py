"""Read benchmark: every read API call at several shapes, through the store (in process) and
HTTP (`tagflow serve`), warm and cold, against the same answer computed in SQL on the source,
all on the same data in one run.

    python -m benchmarks read --tags 2000 --days 30
    python -m benchmarks read --days 365 --reuse /var/tmp/tagflow-read-365   # load once, re-measure

Data: one tenant of `--tags` tags with about `--rows-per-day` rows a day (the synthetic plant:
analog, setpoint, boolean, counter and state tags, the state tags being strings), generated and
COPY-loaded `--chunk-days` days at a time (bounded memory), then backfilled through the product
with `tagflow backfill --in-process` in a subprocess (its wall time and peak RSS are reported).
With `--reuse DIR` the embedded PostgreSQL data dir (DIR/pg), the store (DIR/store) and what
the load measured (DIR/read-bench.json) persist, and a later run with the same sizes skips the
load and backfill (with --backfill-again only the load: a fresh store is backfilled, for a
changed write layout). The JSON records the product measured (git commit and changed files,
or READ_BENCH_PRODUCT outside a checkout). Later chunks leave out the plant's six special tags
(deaths, births, mixed kinds), so those keep the first chunk's history; the benchmark never
picks them.

Calls (ranges end at the end of the history; 1 day, 30 days and, with --days 365, 365 days):
get_spans of 1 tag, and get_spans_arrow (its columnar answer) of the same tags;
sample_metric_data (average) of 1 and 10 tags at 1h, 15m, 1m and 7m13s; get_metric_data of 1
and 10 tags; get_tags. Each call of a shape asks for other tags, drawn
at random with a fixed seed (numeric tags for samples, any tag otherwise); call k of a shape
asks for the same tags in every transport and in SQL. A shape the read API refuses as too large
(an InvalidTimeRange / InvalidArgument / AnswerTooLarge / RequestTooLarge on its first call) is
"refused".

spans_annotated (with --days 30 or more; `--only spans_annotated` alone): get_spans of 1 tag ×
30 days with 1,000 of its spans annotated in a state database, against the same call without
one, interleaved in one process (store transport), a garbage collection before each call;
printed as the added p50 and the ratio, the median of the paired differences and CPU times.

Transports:
- store warm: one `Client(store=..., tenant=...)` in this process; 2 warm-up calls, then
  `--calls` calls (p50, p95), cut short after `--budget-s` seconds per shape (at least 5 calls);
- HTTP warm: the same through one `Client(host=..., api_key=...)` against `tagflow serve` in a
  subprocess on a free loopback port (key from `tagflow keys add`), Arrow IPC on the wire;
- store cold: `--cold` fresh Python processes per shape, each importing the client and making
  one call; the call's own time and the import time (`from tagflow.readapi import Client`) are
  measured inside the process (p50 of each); process start-up is neither.

SQL on the source, as a CVec-SDK-style user would write it (psycopg, one long-lived connection,
every row fetched into Python tuples, no DataFrame built: this errs in SQL's favour), 1 warm-up
call then up to `--sql-calls` calls (p50), cut short after `--budget-s` (at least 3 calls):
- spans: the tag's rows in the range plus its last row before the range (one LIMIT 1 probe per
  table), duplicates resolved with DISTINCT ON (string first, then the greatest value), runs of
  equal values by a running sum of change flags (window functions). Simplification: the oldest
  span's raw_begin_at is the time of the last row before the range, not the true start of its
  run, and deaths are ignored (the picked tags have none);
- samples: the same rows per tag, each constant piece clipped to the range and split at bucket
  edges with generate_series over date_bin (aligned to the epoch like tagflow), twa as
  sum(value x seconds) / sum(seconds) over finite values;
- metric data: a join of tag_names with both value tables (duplicate instants are kept, so SQL
  may return a few more rows than tagflow, which drops them);
- get_tags: one EXISTS probe per tag and table over the range.

Checks, on the first measured call of each shape (same tags in every path): span count and
clipped begin times equal; sample buckets with a value equal in number and their sum within
1e-6 relative; metric rows within 1 % (duplicates); tag counts equal. HTTP answers must have the
store's size. The table prints each; the JSON holds the details.

Output: a table (ms) printed and written with every figure to
benchmarks/results/read-{tags}tags-{days}days.json, with the machine line.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg import sql

from benchmarks.e2e import RESULTS_DIR, machine, run_with_peak_rss
from tagflow.demo.synthetic_plant import (
    _PG_EPOCH_US,  # the plant's own binary COPY helpers, reused to append later chunks
    SPECIAL_TAGS,
    PlantRows,
    _binary_copy,
    load_plant_rows,
    plant_rows,
)
from tagflow.errors import AnswerTooLarge, InvalidArgument, InvalidTimeRange, TagflowError
from tagflow.readapi import Client
from tagflow.schemas.source_ddl import create_tenant
from tagflow.source.connection import libpq_url
from tagflow.source.embedded import embedded_server_url, stop_embedded_server, temporary_server

TENANT = "bench_read"
SOURCE_KEY = "bench-read-key-not-a-secret"  # the tenant role's password (unused here)
START = date(2025, 1, 1)
TAGFLOW = Path(sys.executable).parent / "tagflow"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
WIDTHS = ("1h", "15m", "1m", "7m13s")
STRING_KINDS = ("state",)
NUMERIC_KINDS = ("analog", "setpoint", "boolean", "counter")
# Mean rows per tag-day of plant_rows is about 0.5 × rows_per_tag_day + 4.8 (see benchmarks.e2e).
_ROWS_PER_RATE = 0.5
_FIXED_ROWS_PER_TAG = 4.8
WARMUP = 2
MIN_CALLS = 5
MIN_SQL_CALLS = 3
META = "read-bench.json"


# ---------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class Shape:
    """One call at one size: `tags` tags (0: get_tags), over the last `days` days."""

    call: str  # get_spans | get_spans_arrow | sample_metric_data | get_metric_data | get_tags
    tags: int
    days: int
    width: str | None = None

    @property
    def key(self) -> str:
        return f"{self.call}:{self.tags}:{self.width or '-'}:{self.days}"

    @property
    def draw(self) -> str:
        """The key its tags are drawn by: a columnar answer asks for its records' tags."""
        return self.key.replace("get_spans_arrow:", "get_spans:")

    @property
    def spans(self) -> bool:
        return self.call in ("get_spans", "get_spans_arrow")

    @property
    def label(self) -> str:
        parts = [] if not self.tags else [f"{self.tags} tag{'s' if self.tags > 1 else ''}"]
        if self.width:
            parts.append(self.width)
        parts.append(f"{self.days} d")
        return " × ".join(parts)


def shapes_for(ranges: list[int]) -> list[Shape]:
    out: list[Shape] = []
    for days in ranges:
        out.append(Shape("get_spans", 1, days))
        out.append(Shape("get_spans_arrow", 1, days))
        for tags in (1, 10):
            out += [Shape("sample_metric_data", tags, days, width) for width in WIDTHS]
        out += [Shape("get_metric_data", tags, days) for tags in (1, 10)]
        out.append(Shape("get_tags", 0, days))
    return out


@dataclass(frozen=True)
class Plan:
    """What every path of the run shares: where the data is and which tags each call asks."""

    store: str
    source_url: str
    end: datetime  # end of the backfilled history
    numeric: tuple[str, ...]
    anything: tuple[str, ...]
    seed: int

    def time_range(self, shape: Shape) -> tuple[datetime, datetime]:
        return self.end - timedelta(days=shape.days), self.end

    def tags(self, shape: Shape, index: int) -> list[str]:
        """The tags call `index` of `shape` asks for: the same in every transport and in SQL."""
        if not shape.tags:
            return []
        pool = self.numeric if shape.call == "sample_metric_data" else self.anything
        return random.Random(f"{self.seed}:{shape.draw}:{index}").sample(pool, shape.tags)


# ---------------------------------------------------------------------------------------------
# Data: load (COPY, a chunk of days at a time) and backfill through the product


def load_source(
    url: str, tags: int, days: int, rows_per_day: int, seed: int, chunk: int
) -> dict[str, Any]:
    """Create the tenant and COPY-load `days` days from START, `chunk` days at a time."""
    rate = max(4, round((rows_per_day / tags - _FIXED_ROWS_PER_TAG) / _ROWS_PER_RATE))
    rows = 0
    began = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        create_tenant(conn, TENANT, SOURCE_KEY)
        for index, first in enumerate(range(0, days, chunk)):
            plant = plant_rows(
                tags=tags,
                days=min(chunk, days - first),
                start=START + timedelta(days=first),
                seed=seed,
                rows_per_tag_day=rate,
                tenant_index=index,
            )
            if index == 0:
                load_plant_rows(conn, TENANT, plant)  # tag_names too; truncates the tables
                rows += len(plant.num_tag) + len(plant.str_tag)
            else:
                rows += append_rows(conn, plant)
            print(
                f"  loaded days {first + 1}..{min(first + chunk, days)}: {rows:,} rows, "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
            del plant
        vacuum_began = time.perf_counter()
        for table in ("tag_names", "tag_data", "tag_data_str"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}.{}").format(*_ids(table)))
    return {
        "rows": rows,
        "rows_per_tag_day": rate,
        "load_s": time.perf_counter() - began,
        "vacuum_analyze_s": time.perf_counter() - vacuum_began,
    }


def _ids(table: str) -> tuple[sql.Identifier, sql.Identifier]:
    return sql.Identifier(TENANT), sql.Identifier(table)


def append_rows(conn: psycopg.Connection, plant: PlantRows) -> int:
    """COPY a later chunk's rows into the tenant's tables (tag_names stays the first chunk's),
    without the special tags, whose deaths and births belong to the first chunk."""
    keep = plant.num_tag > len(SPECIAL_TAGS)
    valued, null = keep & ~plant.num_null, keep & plant.num_null
    keep_str = plant.str_tag > len(SPECIAL_TAGS)
    target = "COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)"
    with conn.transaction(), conn.cursor() as cur:
        for mask, columns in ((valued, "tag_name_id, tag_value_changed_at, tag_value"),
                              (null, "tag_name_id, tag_value_changed_at")):  # fmt: skip
            fields = [
                ("tag", plant.num_tag[mask].astype(np.int32)),
                ("time", plant.num_time[mask] - _PG_EPOCH_US),
            ]
            if mask is valued:
                fields.append(("value", plant.num_value[mask]))
            with cur.copy(sql.SQL(target).format(*_ids("tag_data"), sql.SQL(columns))) as copy:
                copy.write(_binary_copy(fields))
        text = "COPY {}.{} (tag_name_id, tag_value_changed_at, tag_value) FROM STDIN"
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        with cur.copy(sql.SQL(text).format(*_ids("tag_data_str"))) as copy:
            for tag, us, value in zip(
                plant.str_tag.tolist(), plant.str_time.tolist(), plant.str_value, strict=True
            ):
                if tag > len(SPECIAL_TAGS):
                    copy.write_row((tag, epoch + timedelta(microseconds=us), value))
    return int(keep.sum() + keep_str.sum())


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the product's processes: no TAGFLOW_* of the caller's, only ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGFLOW_")}
    return {**env, **extra}


def backfill(url: str, store: Path, home: Path, days: int) -> dict[str, Any]:
    """`tagflow backfill --in-process` over the history: wall time and peak RSS."""
    command = [
        str(TAGFLOW), "backfill", "--in-process", "--tenant", TENANT,
        "--start", START.isoformat(), "--end", (START + timedelta(days=days)).isoformat(),
        "--source-url", url, "--store", str(store),
    ]  # fmt: skip
    wall, rss = run_with_peak_rss(command, child_env(DAGSTER_HOME=str(home)))
    return {"days": days, "wall_s": wall, "days_per_s": days / wall, "peak_rss_mib": rss}


def store_summary(store: Path) -> dict[str, dict[str, float]]:
    """Files and MiB per dataset of the tenant."""
    out = {}
    for dataset in sorted(p for p in store.iterdir() if p.is_dir()):
        files = list((dataset / f"tenant={TENANT}").rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        out[dataset.name] = {"files": len(files), "mib": round(size / 2**20, 2)}
    return out


@contextmanager
def source_server(reuse: Path | None) -> Iterator[str]:
    """A throwaway embedded PostgreSQL, or with --reuse a persistent one in DIR/pg (stopped,
    not deleted, at the end)."""
    if reuse is None:
        with temporary_server() as url:
            yield url
        return
    data_dir = reuse / "pg"
    url = embedded_server_url(data_dir, keep_running=True)
    try:
        yield url
    finally:
        stop_embedded_server(data_dir)


def prepare_data(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    """Load and backfill, or with --reuse the previous load's record when its sizes match."""
    wanted = {
        "tags": args.tags,
        "days": args.days,
        "rows_per_day": args.rows_per_day,
        "seed": args.seed,
        "start": START.isoformat(),
    }
    meta_path = workdir / META
    if args.reuse is not None and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["sizes"] != wanted:
            sys.exit(
                f"--reuse {args.reuse} holds {meta['sizes']}, not {wanted}: pass the same "
                "sizes, or another (empty) directory"
            )
        if not args.backfill_again:
            print(f"reusing the load and backfill of {meta['date']} in {args.reuse}")
            return {**meta, "reused": True}
        print(f"reusing the load of {meta['date']} in {args.reuse}; backfilling again")
        meta["backfill"] = rebackfill(url, workdir, args.days)
        meta["store"] = store_summary(workdir / "store")
        meta["product"] = product_version()
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        return {**meta, "reused": "load"}
    print(f"loading {args.days} days × {args.tags} tags × ~{args.rows_per_day:,} rows/day")
    load = load_source(url, args.tags, args.days, args.rows_per_day, args.seed, args.chunk_days)
    print(f"loaded {load['rows']:,} rows in {load['load_s']:.0f} s", flush=True)
    filled = rebackfill(url, workdir, args.days)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": wanted,
        "load": load,
        "backfill": filled,
        "store": store_summary(workdir / "store"),
        "product": product_version(),
    }
    if args.reuse is not None:
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return {**meta, "reused": False}


def rebackfill(url: str, workdir: Path, days: int) -> dict[str, Any]:
    """A fresh store and Dagster home, backfilled from the loaded source."""
    for stale in (workdir / "store", workdir / "home"):
        if stale.exists():
            shutil.rmtree(stale)
    print("backfilling with tagflow backfill --in-process", flush=True)
    filled = backfill(url, workdir / "store", workdir / "home", days)
    print(
        f"tagflow backfill --in-process: {filled['wall_s']:.0f} s "
        f"({filled['days_per_s']:.2f} days/s, peak RSS {filled['peak_rss_mib']:,.0f} MiB)"
    )
    return filled


def product_version() -> str:
    """The commit of the product measured, and how many of its tracked files (benchmarks/ left
    out) differ from it: a read path being edited measures as what is on disk."""
    try:
        head = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--", ".", ":!benchmarks"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("READ_BENCH_PRODUCT", "unknown (not a git checkout)")
    return f"{head}" + (f" with {len(changed)} changed files" if changed else " (clean)")


def tag_pools(url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric tags, any tag), the special tags left out; kinds read from the plant's names."""
    with psycopg.connect(libpq_url(url)) as conn:
        names = [
            row[0]
            for row in conn.execute(
                sql.SQL("SELECT normalized_name FROM {}.{} WHERE id > %s ORDER BY id").format(
                    *_ids("tag_names")
                ),
                (len(SPECIAL_TAGS),),
            )
        ]
    kind = {name: name.rsplit("/", 1)[1].rsplit("_", 1)[0] for name in names}
    numeric = tuple(n for n in names if kind[n] in NUMERIC_KINDS)
    anything = tuple(n for n in names if kind[n] in NUMERIC_KINDS + STRING_KINDS)
    return numeric, anything


# ---------------------------------------------------------------------------------------------
# Calls through the client, and what is compared of their answers


# AnswerTooLarge: over TAGFLOW_MAX_CELLS / TAGFLOW_MAX_ROWS, the limits issue 17 sizes.
REFUSALS = (InvalidTimeRange, InvalidArgument, AnswerTooLarge)


def is_refusal(error: Exception) -> bool:
    return isinstance(error, REFUSALS) or type(error).__name__ == "RequestTooLarge"


def client_call(client: Client, shape: Shape, tags: list[str], window: tuple) -> Any:
    if shape.call == "get_spans":
        return client.get_spans(tags[0], window)
    if shape.call == "get_spans_arrow":
        return client.get_spans_arrow(tags[0], window)
    if shape.call == "sample_metric_data":
        return client.sample_metric_data(
            shape.width, aggregate_function="average", tag_names=tags, time_range=window
        )
    if shape.call == "get_metric_data":
        return client.get_metric_data(tags, window)
    return client.get_tags(window)


def digest(times: Iterable[datetime]) -> str:
    """A short fingerprint of a set of instants (the spans' clipped begins)."""
    text = "\n".join(sorted(t.astimezone(UTC).isoformat() for t in times))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def client_summary(shape: Shape, answer: Any) -> dict[str, Any]:
    """What the check compares of a client answer."""
    if shape.call == "get_spans":
        return {"rows": len(answer), "begins": digest(s.begin_at for s in answer)}
    if shape.call == "get_spans_arrow":
        return {"rows": len(answer), "begins": digest(answer.column("begin_at").to_pylist())}
    if shape.call == "sample_metric_data":
        values = answer.drop(columns=answer.columns[0]).to_numpy(dtype=float)
        finite = values[~np.isnan(values)]
        return {"rows": len(answer), "cells": int(finite.size), "sum": float(finite.sum())}
    return {"rows": len(answer)}


def percentiles(seconds: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "n": len(seconds)}


def timed_calls(
    run: Callable[[int], Any], first: int, calls: int, minimum: int, budget_s: float
) -> tuple[list[float], Any]:
    """Seconds of run(first), run(first + 1), …: `calls` of them, fewer (at least `minimum`)
    once `budget_s` is spent; and the first call's answer."""
    seconds: list[float] = []
    answer = None
    began = time.perf_counter()
    for k in range(calls):
        t0 = time.perf_counter()
        result = run(first + k)
        seconds.append(time.perf_counter() - t0)
        if k == 0:
            answer = result
        if k + 1 >= minimum and time.perf_counter() - began > budget_s:
            break
    return seconds, answer


def warm(client: Client, plan: Plan, shape: Shape, args: argparse.Namespace) -> dict[str, Any]:
    """WARMUP untimed calls, then the timed ones (p50, p95) and the first timed answer's
    summary; {"refused": message} if the API refuses the shape."""
    window = plan.time_range(shape)

    def run(index: int) -> Any:
        return client_call(client, shape, plan.tags(shape, index), window)

    try:
        run(0)
    except TagflowError as error:
        if is_refusal(error):
            return {"refused": f"{type(error).__name__}: {error}"}
        raise
    for index in range(1, WARMUP):
        run(index)
    seconds, answer = timed_calls(run, WARMUP, args.calls, MIN_CALLS, args.budget_s)
    return {**percentiles(seconds), "check": client_summary(shape, answer)}


# A fresh interpreter per cold call: what it imports and does is all it costs.
_COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from tagflow.readapi import Client
t1 = time.perf_counter()
from datetime import datetime
spec = json.loads(sys.argv[1])
window = (datetime.fromisoformat(spec["start"]), datetime.fromisoformat(spec["end"]))
client = Client(store=spec["store"], tenant=spec["tenant"], source_url=spec["source_url"])
t2 = time.perf_counter()
tags, call = spec["tags"], spec["call"]
if call == "get_spans":
    answer = client.get_spans(tags[0], window)
elif call == "get_spans_arrow":
    answer = client.get_spans_arrow(tags[0], window)
elif call == "sample_metric_data":
    answer = client.sample_metric_data(spec["width"], aggregate_function="average",
                                       tag_names=tags, time_range=window)
elif call == "get_metric_data":
    answer = client.get_metric_data(tags, window)
else:
    answer = client.get_tags(window)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "client_s": t2 - t1, "call_s": t3 - t2,
                  "rows": len(answer)}))
"""


def cold(plan: Plan, shape: Shape, processes: int) -> dict[str, Any]:
    """`processes` fresh Python processes, each importing the client and making one call."""
    start, end = plan.time_range(shape)
    runs = []
    for index in range(processes):
        spec = {
            "store": plan.store,
            "tenant": TENANT,
            "source_url": plan.source_url,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "call": shape.call,
            "width": shape.width,
            "tags": plan.tags(shape, WARMUP + index),
        }
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _COLD_SCRIPT, json.dumps(spec)],
            env=child_env(),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"cold call {shape.key} failed:\n{done.stderr[-3000:]}")
        runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": wall})

    def p50_ms(field: str) -> float:
        return float(np.median([r[field] for r in runs]) * 1000)

    return {
        "call_p50_ms": p50_ms("call_s"),
        "import_p50_ms": p50_ms("import_s"),
        "client_p50_ms": p50_ms("client_s"),
        "process_p50_ms": p50_ms("process_s"),
        "n": len(runs),
    }


# ---------------------------------------------------------------------------------------------
# The same answers in SQL on the source

# Rows of the asked tags (n: id, normalized_name) in [start, end), plus each tag's last row
# before start (the later of one LIMIT 1 probe per table), as (tag, t, vd, vs, prio).
_ROWS = """
r AS (
    SELECT d.tag_name_id AS tag, d.tag_value_changed_at AS t, d.tag_value AS vd,
           NULL::text AS vs, 0 AS prio
      FROM {s}.tag_data d JOIN n ON n.id = d.tag_name_id
     WHERE d.tag_value_changed_at >= %(start)s AND d.tag_value_changed_at < %(end)s
    UNION ALL
    SELECT x.tag_name_id, x.tag_value_changed_at, NULL, x.tag_value, 1
      FROM {s}.tag_data_str x JOIN n ON n.id = x.tag_name_id
     WHERE x.tag_value_changed_at >= %(start)s AND x.tag_value_changed_at < %(end)s
    UNION ALL
    SELECT n.id, c.t, c.vd, c.vs, c.prio FROM n CROSS JOIN LATERAL (
        SELECT * FROM (
            (SELECT tag_value_changed_at AS t, tag_value AS vd, NULL::text AS vs, 0 AS prio
               FROM {s}.tag_data WHERE tag_name_id = n.id AND tag_value_changed_at < %(start)s
              ORDER BY tag_value_changed_at DESC LIMIT 1)
            UNION ALL
            (SELECT tag_value_changed_at, NULL, tag_value, 1
               FROM {s}.tag_data_str
              WHERE tag_name_id = n.id AND tag_value_changed_at < %(start)s
              ORDER BY tag_value_changed_at DESC LIMIT 1)
        ) both_tables ORDER BY t DESC, prio DESC LIMIT 1
    ) c
), d AS (
    SELECT DISTINCT ON (tag, t) tag, t, vd, vs FROM r
     ORDER BY tag, t, prio DESC, vs DESC NULLS LAST, vd DESC NULLS LAST
)"""

SQL_SPANS = (
    "WITH n AS (SELECT id FROM {s}.tag_names WHERE normalized_name = %(name)s),"
    + _ROWS
    + """, c AS (
    SELECT t, vd, vs,
           CASE WHEN lag(t) OVER w IS NULL OR vd IS DISTINCT FROM lag(vd) OVER w
                  OR vs IS DISTINCT FROM lag(vs) OVER w THEN 1 ELSE 0 END AS new_run
      FROM d WINDOW w AS (ORDER BY t)
), g AS (
    SELECT t, vd, vs, sum(new_run) OVER (ORDER BY t) AS run FROM c
), runs AS (
    SELECT min(t) AS raw_begin, min(vd) AS vd, min(vs) AS vs FROM g GROUP BY run
), sp AS (
    SELECT raw_begin, lead(raw_begin) OVER (ORDER BY raw_begin) AS raw_end, vd, vs FROM runs
)
SELECT raw_begin AS raw_begin_at,
       CASE WHEN raw_end < %(end)s THEN raw_end END AS raw_end_at,
       greatest(raw_begin, %(start)s) AS begin_at,
       least(coalesce(raw_end, %(end)s), %(end)s) AS end_at,
       vd AS value_double, vs AS value_string
  FROM sp
 WHERE coalesce(raw_end, 'infinity') > %(start)s
 ORDER BY raw_begin DESC
"""
)

SQL_SAMPLES = (
    "WITH n AS (SELECT id, normalized_name FROM {s}.tag_names"
    " WHERE normalized_name = ANY(%(names)s)),"
    + _ROWS
    + """, p AS (
    SELECT tag, greatest(t, %(start)s) AS t0,
           coalesce(lead(t) OVER (PARTITION BY tag ORDER BY t), %(end)s) AS t1, vd
      FROM d
), x AS (
    SELECT p.tag, b.bucket, p.vd,
           extract(epoch FROM least(p.t1, b.bucket + %(width)s) - greatest(p.t0, b.bucket))
             AS seconds
      FROM p CROSS JOIN LATERAL generate_series(
               date_bin(%(width)s, p.t0, timestamptz '1970-01-01 00:00:00+00'),
               p.t1 - interval '1 microsecond', %(width)s) AS b(bucket)
     WHERE p.t1 > p.t0
)
SELECT n.normalized_name AS tag_name, x.bucket AS bucket_start,
       sum(x.vd * x.seconds) FILTER (WHERE x.vd <> ALL ('{{NaN,Infinity,-Infinity}}'))
         / nullif(sum(x.seconds) FILTER (WHERE x.vd <> ALL ('{{NaN,Infinity,-Infinity}}')), 0)
         AS twa
  FROM x JOIN n ON n.id = x.tag
 GROUP BY 1, 2
 ORDER BY 1, 2
"""
)

SQL_METRIC_DATA = """
SELECT n.normalized_name AS tag_name, d.tag_value_changed_at AS time,
       d.tag_value AS value_double, NULL::text AS value_string
  FROM {s}.tag_names n JOIN {s}.tag_data d ON d.tag_name_id = n.id
 WHERE n.normalized_name = ANY(%(names)s)
   AND d.tag_value_changed_at >= %(start)s AND d.tag_value_changed_at < %(end)s
UNION ALL
SELECT n.normalized_name, x.tag_value_changed_at, NULL, x.tag_value
  FROM {s}.tag_names n JOIN {s}.tag_data_str x ON x.tag_name_id = n.id
 WHERE n.normalized_name = ANY(%(names)s)
   AND x.tag_value_changed_at >= %(start)s AND x.tag_value_changed_at < %(end)s
 ORDER BY time, tag_name
"""

SQL_TAGS = """
SELECT n.id, n.normalized_name, n.birth_at, n.death_at
  FROM {s}.tag_names n
 WHERE EXISTS (SELECT 1 FROM {s}.tag_data d WHERE d.tag_name_id = n.id
                  AND d.tag_value_changed_at >= %(start)s AND d.tag_value_changed_at < %(end)s)
    OR EXISTS (SELECT 1 FROM {s}.tag_data_str x WHERE x.tag_name_id = n.id
                  AND x.tag_value_changed_at >= %(start)s AND x.tag_value_changed_at < %(end)s)
 ORDER BY n.normalized_name
"""

_SQL_OF = {
    "get_spans": SQL_SPANS,
    "get_spans_arrow": SQL_SPANS,
    "sample_metric_data": SQL_SAMPLES,
    "get_metric_data": SQL_METRIC_DATA,
    "get_tags": SQL_TAGS,
}


def _width(text: str) -> timedelta:
    units = {"h": 3600, "m": 60, "s": 1}
    seconds, number = 0, ""
    for ch in text:
        if ch.isdigit():
            number += ch
        else:
            seconds += int(number) * units[ch]
            number = ""
    return timedelta(seconds=seconds)


def sql_summary(shape: Shape, rows: list[tuple]) -> dict[str, Any]:
    if shape.spans:
        return {"rows": len(rows), "begins": digest(r[2] for r in rows)}
    if shape.call == "sample_metric_data":
        values = np.array([r[2] for r in rows if r[2] is not None], dtype=float)
        return {
            "rows": len({r[1] for r in rows}),
            "cells": int(values.size),
            "sum": float(values.sum()),
        }
    return {"rows": len(rows)}


def sql_calls(
    conn: psycopg.Connection, plan: Plan, shape: Shape, args: argparse.Namespace
) -> dict[str, Any]:
    """One warm-up, then up to --sql-calls timed calls (p50) and the first one's summary."""
    query = sql.SQL(_SQL_OF[shape.call]).format(s=sql.Identifier(TENANT))  # type: ignore[arg-type]
    start, end = plan.time_range(shape)

    def run(index: int) -> list[tuple]:
        tags = plan.tags(shape, index)
        params: dict[str, Any] = {"start": start, "end": end, "names": tags}
        if tags:
            params["name"] = tags[0]
        if shape.width:
            params["width"] = _width(shape.width)
        return conn.execute(query, params).fetchall()

    run(WARMUP - 1)
    seconds, rows = timed_calls(run, WARMUP, args.sql_calls, MIN_SQL_CALLS, args.budget_s)
    return {**percentiles(seconds), "check": sql_summary(shape, rows)}


def compare(shape: Shape, store: dict[str, Any], other: dict[str, Any]) -> str:
    """'ok', or what differs between the store's answer and SQL's to the same question."""
    mine, theirs = store["check"], other["check"]
    rows = f"{mine['rows']}≠{theirs['rows']}"
    if shape.spans and mine["begins"] != theirs["begins"]:
        return f"spans {rows}" if mine["rows"] != theirs["rows"] else "span begins differ"
    if shape.call == "get_tags" and mine["rows"] != theirs["rows"]:
        return f"tags {rows}"
    if shape.call == "get_metric_data":
        # SQL keeps rows at duplicate instants, which tagflow drops (about 0.2 %).
        if abs(mine["rows"] - theirs["rows"]) > max(1, 0.01 * theirs["rows"]):
            return f"rows {rows}"
    if shape.call == "sample_metric_data":
        if mine["cells"] != theirs["cells"]:
            return f"cells {mine['cells']}≠{theirs['cells']}"
        if not math.isclose(mine["sum"], theirs["sum"], rel_tol=1e-6, abs_tol=1e-6):
            return f"sum {mine['sum']:.6g}≠{theirs['sum']:.6g}"
        if theirs["rows"] > mine["rows"]:  # SQL has only buckets with a piece; tagflow all
            return f"buckets {rows}"
    return "ok"


# ---------------------------------------------------------------------------------------------
# The HTTP service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def read_service(store: Path, source_url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """`tagflow serve` on a free loopback port with a fresh key for the tenant: (URL, key)."""
    keys_file = workdir / "api_keys.json"
    keys_file.unlink(missing_ok=True)
    added = subprocess.run(
        [str(TAGFLOW), "keys", "add", TENANT, "--file", str(keys_file)],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    key = added.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (workdir / "serve.log").open("w")
    command = [
        str(TAGFLOW), "serve", "--store", str(store), "--port", str(port),
        "--keys-file", str(keys_file), "--source-url", source_url,
    ]  # fmt: skip
    server = subprocess.Popen(
        command, env=child_env(), cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tagflow serve did not start; see {workdir / 'serve.log'}")
            time.sleep(0.2)
        yield url, key
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# ---------------------------------------------------------------------------------------------
# get_spans with the annotation layer (DESIGN §9)

ANNOTATED_SPANS = 1000
ANNOTATED_DAYS = 30


def spans_annotated(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """get_spans of 1 tag × ANNOTATED_DAYS days with ANNOTATED_SPANS of its spans annotated
    (labels and a note each, every fifth end corrected, every tenth hidden), against the same
    call of a client without a state database: the two interleaved call by call in this
    process, so both see the same machine and caches. The state database is a fresh database
    of the source's server, dropped afterwards."""
    from tagflow.annotations import AnnotationStore, ComputedSpan
    from tagflow.annotations.state_database import database_on_server, dispose_state_engines
    from tagflow.readapi.engine.config import ReadConfig

    shape = Shape("get_spans", 1, ANNOTATED_DAYS)
    window = plan.time_range(shape)
    name = f"bench_state_{os.getpid()}_{int(time.time())}"
    state_url = database_on_server(plan.source_url, name)
    plain_config = ReadConfig(store=plan.store, source_url=plan.source_url)
    try:
        with (
            Client(store=plain_config, tenant=TENANT) as plain,
            Client(store=plain_config.replace(state_url=state_url), tenant=TENANT) as annotated,
        ):
            # The tag with the most spans among a few candidates: it needs ANNOTATED_SPANS.
            counts = {tag: len(plain.get_spans(tag, window)) for tag in plan.anything[:20]}
            tag = max(counts, key=lambda t: counts[t])
            spans = plain.get_spans(tag, window)
            if len(spans) < ANNOTATED_SPANS:
                return {"refused": f"{tag} has {len(spans)} spans, fewer than {ANNOTATED_SPANS}"}
            store = AnnotationStore.at(state_url)
            picks = np.linspace(0, len(spans) - 1, ANNOTATED_SPANS).round().astype(int)
            began = time.perf_counter()
            for n, index in enumerate(picks.tolist()):
                span = spans[index]
                end = None
                if n % 5 == 0 and span.raw_end_at is not None:
                    end = span.raw_begin_at + (span.raw_end_at - span.raw_begin_at) / 2
                store.update(
                    TENANT, span.id, revision=0, by="bench",
                    computed=ComputedSpan(tag, span.raw_begin_at, span.raw_end_at),
                    labels={"kind": "bench", "n": str(n)}, note=f"span {n}",
                    end_at=end, hidden=n % 10 == 0,
                )  # fmt: skip
            write_s = time.perf_counter() - began
            for _ in range(WARMUP):
                plain.get_spans(tag, window)
                annotated.get_spans(tag, window)
            without: list[float] = []
            with_layer: list[float] = []
            cpu_without: list[float] = []
            cpu_with: list[float] = []
            answer: list = []
            for _ in range(max(args.calls, 30)):
                # A collection before each call, untimed: the collector's pauses otherwise land
                # on whichever call happens to trigger them, and decide the comparison.
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                plain.get_spans(tag, window)
                t1, c1 = time.perf_counter(), time.process_time()
                without.append(t1 - t0)
                cpu_without.append(c1 - c0)
                answer = []
                gc.collect()
                t1, c1 = time.perf_counter(), time.process_time()
                answer = annotated.get_spans(tag, window)
                with_layer.append(time.perf_counter() - t1)
                cpu_with.append(time.process_time() - c1)
            merged = sum(span.metadata is not None for span in answer)
            # The state database's share: the one query a call makes, alone.
            query_s = []
            for _ in range(max(args.calls, 30)):
                t0 = time.perf_counter()
                store.for_read(TENANT, *window, computed_since=window[0])
                query_s.append(time.perf_counter() - t0)
    finally:
        dispose_state_engines()
        with psycopg.connect(libpq_url(plan.source_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip
    plain_p50 = percentiles(without)["p50_ms"]
    annotated_p50 = percentiles(with_layer)["p50_ms"]
    paired = [b - a for a, b in zip(without, with_layer, strict=True)]
    return {
        "tag": tag,
        "spans": len(spans),
        "annotated": ANNOTATED_SPANS,
        "with_metadata": merged,
        "write_s": write_s,
        "plain": percentiles(without),
        "annotated_call": percentiles(with_layer),
        "state_query": percentiles(query_s),
        "added_p50_ms": annotated_p50 - plain_p50,
        "ratio_p50": annotated_p50 / plain_p50,
        # Per pair of neighbouring calls, the annotated one's extra time: less swayed by the
        # machine's load than a difference of two medians.
        "added_paired_median_ms": statistics.median(paired) * 1000,
        "cpu_plain_p50_ms": statistics.median(cpu_without) * 1000,
        "cpu_annotated_p50_ms": statistics.median(cpu_with) * 1000,
    }


def annotated_line(row: dict[str, Any]) -> str:
    if "refused" in row:
        return f"spans_annotated: refused ({row['refused']})"
    return (
        f"spans_annotated: get_spans 1 tag × {ANNOTATED_DAYS} d ({row['spans']} spans, "
        f"{row['annotated']} annotated, {row['with_metadata']} answered with metadata): "
        f"p50 {row['annotated_call']['p50_ms']:.2f} ms against {row['plain']['p50_ms']:.2f} ms "
        f"without annotations: +{row['added_p50_ms']:.2f} ms, {row['ratio_p50']:.2f}× "
        f"(median of paired differences +{row['added_paired_median_ms']:.2f} ms; CPU p50 "
        f"{row['cpu_annotated_p50_ms']:.2f} against {row['cpu_plain_p50_ms']:.2f} ms; store "
        f"transport, {row['plain']['n']} interleaved calls each; the state database "
        f"query alone p50 {row['state_query']['p50_ms']:.2f} ms)"
    )


# ---------------------------------------------------------------------------------------------
# Driver


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m benchmarks read " + " ".join(args.argv),
        "tags": args.tags,
        "days": args.days,
        "rows_per_day": args.rows_per_day,
        "calls": args.calls,
        "cold_processes": args.cold,
        "sql_calls": args.sql_calls,
        "product": product_version(),
    }
    ranges = sorted({r for r in args.ranges if r <= args.days})
    with source_server(args.reuse) as url:
        results["data"] = prepare_data(args, url, workdir)
        store = workdir / "store"
        numeric, anything = tag_pools(url)
        end = datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=args.days)
        plan = Plan(str(store), url, end, numeric, anything, args.seed)
        shapes = shapes_for(ranges)
        if args.only:
            shapes = [s for s in shapes if any(word in s.key for word in args.only)]
        measured: list[dict[str, Any]] = []
        with (
            read_service(store, url, workdir) as (service, key),
            Client(store=str(store), tenant=TENANT, source_url=url) as local,
            Client(host=service, api_key=key) as remote,
            psycopg.connect(libpq_url(url), autocommit=True) as conn,
        ):
            for shape in shapes:
                row: dict[str, Any] = {"shape": asdict(shape), "label": shape.label}
                row["store"] = warm(local, plan, shape, args)
                if "refused" in row["store"]:
                    print(f"{shape.call} {shape.label}: refused ({row['store']['refused']})")
                    measured.append(row)
                    continue
                row["http"] = warm(remote, plan, shape, args)
                row["cold"] = cold(plan, shape, args.cold) if args.cold else {}
                row["sql"] = {} if args.skip_sql else sql_calls(conn, plan, shape, args)
                same = row["http"]["check"] == row["store"]["check"]
                row["check_http"] = "ok" if same else "differs from the store"
                row["check_sql"] = compare(shape, row["store"], row["sql"]) if row["sql"] else "-"
                measured.append(row)
                print(line(row), flush=True)
            if args.days >= ANNOTATED_DAYS and (not args.only or "spans_annotated" in args.only):
                results["spans_annotated"] = spans_annotated(plan, args)
                print(annotated_line(results["spans_annotated"]), flush=True)
        results["shapes"] = measured
        results["store_files"] = store_summary(store)
    return results


HEADER = (
    f"{'call':<19}{'shape':<20}{'store p50':>10}{'p95':>8}{'HTTP p50':>10}{'p95':>8}"
    f"{'cold':>8}{'SQL p50':>9}{'SQL/store':>10}{'SQL/HTTP':>9}  check (SQL; HTTP)"
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def line(row: dict[str, Any]) -> str:
    shape, store = row["shape"], row["store"]
    head = f"{shape['call']:<19}{row['label']:<20}"
    if "refused" in store:
        return head + f"{'refused':>10}"
    http, cold_run, sql_run = row["http"], row.get("cold") or {}, row.get("sql") or {}
    sql_p50 = sql_run.get("p50_ms")
    ratio_store = f"{sql_p50 / store['p50_ms']:.2f}×" if sql_p50 else "-"
    ratio_http = f"{sql_p50 / http['p50_ms']:.2f}×" if sql_p50 else "-"
    check = row["check_sql"] + ("" if row["check_http"] == "ok" else f"; HTTP {row['check_http']}")
    return (
        head
        + f"{_ms(store['p50_ms']):>10}{_ms(store['p95_ms']):>8}"
        + f"{_ms(http['p50_ms']):>10}{_ms(http['p95_ms']):>8}"
        + f"{_ms(cold_run.get('call_p50_ms')):>8}{_ms(sql_p50):>9}"
        + f"{ratio_store:>10}{ratio_http:>9}  {check}"
    )


def print_table(results: dict[str, Any]) -> None:
    data = results["data"]
    load, filled = data["load"], data["backfill"]
    loaded = f" (reused from {data['date']})" if data["reused"] else ""
    filled_note = " (reused)" if data["reused"] is True else ""
    print(
        f"\nread API, one tenant: {results['tags']:,} tags × {results['days']} days, "
        f"{load['rows']:,} source rows; product {results['product']}; {results['machine']}"
    )
    print(
        f"load (COPY) {load['load_s']:.0f} s{loaded}; tagflow backfill --in-process "
        f"{filled['wall_s']:.0f} s ({filled['days_per_s']:.2f} days/s, peak RSS "
        f"{filled['peak_rss_mib']:,.0f} MiB){filled_note}"
    )
    print(
        f"ms; warm p50/p95 over {results['calls']} calls after {WARMUP} warm-ups; cold: p50 of "
        f"{results['cold_processes']} fresh processes (the call only); SQL: p50 of up to "
        f"{results['sql_calls']} calls"
    )
    print(HEADER)
    for row in results["shapes"]:
        print(line(row))
    colds = [row["cold"] for row in results["shapes"] if row.get("cold")]
    if colds:
        imports = np.median([c["import_p50_ms"] for c in colds])
        processes = np.median([c["process_p50_ms"] for c in colds])
        print(
            f"cold processes: `from tagflow.readapi import Client` p50 {imports:.0f} ms "
            f"(not in the cold column); whole process p50 {processes:.0f} ms"
        )
    if "spans_annotated" in results:
        print(annotated_line(results["spans_annotated"]))
    short = []
    for row in results["shapes"]:
        for transport, wanted in (("store", results["calls"]), ("http", results["calls"]),
                                  ("sql", results["sql_calls"])):  # fmt: skip
            n = (row.get(transport) or {}).get("n", wanted)
            if n < wanted:
                short.append(f"{row['shape']['call']} {row['label']} {transport}: {n} calls")
    if short:
        print("cut short by --budget-s: " + "; ".join(short))


def _int(text: str) -> int:
    return int(text.replace("_", ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30, help="history to load and backfill")
    parser.add_argument("--rows-per-day", type=_int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk-days", type=int, default=31, help="days generated per COPY")
    parser.add_argument(
        "--ranges", type=lambda s: [int(x) for x in s.split(",")], default=[1, 30, 365],
        help="range lengths in days (those up to --days are measured)",
    )  # fmt: skip
    parser.add_argument("--calls", type=int, default=20, help="timed warm calls per shape")
    parser.add_argument("--cold", type=int, default=3, help="fresh processes per shape (0: none)")
    parser.add_argument("--sql-calls", type=int, default=10, help="timed SQL calls per shape")
    parser.add_argument(
        "--budget-s", type=float, default=60.0,
        help="per shape and path: stop timing after this long (at least 5 calls, 3 in SQL)",
    )  # fmt: skip
    parser.add_argument("--skip-sql", action="store_true")
    parser.add_argument("--only", nargs="*", help="measure only shapes whose key has a word")
    parser.add_argument(
        "--reuse", type=Path, default=None,
        help="keep the embedded PostgreSQL and the store in DIR; reuse them when sizes match",
    )  # fmt: skip
    parser.add_argument(
        "--backfill-again", action="store_true",
        help="with --reuse: keep the loaded source, backfill a fresh store (a new write layout)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    if args.reuse is not None:
        args.reuse = args.reuse.expanduser().resolve()
        args.reuse.mkdir(parents=True, exist_ok=True)
        results = measure(args, args.reuse)
    else:
        with tempfile.TemporaryDirectory(prefix="tagflow-read-") as tmp:
            results = measure(args, Path(tmp))
    print_table(results)
    out = args.out or RESULTS_DIR / f"read-{args.tags}tags-{args.days}days.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
