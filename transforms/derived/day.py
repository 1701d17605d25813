"""Derived tags of one tenant-day (DESIGN §8), materialised like source tags: from their source
inputs' resolved transitions and carry-in, their transitions, carry-in, spans and samples.

The value held at 00:00 comes from the inputs' carry-ins. The true start of that run (its
`raw_begin_at`, maybe days back) is found by walking the inputs' history backwards from the
day (`derived_carry_in`): days stay independent of one another, as DESIGN §4 wants, and the
start is exact whatever was materialised before. Each step reads the inputs' rows of a window
twice as long as the last, until the run's start is known for certain (see `_walk_back`).

Transitions are the instants where a derived tag takes a new value; it becomes undefined only
where one of its source inputs dies, so its row in `tags` lists those deaths (`input_deaths`)
and every reader rebuilds its step function from transitions + carry-in + deaths, as for a
source tag: the spans and samples here are computed by the day's own chain (transforms.day)
from exactly that.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.chunk_sizes import DERIVED_BATCH_ROWS
from tagflow.schemas.arrow import CARRY_IN, RAW_ROWS, TAGS_DATASET, TRANSITIONS, TS, conform
from tagflow.timing import Seconds
from tagflow.transforms.columns import (
    NO_TIME,
    datetime_to_us,
    nullable_float,
    strings_by_code,
    time_us,
    us_to_time,
)
from tagflow.transforms.day import spans_and_samples
from tagflow.transforms.derived.definitions import TenantDerivedTags
from tagflow.transforms.derived.evaluate import StepFunction, evaluate_tenant
from tagflow.transforms.derived.expression import FunctionCall, Literal, Node, TagRef
from tagflow.transforms.pieces import pieces_for_window
from tagflow.transforms.tag_order import TagOrder
from tagflow.transforms.transitions import carry_in_for_day, resolve_rows

# The first window of the walk back; each further one is twice as long.
FIRST_WINDOW_US = 86_400_000_000
_NEVER = np.iinfo(np.int64).min  # "known since the beginning": before every instant


class InputHistory(Protocol):
    """The source rows the walk back reads (source.derived_history implements it on the
    tenant's own tables). Times are µs since the epoch."""

    def rows_before(self, tag_ids: np.ndarray, lo_us: int, hi_us: np.ndarray) -> pa.Table:
        """RAW_ROWS of tag_ids[k] with lo_us <= time < hi_us[k], every k, any order."""
        ...

    def first_row_times(self, tag_ids: np.ndarray) -> np.ndarray:
        """Each tag's earliest row time (either table, ±infinity left out); NO_TIME if none."""
        ...


# --- the plan: which tags, in which order ----------------------------------------------------


@dataclass(frozen=True)
class DerivedPlan:
    """A tenant's derived tags against its source tags: what one day's derived step needs."""

    definitions: TenantDerivedTags
    # TAGS_DATASET rows of the derived tags, sorted by name; their order.
    tags: pa.Table
    order: TagOrder
    # The source tags read, directly or through other derived tags, and their order.
    input_order: TagOrder
    # Source tags (the tenant's, sorted by name): where derived names fall among them.
    source_names: tuple[str, ...]

    @classmethod
    def of(cls, definitions: TenantDerivedTags, source_tags: pa.Table) -> DerivedPlan:
        """The plan of `definitions` over `source_tags` (TAGS of the tenant's source tags);
        InvalidDerivedTag when a definition reads a tag the source lacks or takes its name."""
        names = source_tags.column("tag_name").to_pylist()
        definitions.check_source_tags(names)
        wanted = pa.array(sorted(definitions.source_inputs), pa.string())
        inputs = source_tags.filter(pc.is_in(source_tags.column("tag_name"), wanted))
        tags = derived_tag_rows(definitions, source_tags)
        return cls(
            definitions=definitions,
            tags=tags,
            order=TagOrder.from_table(tags),
            input_order=TagOrder.from_table(inputs),
            source_names=tuple(sorted(names)),
        )

    @property
    def input_ids(self) -> np.ndarray:
        """Tag ids of the source inputs (int32, in name order)."""
        return self.input_order.tag_id

    def positions(self) -> list[int]:
        """Per derived tag in name order, how many source tags sort before it: the derived tag
        is written between source ranks position-1 and position."""
        names = self.order.tag_name.to_pylist()
        return [bisect.bisect_left(self.source_names, name) for name in names]

    def cuts(self) -> list[int]:
        """Source ranks where a chunk of the day must begin, so that no derived tag falls
        inside a chunk of source tags (the files are sorted by tag name)."""
        count = len(self.source_names)
        return sorted({p for p in self.positions() if 0 < p < count})


def derived_tag_rows(definitions: TenantDerivedTags, source_tags: pa.Table) -> pa.Table:
    """The derived tags' rows of the `tags` dataset (TAGS_DATASET), sorted by name: negative ids,
    derived, the expression as written, and the deaths of the source tags each one reads."""
    by_name = dict(
        zip(
            source_tags.column("tag_name").to_pylist(),
            zip(
                source_tags.column("value_kind").to_pylist(),
                time_us(source_tags.column("death_at"), null_as=NO_TIME).tolist(),
                strict=True,
            ),
            strict=True,
        )
    )
    kinds: dict[str, frozenset[str]] = {
        name: _KINDS.get(kind, frozenset()) for name, (kind, _) in by_name.items()
    }
    rows = []
    for tag in definitions:
        kinds[tag.name] = value_kinds(tag.ast, kinds)
        deaths = sorted(
            {
                by_name[name][1]
                for name in definitions.source_inputs_of(tag.name)
                if name in by_name and by_name[name][1] != NO_TIME
            }
        )
        rows.append((tag, _kind_name(kinds[tag.name]), deaths))
    rows.sort(key=lambda row: row[0].name)
    table = pa.table(
        {
            "tag_id": pa.array([tag.tag_id for tag, _, _ in rows], pa.int32()),
            "tag_name": pa.array([tag.name for tag, _, _ in rows], pa.string()),
            "birth_at": pa.nulls(len(rows), TS),
            "death_at": pa.nulls(len(rows), TS),
            "value_kind": pa.array([kind for _, kind, _ in rows], pa.string()),
            "derived": pa.array([True] * len(rows), pa.bool_()),
            "expression": pa.array([tag.expression_text for tag, _, _ in rows], pa.string()),
            "description": pa.array([tag.description for tag, _, _ in rows], pa.string()),
            "input_deaths": pa.array(
                [[int(d) for d in deaths] for _, _, deaths in rows], pa.list_(pa.int64())
            ).cast(pa.list_(TS)),
        }
    )
    return conform(table, TAGS_DATASET)


_KINDS = {
    "numeric": frozenset({"numeric"}),
    "string": frozenset({"string"}),
    "mixed": frozenset({"numeric", "string"}),
}


def value_kinds(node: Node, kinds: dict[str, frozenset[str]]) -> frozenset[str]:
    """Which kinds of value (numeric, string) `node` can take, from the kinds of the tags it
    reads; NULL counts as neither. Only a tag reference, a string literal and min/max pass a
    string through: every operator gives a number."""
    if isinstance(node, TagRef):
        return kinds.get(node.name, frozenset())
    if isinstance(node, Literal):
        if node.value is None:
            return frozenset()
        return _KINDS["string" if isinstance(node.value, str) else "numeric"]
    if isinstance(node, FunctionCall) and node.function in ("min", "max"):
        return frozenset().union(*(value_kinds(arg, kinds) for arg in node.args))
    if isinstance(node, Node):  # every other operator and function
        return _KINDS["numeric"]
    raise TypeError(f"not an expression node: {type(node).__name__}")


def _kind_name(kinds: frozenset[str]) -> str | None:
    if len(kinds) == 2:
        return "mixed"
    return next(iter(kinds), None)


# --- the day ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedDay:
    """Every dated dataset of a day for the derived tags (sorted by name), the derived tags
    present that day and the part of the day's data version they make."""

    tables: dict[str, pa.Table]
    present: tuple[str, ...]
    version: str


def compute_derived_day(
    plan: DerivedPlan,
    input_raw_rows: pa.Table,
    raw_carry_in: pa.Table,
    day_start: datetime,
    day_end: datetime,
    tenant: str,
    history: InputHistory,
    seconds: Seconds | None = None,
) -> DerivedDay:
    """The derived tags' day from the raw rows of the day (RAW_ROWS; rows of other tags are
    ignored) and the raw carry-in (RAW_CARRY_IN; likewise) of their source inputs; `history`
    serves the walk back to the start of each run held at 00:00."""
    day_start_us = datetime_to_us(day_start, "day start")
    day_end_us = datetime_to_us(day_end, "day end")
    carry_in = carry_in_for_day(raw_carry_in, plan.input_order, day_start)
    derived_carry = derived_carry_in(plan, carry_in, day_start, history)
    derived_transitions, present = _evaluate_day(
        plan, input_raw_rows, carry_in, day_start_us, day_end_us
    )
    tables = {"transitions": derived_transitions, "carry_in": derived_carry}
    tables |= spans_and_samples(
        derived_transitions, derived_carry, plan.order, day_start, day_end, tenant, seconds
    )
    return DerivedDay(tables, present, derived_version(plan, present, derived_carry))


def _evaluate_day(
    plan: DerivedPlan, input_raw_rows: pa.Table, carry_in: pa.Table, lo_us: int, hi_us: int
) -> tuple[pa.Table, tuple[str, ...]]:
    """The derived tags' transitions in [lo, hi) and the derived tags present, from the
    inputs' rows of the day and carry-in. Derived tags are evaluated in batches whose inputs
    hold about DERIVED_BATCH_ROWS rows, so memory follows a batch, as the day's chunks bound it
    for source tags, not all the inputs' rows at once."""
    inputs = plan.input_order
    rows = _known_rows(input_raw_rows, inputs)
    rank = inputs.ranks_of(rows.column("tag_id").to_numpy(zero_copy_only=False))
    rows_of_input = np.bincount(rank, minlength=len(inputs))
    with_data = set(carry_in.column("tag_name").to_pylist())
    with_data |= set(inputs.names(np.flatnonzero(rows_of_input)).to_pylist())
    carried = inputs.ranks_of(carry_in.column("tag_id").to_numpy(zero_copy_only=False))
    derived: dict[str, StepFunction] = {}
    for batch in _batches(plan, rows_of_input):
        wanted = np.zeros(len(inputs), dtype=bool)
        wanted[batch.input_ranks] = True
        kept = wanted[rank]
        transitions, _ = resolve_rows(
            rows if bool(kept.all()) else rows.filter(pa.array(kept)), inputs
        )
        steps = _input_steps(transitions, carry_in.filter(pa.array(wanted[carried])), inputs, hi_us)
        evaluated = evaluate_tenant(plan.definitions.closure(batch.names), steps)
        derived |= {name: evaluated[name] for name in batch.names}
    return _transitions(plan.order, derived, lo_us, hi_us), present_tags(plan, with_data)


@dataclass(frozen=True)
class _Batch:
    names: tuple[str, ...]
    input_ranks: np.ndarray


def _batches(plan: DerivedPlan, rows_of_input: np.ndarray) -> list[_Batch]:
    """The derived tags in groups whose source inputs hold at most DERIVED_BATCH_ROWS rows of
    the day together (a tag whose own inputs hold more makes a group of its own)."""
    rank_of = {name: rank for rank, name in enumerate(plan.input_order.tag_name.to_pylist())}
    batches: list[_Batch] = []
    names: list[str] = []
    ranks: set[int] = set()
    for tag in plan.definitions:
        own = {rank_of[name] for name in plan.definitions.source_inputs_of(tag.name)}
        together = ranks | own
        if names and int(rows_of_input[list(together)].sum()) > DERIVED_BATCH_ROWS:
            batches.append(_Batch(tuple(names), np.array(sorted(ranks), np.int64)))
            names, together = [], own
        names.append(tag.name)
        ranks = together
    if names:
        batches.append(_Batch(tuple(names), np.array(sorted(ranks), np.int64)))
    return batches


def present_tags(plan: DerivedPlan, inputs_with_data: Iterable[str]) -> tuple[str, ...]:
    """The derived tags whose every source input has a row in the day or is alive at 00:00
    (sorted): only these can have a value that day, so only their definitions belong to the
    day's data version, and a changed definition reruns exactly the days it can change."""
    have = set(inputs_with_data)
    definitions = plan.definitions
    return tuple(
        sorted(
            tag.name
            for tag in definitions
            if all(name in have for name in definitions.source_inputs_of(tag.name))
        )
    )


def derived_version(plan: DerivedPlan, present: Sequence[str], carry_in: pa.Table) -> str:
    """The derived part of a day's data version: the definitions of the tags present that day
    and the start of each run held at 00:00 (a late row days back can move it without touching
    the inputs' own carry-in). Empty when no derived tag is present, so a tenant without
    derived tags keeps the data version it had before they existed."""
    if not present:
        return ""
    by_name = {tag.name: tag for tag in plan.definitions}
    begins = dict(
        zip(
            carry_in.column("tag_name").to_pylist(),
            time_us(carry_in.column("run_begin_at")).tolist(),
            strict=True,
        )
    )
    digest = hashlib.blake2b(digest_size=10)
    for name in present:
        digest.update(f"{name}\0{by_name[name].fingerprint}\0{begins.get(name, '')}\0".encode())
    return digest.hexdigest()


def _known_rows(rows: pa.Table, order: TagOrder) -> pa.Table:
    """The rows of `order`'s tags (other tags' rows would count as orphans)."""
    known = order.ranks_of(rows.column("tag_id").to_numpy(zero_copy_only=False)) >= 0
    return rows if bool(known.all()) else rows.filter(pa.array(known))


def _input_steps(
    transitions: pa.Table, carry_in: pa.Table, order: TagOrder, window_end_us: int
) -> dict[str, StepFunction]:
    """Each input's step function from its carry-in and transitions before `window_end_us`."""
    pieces = pieces_for_window(transitions, carry_in, order, window_end_us)
    names = order.tag_name.to_pylist()
    return {name: StepFunction.from_pieces(pieces, rank) for rank, name in enumerate(names)}


def _transitions(
    order: TagOrder, derived: dict[str, StepFunction], lo_us: int, hi_us: int
) -> pa.Table:
    """TRANSITIONS of the derived tags: the starts of their maximal pieces in [lo, hi)."""
    parts = []
    for rank, name in enumerate(order.tag_name.to_pylist()):
        step = derived[name]
        inside = (step.start >= lo_us) & (step.start < hi_us)
        if inside.any():
            parts.append(_rows_of(order, rank, step, np.flatnonzero(inside), TRANSITIONS))
    return pa.concat_tables(parts) if parts else TRANSITIONS.empty_table()


def _rows_of(
    order: TagOrder, rank: int, step: StepFunction, pieces: np.ndarray, schema: pa.Schema
) -> pa.Table:
    """Rows of derived tag `rank` starting the given pieces: TRANSITIONS, or CARRY_IN with
    run_begin_at = the row's time (a derived transition always starts a run)."""
    code = step.string_code[pieces]
    is_string = code >= 0
    time = us_to_time(step.start[pieces])
    columns = [
        pa.array(np.full(len(pieces), order.tag_id[rank]), pa.int32()),
        order.names(np.full(len(pieces), rank)),
        time,
        nullable_float(step.value_double[pieces], step.is_null[pieces] | is_string),
        strings_by_code(step.strings, code),
        pa.array(np.where(is_string, "string", "numeric"), pa.string()),
    ]
    if schema is CARRY_IN:
        columns.append(time)
    return pa.Table.from_arrays(columns, schema=schema)


# --- the run held at 00:00 -------------------------------------------------------------------


def derived_carry_in(
    plan: DerivedPlan, carry_in: pa.Table, day_start: datetime, history: InputHistory
) -> pa.Table:
    """CARRY_IN of the derived tags defined just before `day_start`: the value they hold then
    (from the inputs' carry-in, CARRY_IN) and the true start of that run, found by walking the
    inputs' history back (time = run_begin_at = that start: it is the tag's last transition)."""
    start_us = datetime_to_us(day_start, "day start")
    inputs = plan.input_order
    steps = _input_steps(TRANSITIONS.empty_table(), carry_in, inputs, start_us)
    held = _held_before(evaluate_tenant(plan.definitions, steps), start_us)
    if not held:
        return CARRY_IN.empty_table()
    begins = _walk_back(plan, carry_in, start_us, set(held), history)
    parts = []
    for rank, name in enumerate(plan.order.tag_name.to_pylist()):
        if name in held:
            step, piece = held[name]
            step = _with_start(step, piece, begins[name])
            parts.append(_rows_of(plan.order, rank, step, np.array([piece]), CARRY_IN))
    return pa.concat_tables(parts)


def _held_before(
    derived: dict[str, StepFunction], at_us: int
) -> dict[str, tuple[StepFunction, int]]:
    """The derived tags defined on [at - 1 µs, at), with their step function and the piece
    holding there."""
    held = {}
    for name, step in derived.items():
        piece = int(np.searchsorted(step.start, at_us, side="left")) - 1
        if piece >= 0 and step.end[piece] >= at_us:
            held[name] = (step, piece)
    return held


def _with_start(step: StepFunction, piece: int, start_us: int) -> StepFunction:
    start = step.start.copy()
    start[piece] = start_us
    return StepFunction(
        start, step.end, step.value_double, step.string_code, step.is_null, step.strings
    )


def _walk_back(
    plan: DerivedPlan,
    carry_in: pa.Table,
    start_us: int,
    pending: set[str],
    history: InputHistory,
) -> dict[str, int]:
    """The start of the run each `pending` derived tag holds just before `start_us`.

    Each input i alive then holds one value since its carry-in's run_begin_at R_i, so it is
    known on [R_i, start) without reading its rows there. A window [lo, start) adds i's rows
    in [lo, R_i): i's step function is then exact from its first row in the window on (from
    the beginning, if that is its first row ever or it was dead just before). A derived tag
    is exact from the latest of its inputs' such instants, K; the start p of the run it holds
    at `start` is certain once p > K (just before p its value was known and different, or it
    was undefined). Else the window doubles, down to the inputs' first rows at most: the rows
    read are at most twice those of the inputs during the run."""
    inputs = plan.input_order
    rank_of = {name: rank for rank, name in enumerate(inputs.tag_name.to_pylist())}
    sources = {
        name: np.array([rank_of[i] for i in plan.definitions.source_inputs_of(name)], np.int64)
        for name in pending
    }
    carry_rank = inputs.ranks_of(carry_in.column("tag_id").to_numpy(zero_copy_only=False))
    run_begin = time_us(carry_in.column("run_begin_at"), null_as=NO_TIME)
    run_begin = np.where(run_begin == NO_TIME, time_us(carry_in.column("time")), run_begin)
    # Each input is known on [R_i, start): one row at R_i stands for its run.
    held_rows = _known_rows(_carry_rows(carry_in, run_begin), inputs)
    run_start = np.full(len(inputs), NO_TIME, dtype=np.int64)
    run_start[carry_rank[carry_rank >= 0]] = run_begin[carry_rank >= 0]

    needed = np.unique(np.concatenate(list(sources.values())))
    first_ever = np.full(len(inputs), NO_TIME, dtype=np.int64)
    first_ever[needed] = history.first_row_times(inputs.tag_id[needed])
    floor = int(first_ever[needed].min())  # no input has a row before this

    found: dict[str, int] = {}
    fetched = [held_rows]
    read_down_to = run_start.copy()  # per input, rows from here on are in `fetched`
    width, lo = FIRST_WINDOW_US, start_us
    while pending:
        ranks = np.unique(np.concatenate([sources[name] for name in pending]))
        latest_change = min(int(run_start[sources[name]].max()) for name in pending)
        lo = max(min(lo, latest_change - width), floor)
        ranks = ranks[read_down_to[ranks] > lo]
        if len(ranks):
            rows = history.rows_before(inputs.tag_id[ranks], lo, read_down_to[ranks])
            fetched.append(_known_rows(rows, inputs))
            read_down_to[ranks] = lo
        transitions, _ = resolve_rows(pa.concat_tables(fetched), inputs)
        first_row = _first_row_times(transitions, inputs)
        dead_before = (inputs.death_us >= lo) & (inputs.death_us < first_row)
        exact_from = np.where((first_row <= first_ever) | dead_before, _NEVER, first_row)
        steps = _input_steps(transitions, CARRY_IN.empty_table(), inputs, start_us)
        derived = evaluate_tenant(plan.definitions.closure(pending), steps)
        held = _held_before(derived, start_us)
        for name in sorted(pending):
            if name not in held:
                raise RuntimeError(f"walk back lost the run of derived tag {name!r}")
            step, piece = held[name]
            begin = int(step.start[piece])
            if begin > int(exact_from[sources[name]].max()) or lo <= floor:
                found[name] = begin
                pending.discard(name)
        width *= 2
    return found


def _first_row_times(transitions: pa.Table, order: TagOrder) -> np.ndarray:
    """Each tag's earliest transition time (NO_TIME for none); transitions are sorted by
    (name, time), so a tag's first row is where its run of rows begins."""
    first = np.full(len(order), NO_TIME, dtype=np.int64)
    if not transitions.num_rows:
        return first
    rank = order.ranks_of(transitions.column("tag_id").to_numpy(zero_copy_only=False))
    time = time_us(transitions.column("time"))
    head = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]])
    first[rank[head]] = time[head]
    return first


def _carry_rows(carry_in: pa.Table, run_begin: np.ndarray) -> pa.Table:
    """The carry-in as RAW_ROWS rows at the start of its run (the run's resolved value)."""
    return pa.Table.from_arrays(
        [
            carry_in.column("tag_id"),
            us_to_time(run_begin),
            carry_in.column("value_double"),
            carry_in.column("value_string"),
            pc.equal(carry_in.column("value_kind"), "string"),
        ],
        schema=RAW_ROWS,
    )
