"""A hostile derived tags file (TAGFLOW_DERIVED_TAGS, DESIGN §8) costs little to refuse: YAML
anchors and aliases, wherever they stand, are refused with the line and column of the first
one before anything is built (a 1 KB file of nested aliases once took seconds and hundreds of
MB to format its error), and every other refusal shows only a bounded excerpt of the value.

Each file goes through the loaders the code location and `tagflow serve` call and through
`tagflow derived check FILE`."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagflow.cli.app import app
from tagflow.daystep.derived import deployment_definitions as code_location_definitions
from tagflow.errors import InvalidDerivedTag
from tagflow.settings import Settings
from tagflow.transforms.derived.definitions import deployment_definitions, parse_definitions

# Nine levels of ten aliases each: 10⁹ strings once expanded, 1 KB written.
BOMB = (
    "["
    + ", ".join(
        ["&a0 [" + ", ".join(['"lol"'] * 10) + "]"]
        + [f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]" for level in range(1, 9)]
    )
    + "]"
)

ENTRY = "    - name: derived/ok\n      expression: a > 1\n"
PLACES = {
    "name": f"tenants:\n  acme:\n    - name: {BOMB}\n      expression: a\n",
    "expression": f"tenants:\n  acme:\n    - name: derived/x\n      expression: {BOMB}\n",
    "description": (
        f"tenants:\n  acme:\n{ENTRY}    - name: derived/x\n      expression: a\n"
        f"      description: {BOMB}\n"
    ),
    "tenant key": f"tenants:\n  acme:\n{ENTRY}  ? {BOMB}\n  : []\n",
    "tenant's list": f"tenants:\n  acme:\n{ENTRY}  beta: {BOMB}\n",
    "top level": f"tenants:\n  acme:\n{ENTRY}shared: {BOMB}\n",
}


def code_location(path: Path) -> object:
    return code_location_definitions(Settings.from_env({"TAGFLOW_DERIVED_TAGS": str(path)}))


def first_anchor(text: str) -> str:
    """'line L, column C' of the first '&' of `text` (1-based)."""
    offset = text.index("&")
    column = offset - text.rfind("\n", 0, offset)
    return f"line {text.count(chr(10), 0, offset) + 1}, column {column}"


def refused_cheaply(load: Callable[[], object]) -> str:
    """The InvalidDerivedTag message of `load()`, asserted to come in under a second with under
    20 MB allocated at the peak."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(InvalidDerivedTag) as caught:
            load()
        elapsed = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 20 * 2**20
    return str(caught.value)


def test_the_bomb_is_small_and_would_expand_a_billion_fold():
    assert len(BOMB) < 1024
    assert BOMB.count("*a") == 80 and BOMB.count('"lol"') == 10


@pytest.mark.parametrize("place", list(PLACES))
def test_an_alias_bomb_anywhere_is_refused_at_its_line_by_every_loader(tmp_path, place):
    text = PLACES[place]
    assert len(text) < 1200
    path = tmp_path / "derived.yaml"
    path.write_text(text)
    expected = (
        f"the derived tags file uses a YAML anchor (&) at {first_anchor(text)}: anchors and "
        "aliases are not accepted; write each value out"
    )
    assert refused_cheaply(lambda: deployment_definitions(path)) == expected  # tagflow serve
    assert refused_cheaply(lambda: code_location(path)) == expected
    assert refused_cheaply(lambda: parse_definitions(text, source_tags={"acme": ["a"]})) == (
        expected
    )

    began = time.perf_counter()
    result = CliRunner().invoke(app, ["derived", "check", str(path)])
    assert time.perf_counter() - began < 1.0
    assert result.exit_code == 2
    assert f"error: {expected}" in result.output
    assert "Traceback" not in result.output and str(tmp_path) not in result.output


def test_tagflow_serve_refuses_the_bomb_before_serving(tmp_path):
    path = tmp_path / "derived.yaml"
    path.write_text(PLACES["name"])
    began = time.perf_counter()
    result = CliRunner().invoke(
        app,
        ["serve", "--store", str(tmp_path / "store"), "--port", "9"],
        env={
            "TAGFLOW_DERIVED_TAGS": str(path),
            "TAGFLOW_SOURCE_URL": "postgresql://x@127.0.0.1:9/x",
        },
    )
    assert time.perf_counter() - began < 2.0
    assert result.exit_code == 2
    assert "anchors and aliases are not accepted" in result.output
    assert str(tmp_path) not in result.output


def test_an_alias_alone_is_refused_at_its_line():
    text = "tenants:\n  acme:\n    - name: derived/x\n      expression: *a\n"
    message = refused_cheaply(lambda: parse_definitions(text))
    assert message.endswith(
        "uses a YAML alias (*) at line 4, column 19: anchors and aliases "
        "are not accepted; write each value out"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (
            "[" + ", ".join(["[1, 2, 3, 4, 5]"] * 50_000) + "]",
            "[[1, 2, 3, 4, ...], [1, 2, 3, 4, ...], [1, 2, 3, 4, ...], [1, 2, 3, 4, ...], ...]",
        ),
        (
            "{" + ", ".join(f"k{i}: v" for i in range(50_000)) + "}",
            "{'k0': 'v', 'k1': 'v', 'k10': 'v', 'k100': 'v', ...}",
        ),
        # 18 characters, "...", the last 19: reprlib's cut at 40.
        ("!!binary " + "QUJD" * 150_000, "b'ABCABCABCABCABCA...ABCABCABCABCABCABC'"),
    ],
)
def test_a_large_value_of_the_wrong_type_is_shown_as_a_short_excerpt(value, shown):
    # Building the value dominates here (not timed): the message shows a few elements of it.
    text = f"tenants:\n  acme:\n    - name: {value}\n      expression: a\n"
    assert 500_000 < len(text) < 1 << 20
    with pytest.raises(InvalidDerivedTag) as caught:
        parse_definitions(text)
    message = str(caught.value)
    assert message == f"tenant 'acme': entry 1: invalid tag name {shown}: expected non-empty text"


def test_a_tenant_key_or_unknown_key_that_is_not_text_is_shown_briefly():
    assert refused_cheaply(lambda: parse_definitions("tenants:\n  2026-01-02: []\n")) == (
        "invalid tenant name datetime.date(2026, 1, 2): expected text"
    )
    text = "tenants:\n  acme:\n    - {name: x, expression: a, " + "9" * 1000 + ": 1}\n"
    assert refused_cheaply(lambda: parse_definitions(text)) == (
        "tenant 'acme', derived tag 'x': unknown key " + "9" * 18 + "..." + "9" * 19 + "; "
        "an entry has name, expression and description"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("tenants:\n  acme:\n    - name: 2026-13-45\n      expression: a\n", "line 3, column 13"),
        (
            "tenants:\n  acme:\n    - name: x\n      expression: " + "7" * 5000 + "\n",
            "line 4, column 19",
        ),
    ],
)
def test_a_value_yaml_cannot_build_is_an_invalid_derived_tag_with_its_line(text, where):
    # yaml raises a bare ValueError for these, which reached the caller as a traceback.
    assert refused_cheaply(lambda: parse_definitions(text)) == (
        "the derived tags file is not valid YAML: a value out of range for its type (quote it) "
        f"at {where}"
    )


def test_deep_nesting_is_refused_before_the_stack_runs_out():
    text = "tenants: " + "[" * 900 + "]" * 900 + "\n"
    assert refused_cheaply(lambda: parse_definitions(text)) == (
        "the derived tags file is not valid YAML: nested deeper than 16 levels at line 1, column 25"
    )
