"""Backfill throughput: 30 days of one tenant materialised through Dagster (every asset and
check), as one run per day, as range runs, and split over parallel worker processes.

Each worker is a separate process running `tagflow backfill --in-process` over its share of
the days (consecutive ranges), all against one embedded PostgreSQL and one store, each with
its own Dagster instance (SQLite instances are not for concurrent writers; a deployment
shares a PostgreSQL-backed one). Wall time covers process start-up, imports and every run.

    python -m benchmarks backfill --days 30 --tags 200 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.e2e import RESULTS_DIR, machine
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.source.embedded import temporary_server

TENANT = "backfill"
START = date(2026, 1, 1)
TAGFLOW = Path(sys.executable).parent / "tagflow"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _shares(days: int, workers: int) -> list[tuple[date, date]]:
    """`workers` consecutive [start, end) ranges covering the days, as even as can be."""
    bounds = [START + timedelta(days=round(days * k / workers)) for k in range(workers + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if lo < hi]


def run_workers(
    url: str, workdir: Path, days: int, workers: int, days_per_run: int
) -> dict[str, Any]:
    """Wall time of `workers` processes backfilling their share of the days at once."""
    store = workdir / f"store-{workers}-{days_per_run}"
    began = time.perf_counter()
    processes = []
    for index, (lo, hi) in enumerate(_shares(days, workers)):
        env = {
            **os.environ,
            "DAGSTER_HOME": str(workdir / f"home-{workers}-{days_per_run}-{index}"),
            "TAGFLOW_SOURCE_URL": url,
            "TAGFLOW_STORE": str(store),
        }
        command = [
            str(TAGFLOW), "backfill", "--in-process", "--tenant", TENANT,
            "--start", lo.isoformat(), "--end", hi.isoformat(),
            "--days-per-run", str(days_per_run),
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command,
                env=env,
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    outputs = [process.communicate()[0] for process in processes]
    wall = time.perf_counter() - began
    if any(process.returncode for process in processes):
        raise RuntimeError("a backfill worker failed:\n" + "\n".join(outputs)[-4000:])
    runs = sum(out.count(": ok (run ") for out in outputs)
    return {"workers": workers, "days_per_run": days_per_run, "runs": runs, "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tags", type=int, default=200)
    parser.add_argument("--rows-per-tag-day", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "backfill.json")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "days": args.days,
        "tags": args.tags,
    }
    with temporary_server() as url, tempfile.TemporaryDirectory() as tmp:
        plant = generate_plant(
            url, [TENANT], tags=args.tags, days=args.days, start=START, seed=5,
            rows_per_tag_day=args.rows_per_tag_day,
        )  # fmt: skip
        tenant = plant.tenants[0]
        results["source_rows"] = tenant.numeric_rows + tenant.string_rows
        print(f"{args.days} days × {args.tags} tags, {results['source_rows']:,} rows")
        measured = [run_workers(url, Path(tmp), args.days, 1, 1)]
        for workers in args.workers:
            per_worker = -(-args.days // workers)
            measured.append(run_workers(url, Path(tmp), args.days, workers, per_worker))
        results["runs"] = measured
    base = next(m["wall_s"] for m in measured if m["workers"] == 1 and m["days_per_run"] > 1)
    print(f"\n{'workers':>8}{'days/run':>10}{'runs':>6}{'wall s':>10}{'days/s':>8}{'speed-up':>10}")
    for m in measured:
        m["speed_up"] = base / m["wall_s"]
        print(
            f"{m['workers']:>8}{m['days_per_run']:>10}{m['runs']:>6}{m['wall_s']:>10.1f}"
            f"{args.days / m['wall_s']:>8.2f}{m['speed_up']:>10.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
