"""Benchmark of the pure transforms on one synthetic tenant-day, against a naive pandas path.

Generates one day of raw rows in memory (random change times; analog, boolean, string and
mixed tags; NaN and NULL values, duplicates, orphans, deaths), then times resolve_rows,
spans_for_day, samples at 1 minute and roll-ups to 1 hour and 1 day (the day's chain,
transforms.day.compute_day, each stage timed). The pandas baseline
resamples each numeric tag with set_index(time).resample('1min'), forward fill and a naive
time-weighted mean; it runs on a subset of tags and is scaled linearly to all of them.

    python -m benchmarks.transforms --tags 2000 --rows 10000000
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS, TAGS, TS
from tagflow.transforms import pieces
from tagflow.transforms.day import compute_day

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAY_US = 86_400_000_000
DAY_START_US = (DAY - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
WORDS = np.array(["alarm", "auto", "fault", "idle", "manual", "off", "on", "run", "stop", "wait"])


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), type=pa.int64()).view(TS)


def synthetic_day(
    n_tags: int, n_rows: int, seed: int, shuffle: bool
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(raw_rows, raw_carry_in, tags) of one day; rows ordered as the source index streams
    them (per table by tag id, time) unless `shuffle`."""
    rng = np.random.default_rng(seed)
    tag_ids = np.arange(1, n_tags + 1, dtype=np.int32)
    # Kinds: 0 analog, 1 boolean, 2 string, 3 mixed (both tables).
    kind = rng.choice(4, size=n_tags, p=[0.6, 0.25, 0.1, 0.05])
    death = np.where(rng.random(n_tags) < 0.02, DAY_START_US + rng.integers(0, DAY_US, n_tags), -1)
    tags = pa.Table.from_arrays(
        [
            pa.array(tag_ids),
            pa.array([f"plant/area{i % 17:02d}/tag{i:06d}" for i in tag_ids]),
            _timestamps(np.full(n_tags, DAY_START_US - 400 * DAY_US)),
            pa.array(death, type=pa.int64(), mask=death < 0).view(TS),
            pa.array(np.array(["numeric", "numeric", "string", "mixed"])[kind]),
        ],
        schema=TAGS,
    )

    row_tag = rng.integers(0, n_tags, n_rows)
    row_time = DAY_START_US + rng.integers(0, DAY_US, n_rows)
    row_kind = kind[row_tag]
    is_string = (row_kind == 2) | ((row_kind == 3) & (rng.random(n_rows) < 0.5))
    analog = rng.normal(50.0, 10.0, n_rows).round(3)
    value = np.where(row_kind == 1, rng.integers(0, 2, n_rows).astype(float), analog)
    special = rng.random(n_rows)
    value[special < 0.005] = np.nan
    value_null = (special >= 0.005) & (special < 0.01)
    word = rng.integers(0, len(WORDS), n_rows)
    string_null = is_string & (special < 0.01)
    # A few duplicates (same tag and instant, another value) and orphans (unknown tag id).
    n_dup = n_rows // 1000
    dup_of = rng.integers(0, n_rows, n_dup)
    row_tag = np.concatenate([row_tag, row_tag[dup_of]])
    row_time = np.concatenate([row_time, row_time[dup_of]])
    is_string = np.concatenate([is_string, is_string[dup_of]])
    value = np.concatenate([value, value[dup_of] + 1.0])
    value_null = np.concatenate([value_null, np.zeros(n_dup, dtype=bool)])
    word = np.concatenate([word, rng.integers(0, len(WORDS), n_dup)])
    string_null = np.concatenate([string_null, np.zeros(n_dup, dtype=bool)])
    row_id = tag_ids[row_tag]
    row_id[rng.random(len(row_id)) < 0.0001] = n_tags + 1000

    carry_time = DAY_START_US - rng.integers(1, 3 * 3_600_000_000, n_tags)
    carry_string = (kind == 2) | ((kind == 3) & (rng.random(n_tags) < 0.5))
    raw_carry_in = pa.Table.from_arrays(
        [
            pa.array(tag_ids),
            _timestamps(carry_time),
            pa.array(rng.normal(50.0, 10.0, n_tags), type=pa.float64(), mask=carry_string),
            pa.array(np.where(carry_string, WORDS[rng.integers(0, len(WORDS), n_tags)], None)),
            pa.array(carry_string),
            _timestamps(carry_time - rng.integers(0, 5 * DAY_US, n_tags)),
        ],
        schema=RAW_CARRY_IN,
    )
    if shuffle:
        order = rng.permutation(len(row_id))
    else:
        order = np.lexsort((row_time, row_id, is_string))
    row_id, row_time, is_string = row_id[order], row_time[order], is_string[order]
    value, value_null, word, string_null = (
        value[order],
        value_null[order],
        word[order],
        string_null[order],
    )
    strings = pa.DictionaryArray.from_arrays(
        pa.array(word.astype(np.int32), mask=~is_string | string_null), pa.array(WORDS)
    ).cast(pa.string())
    raw_rows = pa.Table.from_arrays(
        [
            pa.array(row_id, type=pa.int32()),
            _timestamps(row_time),
            pa.array(value, type=pa.float64(), mask=is_string | value_null),
            strings,
            pa.array(is_string),
        ],
        schema=RAW_ROWS,
    )

    return raw_rows, raw_carry_in, tags


def naive_pandas_minutes(transitions: pa.Table, carry_in: pa.Table, tag_names: list[str]) -> int:
    """1-minute twa/min/max/first/last per numeric tag, the way a pandas user writes it."""
    frame = transitions.to_pandas()
    carry = carry_in.to_pandas()
    day_end = pd.Timestamp(DAY + timedelta(days=1))
    rows = 0
    for name in tag_names:
        points = frame.loc[frame["tag_name"] == name, ["time", "value_double"]]
        before = carry.loc[carry["tag_name"] == name, ["time", "value_double"]]
        before = before.assign(time=pd.Timestamp(DAY))
        series = pd.concat([before, points]).set_index("time")["value_double"]
        series = series[~series.index.duplicated(keep="last")]
        edges = pd.date_range(DAY, day_end, freq="1min", inclusive="left")
        stepped = series.reindex(series.index.union(edges)).ffill()
        seconds = np.diff(np.append(stepped.index.asi8, day_end.value)) / 1e9
        finite = np.isfinite(stepped.to_numpy())
        parts = pd.DataFrame(
            {
                "weighted": np.where(finite, stepped.to_numpy() * seconds, 0.0),
                "covered": np.where(finite, seconds, 0.0),
                "value": stepped.where(finite),
            },
            index=stepped.index,
        )
        buckets = parts.resample("1min").agg(
            {"weighted": "sum", "covered": "sum", "value": ["min", "max", "first", "last"]}
        )
        twa = buckets[("weighted", "sum")] / buckets[("covered", "sum")]
        rows += len(twa)
    return rows


def run_pipeline(
    raw_rows: pa.Table, raw_carry_in: pa.Table, tags: pa.Table
) -> tuple[dict[str, float], dict[str, pa.Table], dict[str, int]]:
    """One pass of the day's chain: (seconds per stage, the outputs, resolution stats)."""
    seconds: dict[str, float] = {}
    result = compute_day(
        raw_rows, raw_carry_in, tags, DAY, DAY + timedelta(days=1), "bench", seconds
    )
    return seconds, result.tables, dict(result.counts)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shuffle", action="store_true", help="raw rows in random order")
    parser.add_argument("--repeat", type=int, default=2, help="passes; best and first reported")
    parser.add_argument("--pandas-tags", type=int, default=20, help="tags the naive path runs on")
    args = parser.parse_args(argv)

    raw_rows, raw_carry_in, tags = synthetic_day(args.tags, args.rows, args.seed, args.shuffle)
    input_mib = raw_rows.nbytes / 2**20
    rss_input = _rss_mib()
    first, outputs, stats = run_pipeline(raw_rows, raw_carry_in, tags)
    rss_first = _rss_mib()
    output_mib = sum(table.nbytes for table in outputs.values()) / 2**20
    best = dict(first)
    for _ in range(args.repeat - 1):
        del outputs
        timings, outputs, _ = run_pipeline(raw_rows, raw_carry_in, tags)
        best = {stage: min(best[stage], seconds) for stage, seconds in timings.items()}
    minutes = outputs["samples_1m"]

    numeric_names = minutes.column("tag_name").unique().to_pylist()
    subset = numeric_names[: args.pandas_tags]
    began = time.perf_counter()
    naive_pandas_minutes(outputs["transitions"], outputs["carry_in"], subset)
    pandas_subset_s = time.perf_counter() - began
    pandas_s = pandas_subset_s * len(numeric_names) / max(len(subset), 1)

    n = raw_rows.num_rows
    order = "shuffled" if args.shuffle else "source order: per table by tag id, time"
    print(f"input: {n:,} raw rows ({order}), {args.tags:,} tags, {input_mib:,.0f} MiB in Arrow")
    print(f"kept: {outputs['transitions'].num_rows:,} transitions, stats {stats}")
    print(
        f"out: {outputs['spans'].num_rows:,} spans, {minutes.num_rows:,} numeric + "
        f"{outputs['samples_str_1m'].num_rows:,} string 1m samples; "
        f"all outputs {output_mib:,.0f} MiB"
    )
    print(f"worker threads: {pieces.WORKERS}; rows/s = raw rows / stage seconds")
    print(f"{'stage':<18}{'first s':>10}{'best s':>10}{'rows/s (best)':>18}")
    for stage, seconds in first.items():
        print(f"{stage:<18}{seconds:>10.3f}{best[stage]:>10.3f}{n / best[stage]:>18,.0f}")
    total_first, total_best = sum(first.values()), sum(best.values())
    print(f"{'total':<18}{total_first:>10.3f}{total_best:>10.3f}{n / total_best:>18,.0f}")
    print(
        f"pandas naive 1m resample: {pandas_subset_s:.2f} s on {len(subset)} of "
        f"{len(numeric_names)} numeric tags, scaled linearly to {pandas_s:.1f} s"
    )
    print(
        f"ratio pandas / tagflow samples_1m: {pandas_s / best['samples_1m']:.0f}x; "
        f"pandas / tagflow whole pipeline: {pandas_s / total_best:.0f}x"
    )
    print(
        f"peak RSS: {rss_first:,.0f} MiB after the first pass ({rss_input:,.0f} MiB with the "
        f"input generated; the pass added {rss_first - rss_input:,.0f} MiB = "
        f"{(rss_first - rss_input) / input_mib:.1f}x the input, of which outputs "
        f"{output_mib:,.0f} MiB); peak over all passes {_rss_mib():,.0f} MiB"
    )


if __name__ == "__main__":
    main()
