"""The numpy port of PostgreSQL's 64-bit hashes answers what the server answers, for the
values a fingerprint meets: both signs, the extremes, ±0, NaN, infinities, zero and other seeds."""

from __future__ import annotations

import numpy as np

from tagflow.source.pg_hash import hashfloat8extended, hashint8extended

INTEGERS = [0, 1, -1, 42, -42, 2**31, -(2**31) - 1, 2**32 + 5, 2**63 - 1, -(2**63)]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e300, -1e-300, float("inf"), float("-inf"), float("nan")]
SEEDS = [0, 1, -1, 2**40 + 3, -(2**62)]


def test_hashint8extended_equals_the_servers(admin_conn):
    for seed in SEEDS:
        expected = [
            admin_conn.execute("SELECT hashint8extended(%s::int8, %s)", (v, seed)).fetchone()[0]
            for v in INTEGERS
        ]
        assert hashint8extended(np.array(INTEGERS, np.int64), seed).tolist() == expected


def test_hashfloat8extended_equals_the_servers(admin_conn):
    for seed in SEEDS:
        expected = [
            admin_conn.execute("SELECT hashfloat8extended(%s::float8, %s)", (v, seed)).fetchone()[0]
            for v in FLOATS
        ]
        assert hashfloat8extended(np.array(FLOATS), seed).tolist() == expected


def test_a_seed_per_row_is_each_rows_own_seed(admin_conn):
    values = np.array(INTEGERS[: len(SEEDS)], np.int64)
    seeds = np.array(SEEDS, np.int64)
    expected = [
        admin_conn.execute("SELECT hashint8extended(%s::int8, %s)", (int(v), int(s))).fetchone()[0]
        for v, s in zip(values, seeds, strict=True)
    ]
    assert hashint8extended(values, seeds).tolist() == expected
