"""Validation of names that come from outside: tenants become SQL identifiers, path
components and Dagster partition keys, so only a conservative alphabet is accepted."""

from __future__ import annotations

import re

from tagflow.errors import InvalidName

_TENANT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_tenant_name(name: object) -> str:
    """Return `name` if it can be a tenant (a PostgreSQL identifier of letters, digits and
    underscores, at most 63 bytes), else raise InvalidName. Existence is checked by source/."""
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        shown = repr(name)[:40]
        raise InvalidName(
            f"invalid tenant name {shown}: use 1-63 ASCII letters, digits or underscores, "
            "not starting with a digit"
        )
    return name


def validate_tag_name(name: object) -> str:
    """Tag names are data, never identifiers; they only need to be non-empty text
    without NUL bytes (PostgreSQL text cannot hold NUL)."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 4096:
        raise InvalidName(f"invalid tag name {repr(name)[:40]}: expected non-empty text")
    return name
