"""Validation of names that come from outside: tenants become SQL identifiers, path
components and Dagster partition keys, so only a conservative alphabet is accepted; tag names
asked for in reads are only compared with the tenant's catalogue, so only their length is
capped."""

from __future__ import annotations

import re

from tagflow.errors import InvalidName

_TENANT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The longest tag name a read may ask for, in bytes of UTF-8. PostgreSQL text holds up to 1 GB,
# but a request must stay bounded: 64 KiB per name fits any name the service's default limits
# carry (a POST body of 1 MiB holds one name in any JSON escaping, at most 6 bytes a byte), and
# is far beyond any instrument name. A longer catalogue name is listed by get_tags but cannot
# be asked for by name.
MAX_TAG_NAME_BYTES = 65_536


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
    """Return `name` if a read may ask for it: any text, the empty name included, of at most
    MAX_TAG_NAME_BYTES in UTF-8; else raise InvalidName. A tag name asked for is data, compared
    only with the tenant's catalogue (never SQL, a path or an identifier), so any name the
    catalogue holds is addressable and any other is an UnknownTag."""
    if not isinstance(name, str):
        raise InvalidName(f"invalid tag name {repr(name)[:40]}: expected text")
    # A character is 1 to 4 bytes: most names are decided without encoding them.
    if len(name) * 4 > MAX_TAG_NAME_BYTES and (
        len(name) > MAX_TAG_NAME_BYTES or _utf8_bytes(name) > MAX_TAG_NAME_BYTES
    ):
        raise InvalidName(
            f"tag name {name[:40]!r}… is too long: at most {MAX_TAG_NAME_BYTES:,} bytes of "
            "UTF-8 per name"
        )
    return name


def validate_defined_tag_name(name: object) -> str:
    """Return `name` if an operator may define a derived tag by it (DESIGN §8): non-empty text
    of at most 4,096 characters without NUL (it is written to the source's catalogue shape,
    whose text cannot hold NUL); else raise InvalidName."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 4096:
        raise InvalidName(f"invalid tag name {repr(name)[:40]}: expected non-empty text")
    return name


def _utf8_bytes(text: str) -> int:
    # surrogatepass: a lone surrogate (no catalogue holds one) is measured, not an error here.
    return len(text.encode("utf-8", "surrogatepass"))
