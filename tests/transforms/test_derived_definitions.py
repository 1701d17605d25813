"""The derived tags file (DESIGN §8): every way a definition can be wrong is a clear
InvalidDerivedTag at load time, ids are stable negative int32 values, dependencies come first,
and a tenant's derived tags see only that tenant's tags."""

from __future__ import annotations

import hashlib
import textwrap
import time

import pytest

from tagflow.errors import InvalidDerivedTag
from tagflow.transforms.derived.definitions import (
    MAX_FILE_BYTES,
    derived_tag_id,
    load_definitions,
    parse_definitions,
    read_definitions_file,
    tenant_definitions,
    tenant_sections,
)
from tagflow.transforms.derived.expression import Binary, Literal, TagRef

DESIGN_EXAMPLE = textwrap.dedent(
    """\
    tenants:
      acme:
        - name: derived/reactor_hot
          expression: '"plant/area1/analog_00008" > 280 and "plant/area6/state_00013" = ''RUNNING'''
          description: reactor above 280 while the line runs
    """
)


def yaml_of(tenants: dict[str, list[tuple[str, str]]]) -> str:
    """A definitions file; expressions written as YAML single-quoted scalars."""
    lines = ["tenants:"]
    for tenant, tags in tenants.items():
        lines.append(f"  {tenant}:")
        for name, expression in tags:
            quoted = expression.replace("'", "''")
            lines += [f"    - name: {name}", f"      expression: '{quoted}'"]
    return "\n".join(lines) + "\n"


def refused(text: str, **kwargs) -> str:
    with pytest.raises(InvalidDerivedTag) as caught:
        parse_definitions(text, **kwargs)
    return str(caught.value)


def expected_id(name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return -(1 + int.from_bytes(digest, "little") % 2_147_483_647)


# --- the file's shape ------------------------------------------------------------------------


def test_design_example_loads_with_inputs_id_and_description():
    acme = parse_definitions(DESIGN_EXAMPLE).for_tenant("acme")
    (tag,) = acme.tags
    assert tag.name == "derived/reactor_hot"
    assert tag.description == "reactor above 280 while the line runs"
    assert tag.expression_text == (
        '"plant/area1/analog_00008" > 280 and "plant/area6/state_00013" = \'RUNNING\''
    )
    assert tag.inputs == ("plant/area1/analog_00008", "plant/area6/state_00013")
    assert tag.ast == Binary(
        "and",
        Binary(">", TagRef("plant/area1/analog_00008"), Literal(280.0)),
        Binary("=", TagRef("plant/area6/state_00013"), Literal("RUNNING")),
    )
    assert tag.tag_id == expected_id("derived/reactor_hot") == derived_tag_id(tag.name)
    assert -(2**31) <= tag.tag_id < 0
    assert acme.source_inputs == ("plant/area1/analog_00008", "plant/area6/state_00013")
    # Checked against the tenant's source tags, it is fine.
    acme.check_source_tags(["plant/area1/analog_00008", "plant/area6/state_00013", "other"])


def test_ids_are_stable_and_independent_of_tenant_and_file():
    one = parse_definitions(yaml_of({"a": [("x", "s > 1")], "b": [("y", "s"), ("x", "s")]}))
    assert one.for_tenant("a").get("x").tag_id == one.for_tenant("b").get("x").tag_id
    assert one.for_tenant("a").get("x").tag_id == expected_id("x")


def test_empty_file_and_empty_tenants_define_nothing():
    assert parse_definitions("").tenants == {}
    assert parse_definitions("tenants:\n").tenants == {}
    definitions = parse_definitions("tenants:\n  acme: []\n  beta:\n")
    assert len(definitions.for_tenant("acme")) == 0
    assert len(definitions.for_tenant("beta")) == 0
    assert len(definitions.for_tenant("not_in_file")) == 0


@pytest.mark.parametrize(
    "text,expected",
    [
        ("- a\n- b\n", "must be a mapping with the one key 'tenants'"),
        ("tenant:\n  acme: []\n", "must be a mapping with the one key 'tenants'"),
        ("tenants: [acme]\n", "'tenants' must map each tenant name to a list"),
        ("tenants:\n  acme: {name: x}\n", "tenant 'acme': must be a list of derived tags"),
        ("tenants:\n  acme: [x]\n", "tenant 'acme': entry 1 must be a mapping"),
        ("tenants:\n  acme:\n    - expression: a\n", "entry 1: invalid tag name None"),
        ("tenants:\n  acme:\n    - {name: '', expression: a}\n", "entry 1: invalid tag name ''"),
        ("tenants:\n  acme:\n    - {name: x}\n", "'x': expression must be text"),
        (
            "tenants:\n  acme:\n    - {name: x, expression: 5}\n",
            "(quote it in YAML), got a YAML int",
        ),
        ("tenants:\n  acme:\n    - {name: x, expression: a, unit: C}\n", "unknown key 'unit'"),
        ("tenants:\n  acme:\n    - {name: x, expression: a, description: [1]}\n", "description"),
        ("tenants:\n  bad-name:\n    - {name: x, expression: a}\n", "invalid tenant name"),
        ("tenants:\n  123:\n    - {name: x, expression: a}\n", "invalid tenant name"),
        ("tenants:\n  acme:\n    - {name: x, expression: '1 + 2'}\n", "reads no tag"),
    ],
)
def test_shape_errors_are_clear(text, expected):
    assert expected in refused(text)


def test_yaml_syntax_error_names_line_and_column():
    message = refused("tenants:\n  acme:\n    - name: x\n     expression: [a\n")
    assert message.startswith("the derived tags file is not valid YAML")
    assert "line 4" in message


def test_a_key_written_twice_is_refused_not_silently_dropped():
    text = (
        "tenants:\n  acme:\n    - {name: x, expression: a}\n"
        "  acme:\n    - {name: y, expression: b}\n"
    )
    assert "names 'acme' twice in one mapping at line 4" in refused(text)
    text = "tenants:\n  acme:\n    - {name: x, expression: a, expression: b}\n"
    assert "names 'expression' twice" in refused(text)


def test_yaml_tags_that_build_objects_are_refused():
    text = "tenants: !!python/object/apply:os.system ['true']\n"
    assert "not valid YAML" in refused(text)


def test_deeply_nested_yaml_is_refused_quickly():
    began = time.perf_counter()
    assert "not valid YAML" in refused("tenants: " + "[" * 10_000)
    assert time.perf_counter() - began < 1.0


# --- names, duplicates, cycles, order --------------------------------------------------------


def test_expression_errors_name_tenant_tag_and_column():
    message = refused(yaml_of({"acme": [("ok", "a > 1"), ("derived/bad", "a > (1")]}))
    assert message == (
        "tenant 'acme', derived tag 'derived/bad': in its expression, expected ')', "
        "found the end of the expression at column 7"
    )


def test_duplicate_derived_names_are_refused():
    message = refused(yaml_of({"acme": [("d", "a"), ("e", "b"), ("d", "c")]}))
    assert message == "tenant 'acme', derived tag 'd': is defined twice"


def test_colliding_ids_are_refused():
    # Found by search: these two names hash to the same id (checked independently here).
    first, second = "derived/t992", "derived/t23860"
    assert expected_id(first) == expected_id(second)
    message = refused(yaml_of({"acme": [(first, "a"), (second, "b")]}))
    assert f"same id ({expected_id(first)}) as derived tag '{first}'; rename one" in message
    # In different tenants they do not meet.
    parse_definitions(yaml_of({"acme": [(first, "a")], "beta": [(second, "b")]}))


def test_cycles_are_refused_and_named():
    message = refused(
        yaml_of({"acme": [("x", "y + 1"), ("y", "z * 2"), ("z", "x > 0"), ("w", "a")]})
    )
    assert message == "tenant 'acme': derived tags form a cycle: 'x' → 'y' → 'z' → 'x'"
    assert "cycle: 's' → 's'" in refused(yaml_of({"acme": [("s", "s + 1")]}))


def test_order_puts_inputs_before_dependents_and_keeps_file_order_otherwise():
    acme = parse_definitions(
        yaml_of(
            {
                "acme": [
                    ("top", "mid and low"),
                    ("other", "a"),
                    ("mid", "low or b"),
                    ("low", "a > 1"),
                    ("last", "b"),
                ]
            }
        )
    ).for_tenant("acme")
    assert acme.names == ("other", "low", "mid", "top", "last")
    assert acme.source_inputs_of("top") == ("a", "b")
    assert acme.source_inputs_of("low") == ("a",)
    assert acme.source_inputs == ("a", "b")


# --- references are looked up in the tenant's own tags ---------------------------------------


def test_unknown_references_and_clashes_need_the_source_tags():
    text = yaml_of({"acme": [("hot", '"temp" > 280 and "tmep" < 400'), ("d2", "hot and flow")]})
    acme = parse_definitions(text).for_tenant("acme")  # syntax alone is fine
    with pytest.raises(InvalidDerivedTag) as caught:
        acme.check_source_tags(["temp", "flow"])
    assert str(caught.value) == (
        "tenant 'acme', derived tag 'hot': reads unknown tag 'tmep': not a source or derived "
        "tag of this tenant"
    )
    acme = parse_definitions(yaml_of({"acme": [("temp", "flow * 2")]})).for_tenant("acme")
    with pytest.raises(InvalidDerivedTag, match="has the name of a source tag"):
        acme.check_source_tags(["temp", "flow"])


def test_another_tenants_tags_are_unknown():
    text = yaml_of(
        {
            "acme": [("acme_hot", "temp > 1")],
            # beta reads acme's source tag and acme's derived tag: neither is beta's.
            "beta": [("beta_hot", "temp > 1 and acme_hot")],
        }
    )
    source_tags = {"acme": ["temp"], "beta": ["pressure"]}
    message = refused(text, source_tags=source_tags)
    assert message == (
        "tenant 'beta', derived tag 'beta_hot': reads unknown tags 'temp', 'acme_hot': "
        "not a source or derived tag of this tenant"
    )
    # Even when beta has a tag `temp` of its own, acme's derived tag stays invisible to it.
    message = refused(text, source_tags={"acme": ["temp"], "beta": ["temp"]})
    assert "derived tag 'beta_hot': reads unknown tag 'acme_hot'" in message


def test_many_unknown_references_are_summarised():
    expression = " + ".join(f'"u{i}"' for i in range(40))
    message = refused(yaml_of({"acme": [("d", expression)]}), source_tags={"acme": []})
    assert "'u0', 'u1', 'u2', 'u3', 'u4' and 35 more" in message


# --- fingerprints ----------------------------------------------------------------------------


def test_fingerprint_follows_meaning_and_inputs_not_spelling():
    def fingerprints(tags):
        acme = parse_definitions(yaml_of({"acme": tags})).for_tenant("acme")
        return {tag.name: tag.fingerprint for tag in acme}, acme.fingerprint

    base, base_all = fingerprints([("inner", "a > 1"), ("outer", "inner and b = 'X'")])
    respelled, respelled_all = fingerprints([("inner", '"a">1.0'), ("outer", "inner AND b == 'X'")])
    assert respelled == base and respelled_all == base_all
    changed, changed_all = fingerprints([("inner", "a > 2"), ("outer", "inner and b = 'X'")])
    assert changed["inner"] != base["inner"]
    # outer's text did not change, but what it reads did.
    assert changed["outer"] != base["outer"]
    assert changed_all != base_all
    described = parse_definitions(
        "tenants:\n  acme:\n    - {name: inner, expression: a > 1, description: new}\n"
    ).for_tenant("acme")
    assert described.get("inner").fingerprint == base["inner"]


# --- hostile files ---------------------------------------------------------------------------


def test_one_megabyte_expression_in_the_file_is_refused_quickly():
    began = time.perf_counter()
    message = refused(yaml_of({"acme": [("big", "a + " * 240_000 + "a")]}))
    assert time.perf_counter() - began < 2.0
    assert "tenant 'acme', derived tag 'big': in its expression, expression is 960,001" in message
    assert len(message) < 300


def test_ten_thousand_nested_parentheses_in_the_file_are_refused():
    message = refused(yaml_of({"acme": [("deep", "(" * 10_000 + "a" + ")" * 10_000)]}))
    assert "characters long" in message
    message = refused(yaml_of({"acme": [("deep", "(" * 4_000 + "a" + ")" * 4_000)]}))
    assert "nests more than 64 levels deep at column 65" in message


def test_quotes_and_unicode_in_names_are_plain_tag_names():
    text = "tenants:\n  acme:\n" + (
        "    - name: 'derived/ünï \"q\" ''s'''\n"
        '      expression: \'"Température ""zone"" 1" > 1 and "温度" < 2\'\n'
    )
    acme = parse_definitions(text).for_tenant("acme")
    (tag,) = acme.tags
    assert tag.name == "derived/ünï \"q\" 's'"
    assert tag.inputs == ('Température "zone" 1', "温度")
    acme.check_source_tags(['Température "zone" 1', "温度"])


def test_files_over_the_cap_are_refused(tmp_path):
    path = tmp_path / "derived.yaml"
    path.write_text("#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(InvalidDerivedTag, match="over 1,048,576 bytes"):
        read_definitions_file(path)
    with pytest.raises(InvalidDerivedTag, match="over 1,048,576 characters"):
        tenant_sections("#" * (MAX_FILE_BYTES + 1))


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(InvalidDerivedTag, match="could not be read: No such file"):
        read_definitions_file(tmp_path / "missing.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("tenants:\n  acme:\n    - {name: é, expression: a}\n".encode("latin-1"))
    with pytest.raises(InvalidDerivedTag, match="not UTF-8 text"):
        read_definitions_file(latin1)


def test_load_definitions_reads_the_file(tmp_path):
    path = tmp_path / "derived.yaml"
    path.write_text(DESIGN_EXAMPLE)
    assert load_definitions(path).for_tenant("acme").names == ("derived/reactor_hot",)


def test_one_tenant_can_be_checked_without_the_others():
    sections = tenant_sections(yaml_of({"acme": [("ok", "a")], "beta": [("bad", "(")]}))
    assert tenant_definitions("acme", sections["acme"]).names == ("ok",)
    with pytest.raises(InvalidDerivedTag, match="tenant 'beta'"):
        tenant_definitions("beta", sections["beta"])
