"""The expression language of derived tags (DESIGN §8): a tokenizer and a recursive-descent
parser that turn operator-written text into an immutable syntax tree.

User text is only ever scanned and matched against this grammar, never handed to Python
(no eval, exec or compile). Limits on length, nesting, tree height and the number of tags
read turn hostile input into an InvalidDerivedTag at once, never a RecursionError.

Grammar (keywords case-insensitive; precedence loosest first, as in SQL)::

    expression  := or
    or          := and ("or" and)*
    and         := not ("and" not)*
    not         := "not" not | comparison
    comparison  := additive [ ("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=") additive
                            | ["not"] "between" additive "and" additive
                            | ["not"] "in" "(" expression ("," expression)* ")" ]
    additive    := multiplicative (("+" | "-") multiplicative)*
    multiplicative := unary (("*" | "/") unary)*
    unary       := ("-" | "+") unary | primary
    primary     := number | 'string' | true | false | null | "quoted tag" | bare_tag
                 | ("abs" | "min" | "max") "(" expression ("," expression)* ")"
                 | "(" expression ")"

Comparisons do not chain (`a < b < c` is an error, as in PostgreSQL). `x not in (...)` and
`x not between a and b` mean `not (x in (...))` and `not (x between a and b)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from tagflow.errors import InvalidDerivedTag

# An expression is a line or a few in a YAML file; 10 kB is far beyond any real one.
MAX_EXPRESSION_CHARS = 10_000
# Parentheses, calls, `in` lists and prefix operators inside one another. Each level costs the
# parser about ten Python frames, so this keeps it far from Python's recursion limit.
MAX_NESTING = 64
# Levels of the finished tree, long chains like `a + b + c + ...` included: every walk of the
# tree (evaluation, rendering, equality) recurses once per level.
MAX_HEIGHT = 256
# Distinct tags one expression reads: each is a step function merged into the evaluation.
MAX_TAG_REFERENCES = 256

FUNCTIONS = ("abs", "min", "max")
KEYWORDS = frozenset({"and", "or", "not", "between", "in", "true", "false", "null"})
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
# Spellings with one meaning: the tree keeps the first of each pair.
_SYNONYMS = {"==": "=", "<>": "!="}

_EXCERPT_CHARS = 40


# --- the syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: a finite number (true and false are 1.0 and 0.0), a string, or None (NULL)."""

    value: float | str | None


@dataclass(frozen=True, slots=True)
class TagRef:
    """The value of another tag of the same tenant (source or derived), by its name."""

    name: str


@dataclass(frozen=True, slots=True)
class Unary:
    """`op` is "-", "+" or "not"."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """`op` is one of + - * /, a comparison (= != < <= > >=), "and" or "or"."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Between:
    """`operand between low and high`, that is `low <= operand and operand <= high`."""

    operand: Node
    low: Node
    high: Node


@dataclass(frozen=True, slots=True)
class In:
    """`operand in (options...)`: true on a match, else NULL if any comparison is, else false."""

    operand: Node
    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """`function(args...)`, function one of FUNCTIONS (lower case)."""

    function: str
    args: tuple[Node, ...]


Node = Literal | TagRef | Unary | Binary | Between | In | FunctionCall


# --- errors ----------------------------------------------------------------------------------


def excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """`text` quoted for an error message, cut to `limit` characters so huge input never
    fills a message."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)


def _where(text: str, offset: int) -> str:
    """'column C' (or 'line L, column C' in a multi-line expression), 1-based."""
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line + 1}, column {column}" if "\n" in text else f"column {column}"


def _fail(text: str, offset: int, message: str) -> NoReturn:
    raise InvalidDerivedTag(f"{message} at {_where(text, offset)}")


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number" | "string" | "name" | "quoted" | "keyword" | "op" | "end"
    text: str  # the value: the number's text, the string, the name, the keyword (lower), the op
    offset: int  # where it starts in the expression


_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_OPERATOR = re.compile(r"<=|>=|<>|!=|==|[-+*/=<>(),]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_.]")


def _quoted(text: str, offset: int, quote: str, what: str) -> tuple[str, int]:
    """The content of a quoted run starting at `offset` (doubled quotes are one quote) and the
    offset after its closing quote."""
    parts = []
    position = offset + 1
    while True:
        close = text.find(quote, position)
        if close < 0:
            _fail(text, offset, f"unterminated {what} starting")
        parts.append(text[position:close])
        if text.startswith(quote, close + 1):
            parts.append(quote)
            position = close + 2
            continue
        return "".join(parts), close + 1


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    length = len(text)
    while position < length:
        space = _SPACE.match(text, position)
        if space:
            position = space.end()
            continue
        char = text[position]
        if char == "'":
            value, end = _quoted(text, position, "'", "string literal")
            if "\x00" in value:
                _fail(text, position, "a string literal may not contain a NUL character")
            tokens.append(_Token("string", value, position))
        elif char == '"':
            value, end = _quoted(text, position, '"', "quoted tag name")
            if not value:
                _fail(text, position, "empty tag name")
            if "\x00" in value or len(value) > 4096:
                _fail(text, position, "a tag name must be 1-4096 characters without NUL")
            tokens.append(_Token("quoted", value, position))
        elif number := _NUMBER.match(text, position):
            end = number.end()
            if end < length and _NAME_CHAR.match(text, end):
                _fail(text, position, f"malformed number {excerpt(text[position : end + 1])}")
            tokens.append(_Token("number", number.group(), position))
        elif name := _BARE_NAME.match(text, position):
            end = name.end()
            word = name.group()
            if word.lower() in KEYWORDS:
                tokens.append(_Token("keyword", word.lower(), position))
            else:
                tokens.append(_Token("name", word, position))
        elif operator := _OPERATOR.match(text, position):
            end = operator.end()
            op = operator.group()
            tokens.append(_Token("op", _SYNONYMS.get(op, op), position))
        else:
            hint = " (write other tag names in double quotes)" if char.isalpha() else ""
            _fail(text, position, f"unexpected character {char!r}{hint}")
        position = end
    tokens.append(_Token("end", "", length))
    return tokens


# --- parser ----------------------------------------------------------------------------------

# Each parse step returns the node and the height of its tree.
_Parsed = tuple[Node, int]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.nesting = 0
        self.references: dict[str, None] = {}

    # token helpers

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def at(self, kind: str, *texts: str) -> bool:
        token = self.token
        return token.kind == kind and (not texts or token.text in texts)

    def take(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def expect(self, kind: str, text: str) -> _Token:
        if not self.at(kind, text):
            self.fail_here(f"expected '{text}'")
        return self.take()

    def fail_here(self, message: str) -> NoReturn:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else self._shown(token)
        _fail(self.text, token.offset, f"{message}, found {found}")

    def _shown(self, token: _Token) -> str:
        if token.kind == "string":
            return f"string {excerpt(token.text)}"
        if token.kind == "quoted":
            return f"tag {excerpt(token.text)}"
        return excerpt(token.text)

    def enter(self, offset: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            _fail(self.text, offset, f"expression nests more than {MAX_NESTING} levels deep")

    def leave(self) -> None:
        self.nesting -= 1

    def node(self, node: Node, *children: int) -> _Parsed:
        height = 1 + max(children, default=0)
        if height > MAX_HEIGHT:
            _fail(
                self.text,
                self.token.offset,
                f"expression is more than {MAX_HEIGHT} operators deep; split it into "
                "several derived tags",
            )
        return node, height

    # grammar

    def parse(self) -> Node:
        if self.at("end"):
            _fail(self.text, 0, "empty expression")
        node, _ = self.expression()
        if not self.at("end"):
            if self.at("op", "("):
                self.fail_here("only abs, min and max can be called; expected an operator")
            if self.at("keyword", "between", "in") or self.at("op", *COMPARISONS):
                self.fail_here(
                    "comparisons do not chain (write 'a < b and b < c'); expected the end"
                )
            self.fail_here("expected an operator or the end of the expression")
        return node

    def expression(self) -> _Parsed:
        return self.disjunction()

    def disjunction(self) -> _Parsed:
        left, height = self.conjunction()
        while self.at("keyword", "or"):
            self.take()
            right, right_height = self.conjunction()
            left, height = self.node(Binary("or", left, right), height, right_height)
        return left, height

    def conjunction(self) -> _Parsed:
        left, height = self.negation()
        while self.at("keyword", "and"):
            self.take()
            right, right_height = self.negation()
            left, height = self.node(Binary("and", left, right), height, right_height)
        return left, height

    def negation(self) -> _Parsed:
        if not self.at("keyword", "not"):
            return self.comparison()
        self.enter(self.take().offset)
        operand, height = self.negation()
        self.leave()
        return self.node(Unary("not", operand), height)

    def comparison(self) -> _Parsed:
        left, height = self.additive()
        negated = False
        if self.at("keyword", "not") and self.tokens[self.index + 1].kind == "keyword":
            if self.tokens[self.index + 1].text in ("between", "in"):
                self.take()
                negated = True
        if self.at("op", *COMPARISONS):
            op = self.take().text
            right, right_height = self.additive()
            result = self.node(Binary(op, left, right), height, right_height)
        elif self.at("keyword", "between"):
            self.take()
            low, low_height = self.additive()
            self.expect("keyword", "and")
            high, high_height = self.additive()
            result = self.node(Between(left, low, high), height, low_height, high_height)
        elif self.at("keyword", "in"):
            self.take()
            options, heights = self.arguments("in")
            result = self.node(In(left, options), height, *heights)
        else:
            return left, height
        if negated:
            result = self.node(Unary("not", result[0]), result[1])
        if self.at("op", *COMPARISONS) or self.at("keyword", "between", "in"):
            self.fail_here("comparisons do not chain (write 'a < b and b < c')")
        return result

    def additive(self) -> _Parsed:
        left, height = self.multiplicative()
        while self.at("op", "+", "-"):
            op = self.take().text
            right, right_height = self.multiplicative()
            left, height = self.node(Binary(op, left, right), height, right_height)
        return left, height

    def multiplicative(self) -> _Parsed:
        left, height = self.unary()
        while self.at("op", "*", "/"):
            op = self.take().text
            right, right_height = self.unary()
            left, height = self.node(Binary(op, left, right), height, right_height)
        return left, height

    def unary(self) -> _Parsed:
        if not self.at("op", "-", "+"):
            return self.primary()
        op_token = self.take()
        self.enter(op_token.offset)
        operand, height = self.unary()
        self.leave()
        if isinstance(operand, Literal) and isinstance(operand.value, float):
            # A signed number is a literal, so `-3.5` reads as the number the operator wrote.
            value = -operand.value if op_token.text == "-" else operand.value
            return self.node(Literal(value))
        return self.node(Unary(op_token.text, operand), height)

    def primary(self) -> _Parsed:
        token = self.token
        if token.kind == "number":
            self.take()
            value = float(token.text)
            if value in (float("inf"), float("-inf")):
                _fail(self.text, token.offset, f"number {excerpt(token.text)} is out of range")
            return self.node(Literal(value))
        if token.kind == "string":
            self.take()
            return self.node(Literal(token.text))
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.take()
            constant = {"true": 1.0, "false": 0.0, "null": None}[token.text]
            return self.node(Literal(constant))
        if token.kind in ("name", "quoted"):
            self.take()
            if self.at("op", "("):
                return self.call(token)
            return self.reference(token)
        if self.at("op", "("):
            self.enter(self.take().offset)
            inner, height = self.expression()
            self.expect("op", ")")
            self.leave()
            return inner, height
        if token.kind == "end":
            self.fail_here("expected a value")
        self.fail_here("expected a number, string, tag, function call or '('")

    def reference(self, token: _Token) -> _Parsed:
        if token.text not in self.references:
            if len(self.references) >= MAX_TAG_REFERENCES:
                _fail(
                    self.text,
                    token.offset,
                    f"expression reads more than {MAX_TAG_REFERENCES} distinct tags",
                )
            self.references[token.text] = None
        return self.node(TagRef(token.text))

    def call(self, token: _Token) -> _Parsed:
        function = token.text.lower()
        if token.kind == "quoted" or function not in FUNCTIONS:
            why = (
                " (attribute access and method calls are not part of the language)"
                if "." in token.text
                else ""
            )
            _fail(
                self.text,
                token.offset,
                f"{excerpt(token.text)} is not a function: only abs, min and max can be "
                f"called{why}",
            )
        args, heights = self.arguments(function)
        if function == "abs" and len(args) != 1:
            _fail(self.text, token.offset, f"abs takes one argument, got {len(args)}")
        return self.node(FunctionCall(function, args), *heights)

    def arguments(self, what: str) -> tuple[tuple[Node, ...], list[int]]:
        """A parenthesised, comma-separated, non-empty list of expressions."""
        if not self.at("op", "("):
            self.fail_here(f"expected '(' after {what}")
        self.enter(self.take().offset)
        if self.at("op", ")"):
            self.fail_here(f"{what} needs at least one value")
        nodes, heights = [], []
        while True:
            node, height = self.expression()
            nodes.append(node)
            heights.append(height)
            if self.at("op", ","):
                self.take()
                continue
            self.expect("op", ")")
            break
        self.leave()
        return tuple(nodes), heights


def parse_expression(text: str) -> Node:
    """The syntax tree of a derived tag's expression; InvalidDerivedTag says what is wrong and
    at which column when `text` is not in the language or exceeds a limit."""
    if not isinstance(text, str):
        raise InvalidDerivedTag(f"an expression must be text, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InvalidDerivedTag(
            f"expression is {len(text):,} characters long; at most {MAX_EXPRESSION_CHARS:,} "
            "are allowed"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        _fail(text, error.start, "expression is not valid Unicode text")
    return _Parser(text).parse()


# --- walking the tree ------------------------------------------------------------------------


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of `node`, left to right."""
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, In):
        return (node.operand, *node.options)
    if isinstance(node, FunctionCall):
        return node.args
    return ()


def tag_references(node: Node) -> tuple[str, ...]:
    """The distinct tag names `node` reads, in order of first appearance (left to right)."""
    found: dict[str, None] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, TagRef):
            found.setdefault(current.name, None)
        stack.extend(reversed(children(current)))
    return tuple(found)


# Binding strength of each form, loosest first (see the grammar above).
_OR, _AND, _NOT, _COMPARE, _ADD, _MULTIPLY, _SIGN, _ATOM = range(8)
_BINARY_LEVEL = {
    "or": _OR,
    "and": _AND,
    **dict.fromkeys(COMPARISONS, _COMPARE),
    "+": _ADD,
    "-": _ADD,
    "*": _MULTIPLY,
    "/": _MULTIPLY,
}


def _level(node: Node) -> int:
    if isinstance(node, Binary):
        return _BINARY_LEVEL[node.op]
    if isinstance(node, Between | In):
        return _COMPARE
    if isinstance(node, Unary):
        return _NOT if node.op == "not" else _SIGN
    if isinstance(node, Literal) and isinstance(node.value, float) and _negative(node.value):
        return _SIGN
    return _ATOM


def _negative(value: float) -> bool:
    return value < 0 or (value == 0 and str(value).startswith("-"))


def render(node: Node) -> str:
    """Canonical text of `node`: parsing it gives `node` back. Tags are always quoted and only
    the parentheses precedence needs are written, so equal trees render equally whatever
    spacing, case or synonyms (`==`, `<>`) the operator used."""

    def at_least(child: Node, level: int) -> str:
        text = render(child)
        return f"({text})" if _level(child) < level else text

    if isinstance(node, Literal):
        if node.value is None:
            return "null"
        if isinstance(node.value, str):
            return "'" + node.value.replace("'", "''") + "'"
        return repr(node.value)
    if isinstance(node, TagRef):
        return '"' + node.name.replace('"', '""') + '"'
    if isinstance(node, Unary):
        if node.op == "not":
            return f"not {at_least(node.operand, _NOT)}"
        # The operand binds at least as tightly as a sign: `-(-1.0)`, `-("a" + 1.0)`.
        return f"{node.op}{at_least(node.operand, _ATOM)}"
    if isinstance(node, Binary):
        level = _BINARY_LEVEL[node.op]
        # Left-associative chains; comparisons do not chain, so both sides bind tighter.
        left_level = level + 1 if level == _COMPARE else level
        return f"{at_least(node.left, left_level)} {node.op} {at_least(node.right, level + 1)}"
    if isinstance(node, Between):
        parts = (at_least(part, _ADD) for part in (node.operand, node.low, node.high))
        operand, low, high = parts
        return f"{operand} between {low} and {high}"
    if isinstance(node, In):
        options = ", ".join(render(option) for option in node.options)
        return f"{at_least(node.operand, _ADD)} in ({options})"
    args = ", ".join(render(arg) for arg in node.args)
    return f"{node.function}({args})"
