"""Derived tag definitions (DESIGN §8): the YAML file's text turned into validated, per-tenant
definitions in dependency order, each with a stable negative tag id.

Everything a definition can get wrong is found here, when the file is loaded: the YAML shape
(anchors and aliases refused), tenant and tag names, expression syntax, duplicate names, cycles
between derived tags, id collisions and, given a tenant's source tag names, unknown references
and clashes with source tags. A reference is always looked up in the definition's own tenant,
so a derived tag can never read another tenant's tags.

The file::

    tenants:
      acme:
        - name: derived/reactor_hot
          expression: '"plant/area1/analog_00008" > 280 and "plant/area6/state_00013" = ''RUNNING'''
          description: reactor above 280 while the line runs
"""

from __future__ import annotations

import hashlib
import heapq
import os
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

from tagflow.errors import InvalidDerivedTag, InvalidName
from tagflow.names import validate_defined_tag_name, validate_tenant_name
from tagflow.transforms.derived.expression import Node, excerpt, parse_expression, render
from tagflow.transforms.derived.expression import tag_references as _tag_references

# A definitions file holds a few hundred short lines; 1 MiB leaves room and bounds the parse.
MAX_FILE_BYTES = 1 << 20
MAX_TAGS_PER_TENANT = 10_000
# Part of every fingerprint: raise it when the meaning of an expression changes, so every
# derived tag is re-materialised.
SEMANTICS_VERSION = 1

_ENTRY_KEYS = ("name", "expression", "description")
_ID_RANGE = 2**31 - 1
# The file is 5 levels deep (document, tenants, a tenant's list, an entry, a value); deeper
# nesting is refused before the composer's recursion could run out of stack.
_MAX_DEPTH = 16

# How a value of unknown shape is shown in a message: a few elements, two levels, short text,
# so the message costs the same whatever the file built.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 2
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 40
_SHOWN.maxlist = _SHOWN.maxdict = _SHOWN.maxset = _SHOWN.maxtuple = 4

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _PlainComposer(Composer):
    """yaml's composer over the parser's events, refusing anchors and aliases (a 1 KB file of
    nested aliases builds a structure that any later look at it walks billions of times, and a
    definitions file has no use for them) and nesting beyond _MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        mark = event.start_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        if isinstance(event, AliasEvent) or event.anchor is not None:
            kind = "alias (*)" if isinstance(event, AliasEvent) else "anchor (&)"
            raise InvalidDerivedTag(
                f"the derived tags file uses a YAML {kind} at {where}: anchors and aliases are "
                "not accepted; write each value out"
            )
        if self._depth >= _MAX_DEPTH:
            raise ConstructorError(None, None, f"nested deeper than {_MAX_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# The base loader is chosen at import (libyaml's C loader where built): mypy cannot follow it.
class _UniqueKeyLoader(_PlainComposer, _Loader):  # type: ignore[misc, valid-type]
    """yaml's safe loader with _PlainComposer, refusing a key written twice in one mapping
    (safe_load silently keeps the last one, which would hide a tenant or a definition) and
    reporting a scalar yaml cannot build (a date such as 2026-13-45) with its line."""

    def __init__(self, stream: str) -> None:
        _Loader.__init__(self, stream)
        Composer.__init__(self)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> object:
        try:
            return super().construct_object(node, deep=deep)
        except InvalidDerivedTag:
            raise
        except ValueError:
            raise ConstructorError(
                None, None, "a value out of range for its type (quote it)", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise InvalidDerivedTag(
                    f"the derived tags file names {_shown(key)} twice in one mapping at "
                    f"line {key_node.start_mark.line + 1}, column {key_node.start_mark.column + 1}"
                )
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class DerivedTag:
    """One derived tag of a tenant, validated."""

    name: str
    # The expression as the operator wrote it (shown in `tags` and by `derived list`).
    expression_text: str
    description: str | None
    # The distinct tag names the expression reads, source or derived, in order of appearance.
    inputs: tuple[str, ...]
    ast: Node
    # Negative int32 from the name's hash: source ids are positive serials, so never equal.
    tag_id: int
    # Hex hash of the canonical expression and, transitively, of the derived tags it reads:
    # it changes exactly when the tag's values may change, so it belongs in a data version.
    fingerprint: str


@dataclass(frozen=True)
class TenantDerivedTags:
    """The derived tags of one tenant, inputs before dependents (else in file order)."""

    tenant: str
    tags: tuple[DerivedTag, ...]

    def __iter__(self) -> Iterator[DerivedTag]:
        return iter(self.tags)

    def __len__(self) -> int:
        return len(self.tags)

    def __contains__(self, name: object) -> bool:
        return any(tag.name == name for tag in self.tags)

    def get(self, name: str) -> DerivedTag | None:
        """The derived tag called `name`, or None."""
        return next((tag for tag in self.tags if tag.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tag.name for tag in self.tags)

    @property
    def source_inputs(self) -> tuple[str, ...]:
        """Every tag name read that is not a derived tag of this tenant (sorted)."""
        derived = set(self.names)
        return tuple(sorted({name for tag in self.tags for name in tag.inputs} - derived))

    def source_inputs_of(self, name: str) -> tuple[str, ...]:
        """The source tags derived tag `name` reads, directly or through other derived tags
        (sorted): what must be loaded to evaluate it."""
        by_name = {tag.name: tag for tag in self.tags}
        found: set[str] = set()
        pending, visited = [name], set[str]()
        while pending:
            current = pending.pop()
            if current in visited:
                continue
            visited.add(current)
            for input_name in by_name[current].inputs:
                if input_name in by_name:
                    pending.append(input_name)
                else:
                    found.add(input_name)
        return tuple(sorted(found))

    def closure(self, names: Iterable[str]) -> TenantDerivedTags:
        """The derived tags `names` (unknown names ignored) and every derived tag they read,
        directly or not, in dependency order: what must be evaluated to answer `names`."""
        by_name = {tag.name: tag for tag in self.tags}
        needed: set[str] = set()
        pending = [name for name in names if name in by_name]
        while pending:
            name = pending.pop()
            if name not in needed:
                needed.add(name)
                pending.extend(i for i in by_name[name].inputs if i in by_name)
        return TenantDerivedTags(self.tenant, tuple(t for t in self.tags if t.name in needed))

    @property
    def fingerprint(self) -> str:
        """Hash of every definition of the tenant (changes when any of them does)."""
        digest = hashlib.blake2b(digest_size=16)
        for tag in sorted(self.tags, key=lambda tag: tag.name):
            digest.update(tag.name.encode() + b"\0" + tag.fingerprint.encode() + b"\0")
        return digest.hexdigest()

    def check_source_tags(self, source_tag_names: Iterable[str]) -> None:
        """Raise InvalidDerivedTag when a derived tag has the name of one of the tenant's
        source tags, or reads a tag that is neither a source tag nor a derived tag of this
        tenant (another tenant's tags are never visible)."""
        source = set(source_tag_names)
        derived = set(self.names)
        for tag in self.tags:
            if tag.name in source:
                raise _error(
                    self.tenant, tag.name, "has the name of a source tag of the tenant; rename it"
                )
        for tag in self.tags:
            unknown = [name for name in tag.inputs if name not in source and name not in derived]
            if unknown:
                shown = ", ".join(excerpt(name) for name in unknown[:5])
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                raise _error(
                    self.tenant,
                    tag.name,
                    f"reads unknown tag{'s' if len(unknown) > 1 else ''} {shown}{more}: "
                    "not a source or derived tag of this tenant",
                )


@dataclass(frozen=True)
class DerivedTagDefinitions:
    """Every tenant's derived tags, from one definitions file."""

    tenants: Mapping[str, TenantDerivedTags]

    def for_tenant(self, tenant: str) -> TenantDerivedTags:
        """The tenant's derived tags (none when the file does not name the tenant)."""
        return self.tenants.get(tenant) or TenantDerivedTags(tenant, ())


def derived_tag_id(name: str) -> int:
    """The stable id of derived tag `name`: -(1 + hash mod (2³¹ − 1)), a negative int32."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return -(1 + int.from_bytes(digest, "little") % _ID_RANGE)


def _shown(value: object) -> str:
    """`value`, from the file and not yet checked, quoted for a message at bounded cost."""
    return excerpt(value) if isinstance(value, str) else _SHOWN.repr(value)


def _error(tenant: str, name: str | None, message: str) -> InvalidDerivedTag:
    where = f"tenant {excerpt(tenant)}"
    if name is not None:
        where += f", derived tag {excerpt(name)}"
    return InvalidDerivedTag(f"{where}: {message}")


def read_definitions_file(path: str | os.PathLike[str]) -> str:
    """The text of a definitions file, refusing files over MAX_FILE_BYTES or not UTF-8."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InvalidDerivedTag(f"the derived tags file could not be read: {reason}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidDerivedTag(
            f"the derived tags file is over {MAX_FILE_BYTES:,} bytes; it holds definitions only"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDerivedTag(
            f"the derived tags file is not UTF-8 text (byte {error.start})"
        ) from None


def tenant_sections(text: str) -> dict[object, object]:
    """The `tenants` mapping of a definitions file's text: tenant → its list of entries, both
    still unchecked (tenant_definitions checks them, one tenant at a time). Raises
    InvalidDerivedTag for text that is not YAML or not of the file's shape."""
    if len(text) > MAX_FILE_BYTES:
        raise InvalidDerivedTag(
            f"the derived tags file is over {MAX_FILE_BYTES:,} characters; it holds definitions "
            "only"
        )
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = (error.problem or error.context or "syntax error")[:200]
        raise InvalidDerivedTag(
            f"the derived tags file is not valid YAML: {problem}{where}"
        ) from None
    except yaml.YAMLError as error:
        raise InvalidDerivedTag(
            f"the derived tags file is not valid YAML: {str(error)[:200]}"
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict) or set(document) - {"tenants"}:
        raise InvalidDerivedTag(
            "the derived tags file must be a mapping with the one key 'tenants' "
            "(tenants: {tenant: [{name, expression, description}]})"
        )
    tenants = document.get("tenants")
    if tenants is None:
        return {}
    if not isinstance(tenants, dict):
        raise InvalidDerivedTag("'tenants' must map each tenant name to a list of derived tags")
    return dict(tenants)


def _entry(tenant: str, position: int, entry: object) -> tuple[str, str, str | None]:
    """(name, expression, description) of one list entry, checked for shape and name."""
    if not isinstance(entry, dict):
        raise _error(
            tenant, None, f"entry {position + 1} must be a mapping with name and expression"
        )
    name = entry.get("name")
    if not isinstance(name, str):
        raise _error(
            tenant,
            None,
            f"entry {position + 1}: invalid tag name {_shown(name)}: expected non-empty text",
        )
    try:
        validate_defined_tag_name(name)
    except InvalidName as error:
        raise _error(tenant, None, f"entry {position + 1}: {error}") from None
    unknown = [key for key in entry if key not in _ENTRY_KEYS]
    if unknown:
        raise _error(
            tenant,
            name,
            f"unknown key {_shown(unknown[0])}; an entry has name, expression and description",
        )
    expression = entry.get("expression")
    if not isinstance(expression, str):
        got = "nothing" if expression is None else f"a YAML {type(expression).__name__}"
        raise _error(tenant, name, f"expression must be text (quote it in YAML), got {got}")
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise _error(tenant, name, "description must be text")
    return name, expression, description


def _dependency_order(tenant: str, inputs_by_name: dict[str, tuple[str, ...]]) -> list[str]:
    """Derived names with every derived input before its dependents, else in file order;
    InvalidDerivedTag naming a cycle if there is one."""
    position = {name: index for index, name in enumerate(inputs_by_name)}
    waiting_on = {
        name: {i for i in inputs if i in position} for name, inputs in inputs_by_name.items()
    }
    dependents: dict[str, list[str]] = {name: [] for name in inputs_by_name}
    for name, needed in waiting_on.items():
        for input_name in needed:
            dependents[input_name].append(name)
    ready = [position[name] for name, needed in waiting_on.items() if not needed]
    heapq.heapify(ready)
    names = list(inputs_by_name)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for dependent in dependents[name]:
            waiting_on[dependent].discard(name)
            if not waiting_on[dependent]:
                heapq.heappush(ready, position[dependent])
    if len(order) < len(names):
        raise _error(tenant, None, f"derived tags form a cycle: {_cycle(waiting_on)}")
    return order


def _cycle(waiting_on: dict[str, set[str]]) -> str:
    """One cycle among the tags still waiting, as 'a → b → a' (each reads the next)."""
    start = min(name for name, needed in waiting_on.items() if needed)
    path, seen = [start], {start: 0}
    while True:
        current = min(waiting_on[path[-1]])
        if current in seen:
            loop = path[seen[current] :] + [current]
            shown = " → ".join(excerpt(name) for name in loop[:8])
            return shown + (" → …" if len(loop) > 8 else "")
        seen[current] = len(path)
        path.append(current)


def tenant_definitions(
    tenant: object, entries: object, source_tag_names: Iterable[str] | None = None
) -> TenantDerivedTags:
    """The checked derived tags of one tenant's section of the file. Without
    `source_tag_names` the check covers shape, names, syntax, duplicates, id collisions and
    cycles; with them, also unknown references and clashes with source tags."""
    if not isinstance(tenant, str):
        raise InvalidDerivedTag(f"invalid tenant name {_shown(tenant)}: expected text")
    try:
        tenant = validate_tenant_name(tenant)
    except InvalidName as error:
        raise InvalidDerivedTag(str(error)) from None
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise _error(tenant, None, "must be a list of derived tags (- name: ..., expression: ...)")
    if len(entries) > MAX_TAGS_PER_TENANT:
        raise _error(tenant, None, f"has more than {MAX_TAGS_PER_TENANT:,} derived tags")

    parsed: dict[str, tuple[str, str | None, Node, tuple[str, ...]]] = {}
    ids: dict[int, str] = {}
    for position, entry in enumerate(entries):
        name, expression, description = _entry(tenant, position, entry)
        if name in parsed:
            raise _error(tenant, name, "is defined twice")
        try:
            ast = parse_expression(expression)
        except InvalidDerivedTag as error:
            raise _error(tenant, name, f"in its expression, {error}") from None
        inputs = _tag_references(ast)
        if not inputs:
            raise _error(tenant, name, "its expression reads no tag")
        tag_id = derived_tag_id(name)
        if tag_id in ids:
            raise _error(
                tenant,
                name,
                f"has the same id ({tag_id}) as derived tag {excerpt(ids[tag_id])}; rename one",
            )
        ids[tag_id] = name
        parsed[name] = (expression, description, ast, inputs)

    order = _dependency_order(tenant, {name: values[3] for name, values in parsed.items()})
    fingerprints: dict[str, str] = {}
    tags = []
    for name in order:
        expression, description, ast, inputs = parsed[name]
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{SEMANTICS_VERSION}\0{name}\0{render(ast)}\0".encode())
        for input_name in sorted(set(inputs) & fingerprints.keys()):
            digest.update(f"{input_name}\0{fingerprints[input_name]}\0".encode())
        fingerprints[name] = digest.hexdigest()
        tags.append(
            DerivedTag(
                name=name,
                expression_text=expression,
                description=description,
                inputs=inputs,
                ast=ast,
                tag_id=derived_tag_id(name),
                fingerprint=fingerprints[name],
            )
        )
    definitions = TenantDerivedTags(tenant, tuple(tags))
    if source_tag_names is not None:
        definitions.check_source_tags(source_tag_names)
    return definitions


def parse_definitions(
    text: str, source_tags: Mapping[str, Iterable[str]] | None = None
) -> DerivedTagDefinitions:
    """Every tenant's derived tags from a definitions file's text; the first problem found
    raises InvalidDerivedTag. `source_tags` (tenant → its source tag names), when given, also
    checks references and clashes of each tenant it names."""
    tenants = {}
    for tenant, entries in tenant_sections(text).items():
        source = None
        # A tenant that is not text is refused by tenant_definitions.
        if source_tags is not None and isinstance(tenant, str):
            source = source_tags.get(tenant)
        definitions = tenant_definitions(tenant, entries, source)
        tenants[definitions.tenant] = definitions
    return DerivedTagDefinitions(MappingProxyType(tenants))


def load_definitions(
    path: str | os.PathLike[str], source_tags: Mapping[str, Iterable[str]] | None = None
) -> DerivedTagDefinitions:
    """parse_definitions of the file at `path` (TAGFLOW_DERIVED_TAGS)."""
    return parse_definitions(read_definitions_file(path), source_tags)


def deployment_definitions(path: str | os.PathLike[str] | None) -> DerivedTagDefinitions:
    """The derived tags of a deployment's file (its TAGFLOW_DERIVED_TAGS), checked now; none
    when it names no file."""
    return DerivedTagDefinitions({}) if path is None else load_definitions(path)
