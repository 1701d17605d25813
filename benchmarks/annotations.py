"""Span annotation write benchmark (DESIGN §9): updates sustained through HTTP against
`tagflow serve`, as ratios against the unannotated get_spans call measured in the same run.

    python -m benchmarks annotations                  # 200 updates/s for 20 s
    python -m benchmarks annotations --rate 400 --seconds 60

Data: one synthetic tenant (`--tags` tags, `--days` days from 2026-03-01) in a throwaway
embedded PostgreSQL, materialised through Dagster, served by `tagflow serve` in a subprocess
with its state database (TAGFLOW_STATE_URL) on the same server. One tag's computed spans are
the written ones; another tag, never annotated, is the baseline.

Measured, all through HTTP (httpx, one client per thread, keep-alive):
- baseline: `--reads` get_spans calls of the unannotated tag over one day (p50, p99);
- first annotations: each written span's first update (revision 0: the service reads the
  span back from the datasets to check it exists), one after the other (p50, p99);
- sustained: an open loop at `--rate` updates/s for `--seconds` s, spread over `--threads`
  threads that each update their own spans (no conflicts). Latency runs from when an update was
  due, not when it was sent, so a service that falls behind shows it (coordinated omission is
  counted, not hidden). Reports the rate achieved, p50/p99/max, errors, and the CPU time the
  service process spent per update (what bounds the rate on a machine of few cores).

Output: a table printed and the figures in benchmarks/results/annotations.json with the machine
line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from benchmarks.e2e import RESULTS_DIR, machine
from tagflow.annotations.state_database import database_on_server
from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import MIN_TAGS, generate_plant
from tagflow.readapi import Client, Span
from tagflow.readapi.server.keys import KeyStore
from tagflow.settings import Settings
from tagflow.source.embedded import temporary_server

TENANT = "bench_notes"
START = date(2026, 3, 1)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "calls": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
    }


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(root: Path, keys: Path, source_url: str, state_url: str, log: Path) -> tuple[Any, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tagflow.cli",
        "serve",
        f"--store={root}",
        f"--port={port}",
        f"--keys-file={keys}",
        f"--source-url={source_url}",
    ]
    env = {**os.environ, "TAGFLOW_STATE_URL": state_url}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("tagflow serve did not start:\n" + log.read_text()[-3000:])
        try:
            if httpx.get(f"{url}/v1/health").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_annotations(url: str, key: str, spans: list[Span]) -> list[float]:
    took = []
    with Client(host=url, api_key=key) as client:
        for span in spans:
            began = time.perf_counter()
            client.update_span(span, revision=0, labels={"run": "0"})
            took.append(time.perf_counter() - began)
    return took


def sustained(
    url: str, key: str, spans: list[Span], rate: float, seconds: float, threads: int
) -> dict[str, Any]:
    """Open loop: update k is due at start + k / rate; thread k % threads sends it."""
    total = int(rate * seconds)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    start = time.perf_counter() + 0.5

    def worker(number: int) -> None:
        mine = spans[number::threads]
        revisions = {span.id: 1 for span in mine}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            for k in range(number, total, threads):
                due = start + k / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                span = mine[(k // threads) % len(mine)]
                body = {"revision": revisions[span.id], "labels": {"run": str(k)}, "note": str(k)}
                answer = http.patch(f"/v1/annotations/spans/{span.id}", json=body)
                latencies[number].append(time.perf_counter() - due)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
                revisions[span.id] = answer.json()["metadata"]["revision"]

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    every = [value for values in latencies for value in values]
    return {
        **summary(every),
        "target_per_s": rate,
        "achieved_per_s": len(every) / elapsed,
        "seconds": elapsed,
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with temporary_server() as pg_url, tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        generate_plant(
            pg_url,
            [TENANT],
            tags=args.tags,
            days=args.days,
            start=START,
            seed=11,
            rows_per_tag_day=args.rows_per_day,
        )
        settings = Settings(source_url=pg_url, store=str(work / "store"))
        end = START + timedelta(days=args.days)
        runs = materialize_days(TENANT, START, end, dg.DagsterInstance.ephemeral(), settings)
        assert all(run.success for run in runs), "materialisation failed"
        state_url = database_on_server(pg_url, "tagflow_state")
        key, _ = KeyStore(work / "keys.json").add(TENANT, write=True, label="bench")
        process, url = serve(work / "store", work / "keys.json", pg_url, state_url, work / "log")
        try:
            day = (
                datetime.fromisoformat(f"{START.isoformat()}T00:00:00+00:00"),
                datetime.fromisoformat(f"{(START + timedelta(days=1)).isoformat()}T00:00:00+00:00"),
            )
            with Client(host=url, api_key=key) as client:
                tags = [t.name for t in client.get_tags() if not t.derived]
                written_tag, baseline_tag = tags[0], tags[1]
                whole = (day[0], day[0] + timedelta(days=args.days))
                spans = [s for s in client.get_spans(written_tag, whole) if s.raw_end_at][
                    : args.spans
                ]
                for _ in range(5):
                    client.get_spans(baseline_tag, day)
                reads = []
                for _ in range(args.reads):
                    began = time.perf_counter()
                    answer = client.get_spans(baseline_tag, day)
                    reads.append(time.perf_counter() - began)
            baseline = {**summary(reads), "spans": len(answer)}
            first = summary(first_annotations(url, key, spans))
            cpu_before = cpu_seconds(process.pid)
            load = sustained(url, key, spans, args.rate, args.seconds, args.threads)
            load["server_cpu_ms_per_update"] = (
                (cpu_seconds(process.pid) - cpu_before) * 1000 / max(1, load["calls"])
            )
        except Exception:
            print((work / "log").read_text()[-4000:], file=sys.stderr)  # why the service failed
            raise
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "machine": machine(),
        "sizes": {
            "tags": args.tags,
            "days": args.days,
            "rows_per_tag_day": args.rows_per_day,
            "written_spans": len(spans),
            "threads": args.threads,
        },
        "get_spans_unannotated": baseline,
        "first_annotation": first,
        "sustained_updates": load,
        "ratios": {
            "update_p50_vs_get_spans_p50": load["p50_ms"] / baseline["p50_ms"],
            "update_p99_vs_get_spans_p99": load["p99_ms"] / baseline["p99_ms"],
            "first_p50_vs_get_spans_p50": first["p50_ms"] / baseline["p50_ms"],
        },
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"\nmachine: {results['machine']}")
    print(f"{'call':34} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("get_spans_unannotated", "first_annotation", "sustained_updates"):
        row = results[name]
        print(
            f"{name:34} {row['calls']:>6} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['max_ms']:>8.2f}"
        )
    load = results["sustained_updates"]
    print(
        f"sustained: {load['achieved_per_s']:.1f}/s of {load['target_per_s']:.0f}/s target, "
        f"{load['errors']} errors; the service's CPU: "
        f"{load['server_cpu_ms_per_update']:.1f} ms per update"
    )
    for name, ratio in results["ratios"].items():
        print(f"{name}: {ratio:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", type=int, default=MIN_TAGS)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--rows-per-day", type=int, default=300)
    parser.add_argument("--spans", type=int, default=200, help="spans the updates go to")
    parser.add_argument("--reads", type=int, default=200, help="baseline get_spans calls")
    parser.add_argument("--rate", type=float, default=200.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="sustained for")
    parser.add_argument("--threads", type=int, default=16, help="writing threads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "annotations.json")
    args = parser.parse_args(argv)
    results = measure(args)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
