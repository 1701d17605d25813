"""Brute-force reference of DESIGN §2, written for clarity rather than speed.

It takes a tag's whole raw history (every row of tag_data and tag_data_str, before and
after any day) and derives everything from it with exact integer-microsecond interval
arithmetic and plain Python loops: duplicate resolution, the step function, runs,
spans for a window, the carry-in at an instant, and samples at any width/offset. It
knows nothing of the implementation's carry-in mechanics, so comparing the two checks
that the carry-in really carries everything a day needs.

Times are integers (µs since the Unix epoch). A raw row is
`(tag_id, time_us, value, is_string)`; `value` is a float or None for tag_data rows,
a str or None for tag_data_str rows.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

NUMERIC = "numeric"
STRING = "string"

US_PER_S = 1_000_000


@dataclass(frozen=True)
class RawRow:
    tag_id: int
    time_us: int
    value: object  # float | str | None
    is_string: bool


@dataclass(frozen=True)
class Tag:
    tag_id: int
    name: str
    death_at_us: int | None = None
    birth_at_us: int | None = None


@dataclass(frozen=True)
class Transition:
    """A kept row: `kind` says which table it came from (numeric = tag_data)."""

    tag_id: int
    time_us: int
    value: object
    kind: str


@dataclass(frozen=True)
class Piece:
    """The step function holds `value` on [start_us, end_us); end None = not ended."""

    start_us: int
    end_us: int | None
    value: object
    kind: str


@dataclass(frozen=True)
class Run:
    start_us: int
    end_us: int | None
    value: object
    kind: str


# ---------------------------------------------------------------- value helpers


def is_nan(x: object) -> bool:
    return isinstance(x, float) and math.isnan(x)


def values_equal(kind_a: str, a: object, kind_b: str, b: object) -> bool:
    """Value classes NULL / number / string; NULL equals NULL whatever the table,
    NaN equals NaN, -0.0 equals 0.0, 1.0 differs from "1"."""
    if a is None or b is None:
        return a is None and b is None
    if kind_a != kind_b:
        return False
    if kind_a == STRING:
        return a == b
    if is_nan(a) or is_nan(b):
        return is_nan(a) and is_nan(b)
    return a == b


def numeric_sort_key(v: float | None) -> tuple:
    """PostgreSQL order of double precision with NULL lowest: NULL < numbers < NaN."""
    if v is None:
        return (0, 0.0)
    if math.isnan(v):
        return (2, 0.0)
    return (1, v)


def string_sort_key(s: str | None) -> tuple:
    """COLLATE "C" order (= Python str order) with NULL lowest."""
    return (0, "") if s is None else (1, s)


def is_finite_number(kind: str, value: object) -> bool:
    return kind == NUMERIC and value is not None and math.isfinite(value)


def is_string_value(kind: str, value: object) -> bool:
    return kind == STRING and value is not None


def _as_raw(row) -> RawRow:
    return row if isinstance(row, RawRow) else RawRow(*row)


# ---------------------------------------------------------------- resolution


def resolve(rows: Iterable, tag_ids: Iterable[int]) -> tuple[list[Transition], dict]:
    """Duplicate resolution and orphan skipping of the given rows (no time filter here).

    Returns the kept transitions sorted by (tag_id, time) and the stats.
    """
    rows = [_as_raw(r) for r in rows]
    known = set(tag_ids)
    orphans = 0
    by_instant: dict[tuple[int, int], list[RawRow]] = {}
    for r in rows:
        if r.tag_id not in known:
            orphans += 1
            continue
        by_instant.setdefault((r.tag_id, r.time_us), []).append(r)
    kept: list[Transition] = []
    dropped = 0
    for (tag_id, t), group in sorted(by_instant.items()):
        strings = [r for r in group if r.is_string]
        if strings:
            best = strings[0]
            for r in strings[1:]:
                if string_sort_key(r.value) > string_sort_key(best.value):
                    best = r
            kept.append(Transition(tag_id, t, best.value, STRING))
        else:
            best = group[0]
            for r in group[1:]:
                if numeric_sort_key(r.value) > numeric_sort_key(best.value):
                    best = r
            kept.append(Transition(tag_id, t, best.value, NUMERIC))
        dropped += len(group) - 1
    stats = {"rows_in": len(rows), "duplicates_dropped": dropped, "orphans_skipped": orphans}
    return kept, stats


# ---------------------------------------------------------------- the reference


class Reference:
    """Everything DESIGN §2 defines, from the full raw history of a tenant."""

    def __init__(self, rows: Iterable, tags: Iterable[Tag], tenant: str = "acme"):
        self.rows = [_as_raw(r) for r in rows]
        self.tags = {t.tag_id: t for t in tags}
        self.tenant = tenant
        all_kept, _ = resolve(self.rows, self.tags)
        self.history: dict[int, list[Transition]] = {tid: [] for tid in self.tags}
        for tr in all_kept:
            self.history[tr.tag_id].append(tr)
        self._pieces = {tid: self._build_pieces(tid) for tid in self.tags}
        self._runs = {tid: self._build_runs(self._pieces[tid]) for tid in self.tags}

    # ---- transitions

    def transitions(self, lo: int, hi: int) -> tuple[list[dict], dict]:
        """Resolved transitions of the rows with lo <= time < hi, sorted like the
        TRANSITIONS dataset (tag_name, time), plus the stats of that resolution."""
        day_rows = [r for r in self.rows if lo <= r.time_us < hi]
        kept, stats = resolve(day_rows, self.tags)
        out = []
        for tr in kept:
            out.append(
                {
                    "tag_id": tr.tag_id,
                    "tag_name": self.tags[tr.tag_id].name,
                    "time": tr.time_us,
                    "value_double": tr.value if tr.kind == NUMERIC else None,
                    "value_string": tr.value if tr.kind == STRING else None,
                    "value_kind": tr.kind,
                }
            )
        out.sort(key=lambda d: (d["tag_name"], d["time"]))
        return out, stats

    # ---- step function

    def _build_pieces(self, tag_id: int) -> list[Piece]:
        trs = self.history[tag_id]
        death = self.tags[tag_id].death_at_us
        pieces = []
        for i, tr in enumerate(trs):
            nxt = trs[i + 1].time_us if i + 1 < len(trs) else None
            end = nxt
            # death takes effect after any row at the same instant
            if death is not None and tr.time_us <= death and (nxt is None or death < nxt):
                end = death
            if end is not None and end <= tr.time_us:
                continue  # zero length: a row at exactly death_at
            pieces.append(Piece(tr.time_us, end, tr.value, tr.kind))
        return pieces

    @staticmethod
    def _build_runs(pieces: list[Piece]) -> list[Run]:
        runs: list[Run] = []
        for p in pieces:
            if runs:
                last = runs[-1]
                adjacent = last.end_us == p.start_us
                if adjacent and values_equal(last.kind, last.value, p.kind, p.value):
                    runs[-1] = Run(last.start_us, p.end_us, last.value, last.kind)
                    continue
            runs.append(Run(p.start_us, p.end_us, p.value, p.kind))
        return runs

    def pieces(self, tag_id: int) -> list[Piece]:
        return list(self._pieces[tag_id])

    def runs(self, tag_id: int) -> list[Run]:
        return list(self._runs[tag_id])

    def value_at(self, tag_id: int, t: int) -> Piece | None:
        """The piece holding at instant t, or None where the step function is undefined."""
        for p in self._pieces[tag_id]:
            if p.start_us <= t and (p.end_us is None or t < p.end_us):
                return p
        return None

    # ---- spans

    def spans(self, d0: int, d1: int) -> list[dict]:
        out = []
        for tag_id, tag in self.tags.items():
            for run in self._runs[tag_id]:
                begin = max(run.start_us, d0)
                end = d1 if run.end_us is None else min(run.end_us, d1)
                if begin >= end:
                    continue
                out.append(
                    {
                        "id": span_id(self.tenant, tag_id, run.start_us),
                        "tag_id": tag_id,
                        "tag_name": tag.name,
                        "value_double": run.value if run.kind == NUMERIC else None,
                        "value_string": run.value if run.kind == STRING else None,
                        "raw_begin_at": run.start_us,
                        "raw_end_at": (
                            run.end_us if run.end_us is not None and run.end_us < d1 else None
                        ),
                        "begin_at": begin,
                        "end_at": end,
                    }
                )
        out.sort(key=lambda d: (d["tag_name"], d["raw_begin_at"]))
        return out

    # ---- carry-in

    def carry_in(self, at: int) -> list[dict]:
        """What carry_in_for_day must return: per tag alive at `at` the last kept row
        before `at` and the start of its run (from the full history), sorted by name."""
        out = []
        for tag_id, tag in self.tags.items():
            before = [tr for tr in self.history[tag_id] if tr.time_us < at]
            if not before:
                continue
            last = before[-1]
            death = tag.death_at_us
            if not (death is None or death < last.time_us or death > at):
                continue
            run_begin = None
            for run in self._runs[tag_id]:
                holds_last = run.end_us is None or last.time_us < run.end_us
                if run.start_us <= last.time_us and holds_last:
                    run_begin = run.start_us
            if run_begin is None:
                # the last row holds for zero time (at death_at == at); its run starts there
                run_begin = last.time_us
            out.append(
                {
                    "tag_id": tag_id,
                    "tag_name": tag.name,
                    "time": last.time_us,
                    "value_double": last.value if last.kind == NUMERIC else None,
                    "value_string": last.value if last.kind == STRING else None,
                    "value_kind": last.kind,
                    "run_begin_at": run_begin,
                }
            )
        out.sort(key=lambda d: d["tag_name"])
        return out

    # ---- samples

    def sample_members(self, ws: int, we: int) -> tuple[set[int], set[int]]:
        """Tags in numeric / string samples of [ws, we): the kind of the kept carry-in at
        ws, and the kinds of the transitions in the window."""
        numeric, string = set(), set()
        for c in self.carry_in(ws):
            (numeric if c["value_kind"] == NUMERIC else string).add(c["tag_id"])
        for tag_id, trs in self.history.items():
            for tr in trs:
                if ws <= tr.time_us < we:
                    (numeric if tr.kind == NUMERIC else string).add(tag_id)
        return numeric, string

    def samples(
        self, ws: int, we: int, width: int, offset: int = 0
    ) -> tuple[list[dict], list[dict]]:
        """Numeric and string samples over [ws, we) with buckets [b, b+width),
        b ≡ offset (mod width), walking every bucket that meets the window."""
        numeric_tags, string_tags = self.sample_members(ws, we)
        numeric_rows, string_rows = [], []
        first_b = ws - ((ws - offset) % width)
        for tag_id, tag in self.tags.items():
            if tag_id not in numeric_tags and tag_id not in string_tags:
                continue
            pieces = self._pieces[tag_id]
            starts = [p.start_us for p in pieces]
            times = [tr.time_us for tr in self.history[tag_id]]
            b = first_b
            while b < we:
                lo, hi = max(b, ws), min(b + width, we)
                overlaps = []  # (piece, overlap µs) in time order
                # pieces are disjoint and sorted: only the one holding at `lo` and those
                # starting inside [lo, hi) can meet the bucket (a shortcut, not a rule)
                i0 = max(bisect.bisect_right(starts, lo) - 1, 0)
                i1 = bisect.bisect_left(starts, hi)
                for p in pieces[i0:i1]:
                    p_end = hi if p.end_us is None else p.end_us
                    dt = min(p_end, hi) - max(p.start_us, lo)
                    if dt > 0:
                        overlaps.append((p, dt))
                defined = sum(dt for _, dt in overlaps)
                count = bisect.bisect_left(times, hi) - bisect.bisect_left(times, lo)
                if defined > 0 or count > 0:
                    base = {"tag_id": tag_id, "tag_name": tag.name, "bucket_start": b}
                    if tag_id in numeric_tags:
                        numeric_rows.append({**base, **_numeric_bucket(overlaps), "count": count})
                    if tag_id in string_tags:
                        string_rows.append({**base, **_string_bucket(overlaps), "count": count})
                b += width
        numeric_rows.sort(key=lambda d: (d["tag_name"], d["bucket_start"]))
        string_rows.sort(key=lambda d: (d["tag_name"], d["bucket_start"]))
        return numeric_rows, string_rows


def _numeric_bucket(overlaps: list[tuple[Piece, int]]) -> dict:
    covered = [(p, dt) for p, dt in overlaps if is_finite_number(p.kind, p.value)]
    cov_us = sum(dt for _, dt in covered)
    if cov_us == 0:
        nothing = {"twa": None, "min": None, "max": None, "first": None, "last": None}
        return {**nothing, "covered_s": 0.0}
    integral = sum(Fraction(p.value) * dt for p, dt in covered)
    values = [p.value for p, _ in covered]
    return {
        "twa": float(integral / cov_us),
        "covered_s": cov_us / US_PER_S,
        "min": min(values),
        "max": max(values),
        "first": covered[0][0].value,
        "last": covered[-1][0].value,
    }


def _string_bucket(overlaps: list[tuple[Piece, int]]) -> dict:
    covered = [(p, dt) for p, dt in overlaps if is_string_value(p.kind, p.value)]
    cov_us = sum(dt for _, dt in covered)
    held: dict[str, int] = {}
    for p, dt in covered:
        held[p.value] = held.get(p.value, 0) + dt
    if cov_us == 0:
        return {"covered_s": 0.0, "first": None, "last": None, "mode": None, "held_s": []}
    best = max(held.values())
    mode = min(s for s, us in held.items() if us == best)
    return {
        "covered_s": cov_us / US_PER_S,
        "first": covered[0][0].value,
        "last": covered[-1][0].value,
        "mode": mode,
        "held_s": [(s, held[s] / US_PER_S) for s in sorted(held)],
    }


# ---------------------------------------------------------------- span id

_MASK = (1 << 64) - 1


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def span_id(tenant: str, tag_id: int, raw_begin_us: int) -> int:
    tenant_key = int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=8).digest(), "little")
    h = splitmix64(tenant_key ^ splitmix64((tag_id & _MASK) ^ splitmix64(raw_begin_us & _MASK)))
    signed = h - (1 << 64) if h >= (1 << 63) else h
    if -(2**63) <= signed < -(2**63) + 2**32:  # the ids of people's spans (DESIGN §9)
        signed += 1 << 62
    return signed
