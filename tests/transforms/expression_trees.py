"""A hypothesis strategy of derived-tag expression trees: every node kind of the language
(unary, binary, BETWEEN, IN, the functions) over leaves the test chooses."""

from __future__ import annotations

from hypothesis import strategies as st

from tagflow.transforms.derived.expression import (
    Between,
    Binary,
    FunctionCall,
    In,
    Unary,
)


def expression_trees(leaves: st.SearchStrategy, max_leaves: int) -> st.SearchStrategy:
    """Expression trees of at most `max_leaves` of `leaves`."""
    return st.recursive(leaves, _branches, max_leaves=max_leaves)


def _branches(inner: st.SearchStrategy) -> st.SearchStrategy:
    some = st.lists(inner, min_size=1, max_size=3).map(tuple)
    return st.one_of(
        st.builds(Unary, st.sampled_from(["-", "+", "not"]), inner),
        st.builds(
            Binary,
            st.sampled_from(["+", "-", "*", "/", "=", "!=", "<", "<=", ">", ">=", "and", "or"]),
            inner,
            inner,
        ),
        st.builds(Between, inner, inner, inner),
        st.builds(In, inner, some),
        st.builds(FunctionCall, st.just("abs"), inner.map(lambda arg: (arg,))),
        st.builds(FunctionCall, st.sampled_from(["min", "max"]), some),
    )
