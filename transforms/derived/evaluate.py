"""Exact evaluation of derived tags (DESIGN §8).

The inputs' step functions are merged on the union of their change instants (piece starts and
ends: rows, deaths, rebirths and gaps alike); between two consecutive instants every input
holds one value, so the expression is evaluated once per such elementary interval, as whole
numpy columns (one pass per node of the expression, no loop per interval). Equal contiguous
results are then merged into maximal pieces, whose starts are exactly the derived tag's
transitions.

Values inside the evaluation: a number (always finite: NaN and ±inf inputs and non-finite
arithmetic results become NULL, so a derived value is never NaN), a string (a code into one
dictionary sorted in codepoint order, so string order is code order), or NULL. Booleans are
1.0 and 0.0. `min` and `max` accept all-number or all-string arguments (strings in codepoint
order); a mix, like any NULL argument, gives NULL. `x in (a, b)` is `x = a or x = b`, so a
string option tested against a number (a NULL comparison) makes a non-match NULL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tagflow.errors import UnknownTag
from tagflow.schemas.arrow import TS
from tagflow.transforms.columns import (
    nullable_float,
    string_codes,
    strings_by_code,
    us_to_time,
)
from tagflow.transforms.derived.definitions import TenantDerivedTags
from tagflow.transforms.derived.expression import (
    Between,
    Binary,
    FunctionCall,
    In,
    Literal,
    Node,
    TagRef,
    Unary,
    children,
    excerpt,
    tag_references,
)
from tagflow.transforms.pieces import Pieces

# A derived tag's transitions, as the transitions dataset holds them (less tag id and name).
DERIVED_TRANSITIONS = pa.schema(
    [
        ("time", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("value_kind", pa.string()),
    ]
)


@dataclass(frozen=True)
class StepFunction:
    """One tag's step function as constant pieces, sorted by start, not overlapping.

    Piece i holds its value on [start[i], end[i]) (µs since the epoch; end NO_TIME when nothing
    ended it). Where no piece holds (before the first, after death, in a gap) the tag is
    undefined; pieces of zero length hold nothing. The value of piece i is NULL where
    is_null[i], else the string strings[string_code[i]] where string_code[i] >= 0, else the
    number value_double[i].
    """

    start: np.ndarray  # int64 µs
    end: np.ndarray  # int64 µs
    value_double: np.ndarray  # float64; NaN where NULL or a string
    string_code: np.ndarray  # int32 index into `strings`; -1 where NULL or a number
    is_null: np.ndarray  # bool
    strings: pa.Array  # string: what the codes index (any order)

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> StepFunction:
        """A tag that is never defined."""
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
            np.empty(0, bool),
            pa.array([], pa.string()),
        )

    @classmethod
    def from_pieces(cls, pieces: Pieces, rank: int) -> StepFunction:
        """The step function of the tag at `rank` in `pieces` (pieces_for_window's output)."""
        lo, hi = np.searchsorted(pieces.rank, [rank, rank + 1])
        window = slice(int(lo), int(hi))
        return cls(
            pieces.start[window],
            pieces.end[window],
            pieces.value_double[window],
            np.where(pieces.is_null[window], -1, pieces.string_code[window]).astype(np.int32),
            pieces.is_null[window],
            pieces.strings,
        )


def transitions_of(derived: StepFunction) -> pa.Table:
    """The transitions of a derived tag (DERIVED_TRANSITIONS), from evaluate_derived's step
    function: its pieces are maximal, so each piece start is an instant where the tag becomes
    defined or changes value, and there are no others. A NULL is a numeric row."""
    is_string = derived.string_code >= 0
    return pa.Table.from_arrays(
        [
            us_to_time(derived.start),
            nullable_float(derived.value_double, derived.is_null | is_string),
            strings_by_code(derived.strings, derived.string_code),
            pa.array(np.where(is_string, "string", "numeric"), pa.string()),
        ],
        schema=DERIVED_TRANSITIONS,
    )


@dataclass(frozen=True)
class _Values:
    """Values of one expression node on every evaluated interval."""

    number: np.ndarray  # float64: the number, always finite; NaN where NULL or a string
    code: np.ndarray  # int64: the string's code in the shared dictionary; -1 elsewhere

    @property
    def is_number(self) -> np.ndarray:
        return ~np.isnan(self.number)

    @property
    def is_string(self) -> np.ndarray:
        return self.code >= 0


def _numbers(number: np.ndarray) -> _Values:
    """Numeric results (NaN: NULL); non-finite ones, like overflow, become NULL."""
    number = np.where(np.isfinite(number), number, np.nan)
    return _Values(number, np.full(len(number), -1, np.int64))


def _truth(result_true: np.ndarray, result_false: np.ndarray) -> _Values:
    """1.0 where true, 0.0 where false, NULL elsewhere."""
    number = result_true.astype(np.float64)
    number[~(result_true | result_false)] = np.nan
    return _Values(number, np.full(len(number), -1, np.int64))


def _truth_of(values: _Values) -> tuple[np.ndarray, np.ndarray]:
    """(is true, is false) as `and`/`or`/`not` read a value: 0 is false, any other number
    true; NULL and strings are neither."""
    # NaN != 0 holds, so NULLs and strings must be excluded from "true" explicitly.
    return values.is_number & (values.number != 0), values.number == 0


_COMPARE = {
    "=": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _compare(op: str, left: _Values, right: _Values) -> _Values:
    """Number with number or string with string (by code, i.e. codepoint order); else NULL."""
    compare = _COMPARE[op]
    numbers = left.is_number & right.is_number
    strings = left.is_string & right.is_string
    result = np.where(numbers, compare(left.number, right.number), compare(left.code, right.code))
    return _truth(result & (numbers | strings), ~result & (numbers | strings))


def _and(left: _Values, right: _Values) -> _Values:
    left_true, left_false = _truth_of(left)
    right_true, right_false = _truth_of(right)
    return _truth(left_true & right_true, left_false | right_false)


def _or(left: _Values, right: _Values) -> _Values:
    left_true, left_false = _truth_of(left)
    right_true, right_false = _truth_of(right)
    return _truth(left_true | right_true, left_false & right_false)


def _arithmetic(op: str, left: _Values, right: _Values) -> _Values:
    # Strings and NULLs are NaN here and stay NaN; x/0 is ±inf or NaN and so NULL.
    with np.errstate(all="ignore"):
        if op == "+":
            return _numbers(left.number + right.number)
        if op == "-":
            return _numbers(left.number - right.number)
        if op == "*":
            return _numbers(left.number * right.number)
        return _numbers(left.number / right.number)


def _extreme(function: str, args: list[_Values]) -> _Values:
    """min/max: over numbers, or over strings; NULL if an argument is NULL or kinds mix."""
    pick = np.minimum if function == "min" else np.maximum
    numbers = np.logical_and.reduce([arg.is_number for arg in args])
    strings = np.logical_and.reduce([arg.is_string for arg in args])
    number = pick.reduce([arg.number for arg in args])
    code = pick.reduce([arg.code for arg in args])
    return _Values(np.where(numbers, number, np.nan), np.where(strings, code, -1))


class _Evaluator:
    """Evaluates nodes over `size` intervals, given the inputs' values there."""

    def __init__(self, size: int, inputs: dict[str, _Values], literal_codes: dict[str, int]):
        self.size = size
        self.inputs = inputs
        self.literal_codes = literal_codes

    def literal(self, value: float | str | None) -> _Values:
        if isinstance(value, str):
            return _Values(
                np.full(self.size, np.nan), np.full(self.size, self.literal_codes[value])
            )
        number = np.nan if value is None else value
        return _Values(np.full(self.size, number, np.float64), np.full(self.size, -1, np.int64))

    def evaluate(self, node: Node) -> _Values:
        if isinstance(node, Literal):
            return self.literal(node.value)
        if isinstance(node, TagRef):
            return self.inputs[node.name]
        if isinstance(node, Unary):
            operand = self.evaluate(node.operand)
            if node.op == "not":
                is_true, is_false = _truth_of(operand)
                return _truth(is_false, is_true)
            return _numbers(-operand.number if node.op == "-" else operand.number)
        if isinstance(node, Binary):
            left, right = self.evaluate(node.left), self.evaluate(node.right)
            if node.op == "and":
                return _and(left, right)
            if node.op == "or":
                return _or(left, right)
            if node.op in _COMPARE:
                return _compare(node.op, left, right)
            return _arithmetic(node.op, left, right)
        if isinstance(node, Between):
            operand = self.evaluate(node.operand)
            low, high = self.evaluate(node.low), self.evaluate(node.high)
            return _and(_compare("<=", low, operand), _compare("<=", operand, high))
        if isinstance(node, In):
            operand = self.evaluate(node.operand)
            result = self.literal(0.0)
            for option in node.options:
                result = _or(result, _compare("=", operand, self.evaluate(option)))
            return result
        if isinstance(node, FunctionCall):
            args = [self.evaluate(arg) for arg in node.args]
            if node.function == "abs":
                return _numbers(np.abs(args[0].number))
            return _extreme(node.function, args)
        raise TypeError(f"not an expression node: {type(node).__name__}")


def _string_literals(expression: Node) -> list[str]:
    found, stack = [], [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, Literal) and isinstance(node.value, str):
            found.append(node.value)
        stack.extend(children(node))
    return found


def _held(step: StepFunction) -> StepFunction:
    """`step` without pieces of zero length, checked to be sorted and not overlapping, its
    strings cut down to those its pieces hold (step functions cut from a day's pieces share
    the dictionary of every tag of the chunk, which would otherwise be re-encoded per input)."""
    positive = step.end > step.start
    if not positive.all():
        step = StepFunction(
            step.start[positive],
            step.end[positive],
            step.value_double[positive],
            step.string_code[positive],
            step.is_null[positive],
            step.strings,
        )
    if len(step) > 1 and not bool((step.start[1:] >= step.end[:-1]).all()):
        raise ValueError("a step function's pieces must be sorted by start and not overlap")
    is_string = (step.string_code >= 0) & ~step.is_null
    used = _used_codes(step.string_code[is_string], len(step.strings))
    if len(used) == len(step.strings):
        return step
    return StepFunction(
        step.start,
        step.end,
        step.value_double,
        np.where(is_string, np.searchsorted(used, step.string_code), -1).astype(np.int32),
        step.is_null,
        step.strings.take(pa.array(used, pa.int64())),
    )


def evaluate_derived(expression: Node, inputs: Mapping[str, StepFunction]) -> StepFunction:
    """The derived tag's step function: defined exactly where every tag `expression` reads is
    defined, holding the expression's value (DESIGN §8) there, in maximal pieces (contiguous
    equal values merged; NULL equals NULL; a gap separates). `inputs` maps each tag the
    expression reads to its step function; an input given over a shorter stretch of time
    leaves the derived tag undefined outside it."""
    names = tag_references(expression)
    if not names:
        raise ValueError("an expression that reads no tag has no step function")
    missing = [name for name in names if name not in inputs]
    if missing:
        raise UnknownTag(f"no step function given for tag {excerpt(missing[0])}")
    steps = [_held(inputs[name]) for name in names]
    if any(len(step) == 0 for step in steps):
        return StepFunction.empty()

    literals = _string_literals(expression)
    input_codes, literal_codes, dictionary = _shared_strings(steps, literals)

    instants = _distinct_sorted(
        np.concatenate([part for step in steps for part in (step.start, step.end)])
    )
    left, right = instants[:-1], instants[1:]
    # Narrow the intervals input by input to those where all inputs so far are defined.
    interval = np.arange(len(left))
    held_by: list[np.ndarray] = []
    for step in steps:
        piece = np.searchsorted(step.start, left[interval], side="right") - 1
        covered = (piece >= 0) & (step.end[np.maximum(piece, 0)] > left[interval])
        interval = interval[covered]
        held_by = [index[covered] for index in held_by] + [piece[covered]]
    left, right = left[interval], right[interval]

    values = {}
    for name, step, codes, piece in zip(names, steps, input_codes, held_by, strict=True):
        number = step.value_double[piece]
        code = step.string_code[piece]
        is_string = (code >= 0) & ~step.is_null[piece]
        values[name] = _Values(
            np.where(np.isfinite(number) & ~step.is_null[piece] & ~is_string, number, np.nan),
            np.where(is_string, codes[np.where(is_string, code, 0)], -1)
            if len(codes)
            else np.full(len(piece), -1, np.int64),
        )
    result = _Evaluator(len(left), values, dict(zip(literals, literal_codes, strict=True)))
    return _maximal_pieces(left, right, result.evaluate(expression), dictionary)


def _used_codes(codes: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of `codes` (each in [0, size)), ascending: a count, not a sort."""
    return np.flatnonzero(np.bincount(codes, minlength=size))


def _distinct_sorted(times: np.ndarray) -> np.ndarray:
    """The distinct values of `times`, ascending. The array is a concatenation of sorted runs
    (each input's starts and ends), which a stable sort (timsort) merges in near-linear time."""
    times = np.sort(times, kind="stable")
    keep = np.empty(len(times), dtype=bool)
    keep[:1] = True
    np.not_equal(times[1:], times[:-1], out=keep[1:])
    return times[keep]


def _shared_strings(
    steps: list[StepFunction], literals: list[str]
) -> tuple[list[np.ndarray], np.ndarray, pa.Array]:
    """Per input, the shared code of each entry of its `strings`; the codes of the literals;
    and the shared dictionary (sorted in codepoint order)."""
    columns = [step.strings for step in steps] + [pa.array(literals, pa.string())]
    codes, dictionary = string_codes(*columns)
    return codes[:-1], codes[-1], dictionary


def _maximal_pieces(
    left: np.ndarray, right: np.ndarray, values: _Values, dictionary: pa.Array
) -> StepFunction:
    number, code = values.number, values.code
    null = np.isnan(number) & (code < 0)
    same_as_previous = (left[1:] == right[:-1]) & (
        (number[1:] == number[:-1])
        | ((code[1:] == code[:-1]) & (code[1:] >= 0))
        | (null[1:] & null[:-1])
    )
    first = np.flatnonzero(np.concatenate([[True], ~same_as_previous])) if len(left) else left
    last = np.concatenate([first[1:] - 1, [len(left) - 1]]) if len(left) else left
    code = code[first]
    used = _used_codes(code[code >= 0], len(dictionary))
    compact = np.where(code >= 0, np.searchsorted(used, code), -1).astype(np.int32)
    return StepFunction(
        start=left[first].astype(np.int64),
        end=right[last].astype(np.int64),
        value_double=number[first],
        string_code=compact,
        is_null=null[first],
        strings=dictionary.take(pa.array(used, pa.int64())),
    )


def evaluate_tenant(
    definitions: TenantDerivedTags, source: Mapping[str, StepFunction]
) -> dict[str, StepFunction]:
    """Every derived tag of a tenant, in dependency order, each reading the step functions of
    `source` (source tag name → step function) and of the derived tags before it."""
    known = dict(source)
    derived = {}
    for tag in definitions:
        known[tag.name] = derived[tag.name] = evaluate_derived(tag.ast, known)
    return derived


__all__ = [
    "DERIVED_TRANSITIONS",
    "StepFunction",
    "evaluate_derived",
    "evaluate_tenant",
    "transitions_of",
]
