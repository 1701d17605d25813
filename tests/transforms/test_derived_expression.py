"""The derived tag expression language (DESIGN §8): what parses to which tree, what is refused
with which message and position, and that hostile input fails fast with InvalidDerivedTag."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagflow.errors import InvalidDerivedTag, TagflowError
from tagflow.transforms.derived.expression import (
    MAX_EXPRESSION_CHARS,
    MAX_HEIGHT,
    MAX_NESTING,
    MAX_TAG_REFERENCES,
    Between,
    Binary,
    FunctionCall,
    In,
    Literal,
    TagRef,
    Unary,
    parse_expression,
    render,
    tag_references,
)
from tests.transforms.expression_trees import expression_trees

a, b, c, x = TagRef("a"), TagRef("b"), TagRef("c"), TagRef("x")


def lit(value):
    return Literal(float(value) if isinstance(value, int) else value)


def refused(text: str) -> str:
    with pytest.raises(InvalidDerivedTag) as caught:
        parse_expression(text)
    return str(caught.value)


# --- what parses to what ---------------------------------------------------------------------


def test_design_example_parses_to_a_comparison_of_two_tags():
    tree = parse_expression(
        '"plant/area1/analog_00008" > 280 and "plant/area6/state_00013" = \'RUNNING\''
    )
    assert tree == Binary(
        "and",
        Binary(">", TagRef("plant/area1/analog_00008"), lit(280)),
        Binary("=", TagRef("plant/area6/state_00013"), lit("RUNNING")),
    )
    assert tag_references(tree) == ("plant/area1/analog_00008", "plant/area6/state_00013")


@pytest.mark.parametrize(
    "text,tree",
    [
        # and binds tighter than or
        ("a or b and c", Binary("or", a, Binary("and", b, c))),
        ("a and b or c", Binary("or", Binary("and", a, b), c)),
        # not binds looser than comparisons
        ("not a = b", Unary("not", Binary("=", a, b))),
        ("not a and b", Binary("and", Unary("not", a), b)),
        ("not not a", Unary("not", Unary("not", a))),
        # arithmetic precedence and left associativity
        ("a + b * c", Binary("+", a, Binary("*", b, c))),
        ("a - b - c", Binary("-", Binary("-", a, b), c)),
        ("a / b / c", Binary("/", Binary("/", a, b), c)),
        ("(a + b) * c", Binary("*", Binary("+", a, b), c)),
        ("a + b > c * 2", Binary(">", Binary("+", a, b), Binary("*", c, lit(2)))),
        # signs bind tightest; a signed number is a literal
        ("-2 * a", Binary("*", lit(-2), a)),
        ("-a * 2", Binary("*", Unary("-", a), lit(2))),
        ("2 - -1", Binary("-", lit(2), lit(-1))),
        ("-(-3.5)", lit(3.5)),
        ("+'s'", Unary("+", lit("s"))),
        # between and in
        ("x between 1 and 2 and a", Binary("and", Between(x, lit(1), lit(2)), a)),
        ("x between -1 and a + 1", Between(x, lit(-1), Binary("+", a, lit(1)))),
        ("x in (1, 'b', null)", In(x, (lit(1), lit("b"), lit(None)))),
        ("x in (a or b)", In(x, (Binary("or", a, b),))),
        ("x not in (1)", Unary("not", In(x, (lit(1),)))),
        ("x not between a and b", Unary("not", Between(x, a, b))),
        # functions, case-insensitive
        ("abs(x)", FunctionCall("abs", (x,))),
        ("ABS(-x)", FunctionCall("abs", (Unary("-", x),))),
        ("Min(a, b, 'c')", FunctionCall("min", (a, b, lit("c")))),
        ("max(a)", FunctionCall("max", (a,))),
        # a function name without a call is just a tag name
        ("abs + 1", Binary("+", TagRef("abs"), lit(1))),
        # keywords in any case
        ("a AND NOT b Or TRUE", Binary("or", Binary("and", a, Unary("not", b)), lit(1))),
        # tag names keep their case
        ("A + a", Binary("+", TagRef("A"), a)),
        ("x = NULL or x = False", Binary("or", Binary("=", x, lit(None)), Binary("=", x, lit(0)))),
        # synonyms
        ("a == b", Binary("=", a, b)),
        ("a <> b", Binary("!=", a, b)),
        ("a>=b", Binary(">=", a, b)),
    ],
)
def test_precedence_and_forms_follow_sql(text, tree):
    assert parse_expression(text) == tree


@pytest.mark.parametrize(
    "text,value",
    [("12", 12.0), ("3.5", 3.5), ("1e3", 1000.0), ("1E-2", 0.01), (".5", 0.5), ("7.", 7.0)],
)
def test_number_literals(text, value):
    assert parse_expression(f"a = {text}") == Binary("=", a, Literal(value))


@pytest.mark.parametrize(
    "text,name",
    [
        ('"plant/area1/x"', "plant/area1/x"),
        ('"say ""hi"""', 'say "hi"'),
        ('"température/ü"', "température/ü"),
        ('"温度"', "温度"),
        ('"and"', "and"),  # a keyword, quoted, is a tag name
        ('"a b\nc"', "a b\nc"),
        ("plant.area_1.x2", "plant.area_1.x2"),
        ("_x", "_x"),
        ("x.__class__", "x.__class__"),  # a bare name with dots, not attribute access
    ],
)
def test_tag_names_quoted_or_bare(text, name):
    assert parse_expression(text) == TagRef(name)


def test_string_literal_quotes_are_escaped_by_doubling():
    assert parse_expression("a = 'it''s'") == Binary("=", a, lit("it's"))
    assert parse_expression("a = ''") == Binary("=", a, lit(""))


def test_tag_references_are_distinct_in_order_of_appearance():
    tree = parse_expression('c + a * c - min(b, a) + "c"')
    assert tag_references(tree) == ("c", "a", "b")


def test_tree_is_immutable_and_hashable():
    tree = parse_expression("a + 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tree.op = "-"  # type: ignore[misc]
    assert hash(tree) == hash(parse_expression("a+1"))


def test_multi_line_expression_reports_line_and_column():
    message = refused("a > 1\n  and b $ 2")
    assert "line 2, column 9" in message


# --- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "empty expression at column 1"),
        ("   ", "empty expression"),
        ("a +", "expected a value, found the end of the expression at column 4"),
        ("(a", "expected ')', found the end of the expression at column 3"),
        ("a)", "expected an operator or the end of the expression, found ')' at column 2"),
        ("a b", "found 'b' at column 3"),
        ("and a", "found 'and' at column 1"),
        ("a $ 1", "unexpected character '$' at column 3"),
        ("a ! 1", "unexpected character '!' at column 3"),
        ("température > 1", "unexpected character 'é' (write other tag names in double quotes)"),
        ("a = 'open", "unterminated string literal starting at column 5"),
        ('"open > 1', "unterminated quoted tag name starting at column 1"),
        ('"" > 1', "empty tag name at column 1"),
        ("a = 1e", "malformed number '1e' at column 5"),
        ("a = 1.2.3", "malformed number '1.2.' at column 5"),
        ("a = 2x", "malformed number '2x' at column 5"),
        ("a = 1e400", "number '1e400' is out of range at column 5"),
        ("1 < a < 3", "comparisons do not chain"),
        ("a = b = c", "comparisons do not chain"),
        ("a between 1 and 2 between 3 and 4", "comparisons do not chain"),
        ("a between 1 or 2", "expected 'and', found 'or' at column 13"),
        ("a in 1", "expected '(' after in, found '1' at column 6"),
        ("a in ()", "in needs at least one value, found ')' at column 7"),
        ("min()", "min needs at least one value"),
        ("abs(a, b)", "abs takes one argument, got 2 at column 1"),
        ("a = not b", "found 'not' at column 5"),
        ("a = 'x\x00y'", "may not contain a NUL character"),
    ],
)
def test_syntax_errors_say_what_and_where(text, expected):
    assert expected in refused(text)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("foo(1)", "'foo' is not a function: only abs, min and max can be called at column 1"),
        ("sum(a, b)", "'sum' is not a function"),
        ("__import__('os')", "'__import__' is not a function"),
        ("eval('1')", "'eval' is not a function"),
        ("x.y(1)", "(attribute access and method calls are not part of the language)"),
        ("a.__class__.__subclasses__()", "attribute access and method calls"),
        ('"abs"(a)', "'abs' is not a function"),
        ("a + b(1)", "'b' is not a function"),
        ("(a)(1)", "only abs, min and max can be called"),
        ("abs(a)(1)", "only abs, min and max can be called"),
        ("a.b", None),  # a dotted bare name is a tag reference, not access
        ("a . b", "unexpected character '.' at column 3"),
        ("a[0]", "unexpected character '['"),
        ("a; b", "unexpected character ';'"),
        ("lambda: 1", "unexpected character ':'"),
        ("a if b else c", "found 'if'"),
    ],
)
def test_calls_outside_the_list_and_attribute_access_are_refused(text, expected):
    if expected is None:
        assert parse_expression(text) == TagRef(text)
        return
    assert expected in refused(text)


def test_error_is_a_tagflow_value_error():
    with pytest.raises(TagflowError):
        parse_expression("a +")
    with pytest.raises(ValueError):
        parse_expression("a +")


def test_non_text_and_lone_surrogates_are_refused():
    with pytest.raises(InvalidDerivedTag, match="must be text"):
        parse_expression(42)  # type: ignore[arg-type]
    assert "not valid Unicode text at column 8" in refused('"a" = "\ud800"')


# --- hostile input: a clear error, quickly, nothing else -------------------------------------


def fails_fast(text: str, expected: str) -> str:
    began = time.perf_counter()
    message = refused(text)
    assert time.perf_counter() - began < 1.0
    assert expected in message
    # The message never echoes the input wholesale.
    assert len(message) < 300
    return message


def test_one_megabyte_expression_is_refused_by_length():
    message = fails_fast("a + " * 250_000, f"at most {MAX_EXPRESSION_CHARS:,} are allowed")
    assert "1,000,000 characters" in message


def test_ten_thousand_nested_parentheses_are_refused():
    fails_fast("(" * 10_000 + "a" + ")" * 10_000, "characters long")
    # Within the length cap, the nesting limit speaks, at the first level too many.
    message = fails_fast("(" * 4_000 + "a" + ")" * 4_000, f"nests more than {MAX_NESTING} levels")
    assert f"column {MAX_NESTING + 1}" in message
    fails_fast("(" * 9_000, "nests more than")


@pytest.mark.parametrize(
    "text",
    [
        "not " * 2_000 + "a",
        "-" * 9_000 + "a",
        "- " * 4_000 + "a",
        "abs(" * 1_500 + "a" + ")" * 1_500,
        "a in (" * 1_400 + "a" + ")" * 1_400,
        "min(a, " * 1_000 + "a" + ")" * 1_000,
    ],
)
def test_deep_prefix_operators_and_calls_are_refused(text):
    fails_fast(text, "nests more than")


def test_long_operator_chains_are_refused_by_height():
    fails_fast("+".join(["a"] * 4_000), f"more than {MAX_HEIGHT} operators deep")
    fails_fast(" or ".join(["a"] * 1_500), "operators deep")


def test_limits_leave_real_expressions_alone():
    deep = "(" * MAX_NESTING + "a" + ")" * MAX_NESTING
    assert parse_expression(deep) == a
    chain = parse_expression(" + ".join(f'"t{i}"' for i in range(MAX_TAG_REFERENCES)))
    assert len(tag_references(chain)) == MAX_TAG_REFERENCES
    assert render(chain).count("+") == MAX_TAG_REFERENCES - 1


def test_too_many_distinct_tags_are_refused():
    text = " + ".join(f'"t{i}"' for i in range(MAX_TAG_REFERENCES + 1))
    fails_fast(text, f"reads more than {MAX_TAG_REFERENCES} distinct tags")
    # References to one tag many times count once.
    assert tag_references(parse_expression(" + ".join(["a"] * 200))) == ("a",)


def test_huge_names_and_strings_are_truncated_in_messages():
    fails_fast("x" * 5_000 + "(1)", "is not a function")
    fails_fast("a = '" + "y" * 9_000, "unterminated string literal")
    fails_fast('"' + "z" * 5_000 + '" > 1', "1-4096 characters")


# --- canonical text --------------------------------------------------------------------------


def test_render_normalises_spelling_but_not_meaning():
    one = parse_expression("A  >  280 AND  s == 'RUNNING'")
    two = parse_expression('"A" > 280.0 and "s" = \'RUNNING\'')
    assert render(one) == render(two) == '"A" > 280.0 and "s" = \'RUNNING\''
    assert render(parse_expression("(a + b) * c")) == '("a" + "b") * "c"'
    assert render(parse_expression("a - (b - c)")) == '"a" - ("b" - "c")'
    assert render(parse_expression("not (a or b)")) == 'not ("a" or "b")'
    assert render(parse_expression("(a = b) = c")) == '("a" = "b") = "c"'


names = st.sampled_from(["a", "b", 'q"uote', "ünï", "and"])
leaves = st.one_of(
    names.map(TagRef),
    st.sampled_from([0.0, 1.0, -2.5, 1e300, -0.0, "A", "it's", "", None]).map(Literal),
)


trees = expression_trees(leaves, 16)


def as_parsed(node):
    """The tree the parser makes of `node`'s meaning: a sign applied to a number literal is
    folded into the literal."""
    if isinstance(node, Unary):
        operand = as_parsed(node.operand)
        if node.op in "+-" and isinstance(operand, Literal) and isinstance(operand.value, float):
            return Literal(-operand.value if node.op == "-" else operand.value)
        return Unary(node.op, operand)
    if isinstance(node, Binary):
        return Binary(node.op, as_parsed(node.left), as_parsed(node.right))
    if isinstance(node, Between):
        return Between(as_parsed(node.operand), as_parsed(node.low), as_parsed(node.high))
    if isinstance(node, In):
        return In(as_parsed(node.operand), tuple(map(as_parsed, node.options)))
    if isinstance(node, FunctionCall):
        return FunctionCall(node.function, tuple(map(as_parsed, node.args)))
    return node


@settings(max_examples=200, deadline=None)
@given(trees)
def test_render_then_parse_gives_the_same_tree(tree):
    tree = as_parsed(tree)
    text = render(tree)
    assert parse_expression(text) == tree
    assert render(parse_expression(text)) == text
