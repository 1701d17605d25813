"""The one exception hierarchy of tagflow.

Messages are written for the person who called tagflow: they say what was wrong
and what to do, and never contain SQL text, file paths or secrets.
"""

from __future__ import annotations

from datetime import date
from typing import Any


class TagflowError(Exception):
    """Base of every error tagflow raises on purpose."""


class InvalidName(TagflowError, ValueError):
    """A tenant or tag name that is not acceptable (syntax, length, characters)."""


class UnknownTenant(TagflowError, LookupError):
    """The tenant is not a schema with the three source tables."""


class UnknownTag(TagflowError, LookupError):
    """The tag name does not exist for this tenant."""


class InvalidTimeRange(TagflowError, ValueError):
    """A time range or bucket width that cannot be used (naive, reversed, empty, unaligned)."""


class InvalidArgument(TagflowError, ValueError):
    """An option of a read that is not supported (aggregate, bucket function, limit, format)."""


class SourceUnavailable(TagflowError, ConnectionError):
    """The source database could not be reached or dropped the connection."""


class SourceRefused(SourceUnavailable):
    """The source database answered but refused tagflow: credentials it rejects, or a database
    the URL names that does not exist. No retry can fix it; the URL or the role must change."""


class MissingPartition(TagflowError, LookupError):
    """A dataset partition that was asked for has not been materialised."""


class NotMaterialised(MissingPartition):
    """Days of a read are not materialised and source fallback was turned off."""


class CorruptPartition(TagflowError):
    """A dataset partition whose file exists but cannot be read (truncated, zero bytes,
    corrupted). The message names the dataset, tenant and day, never the file."""

    def __init__(
        self,
        message: str,
        dataset: str | None = None,
        tenant: str | None = None,
        day: date | None = None,
    ) -> None:
        super().__init__(message)
        self.dataset, self.tenant, self.day = dataset, tenant, day


class AuthenticationFailed(TagflowError, PermissionError):
    """An API key that does not open the requested tenant."""


class InvalidDerivedTag(TagflowError, ValueError):
    """A derived tag definition that cannot be used: YAML shape, syntax, an unknown tag, a
    cycle or a name clash. The message says what is wrong and where (line and column of the
    expression), quoting at most a short excerpt of the offending text."""


class SourceDataError(TagflowError):
    """The source holds data tagflow cannot serve correctly (two tags under one name): the
    message names what to fix; nothing is written or answered for the tenant until then."""


class SchemaDrift(SourceDataError):
    """A tenant's source tables no longer match the DDL: a column is missing or has another
    type (`acme.tag_data.tag_value is numeric, expected double precision`). Found by reflection
    before the tenant is read, so a drifted schema is refused instead of answered wrongly."""


class AnswerTooLarge(TagflowError):
    """A read whose answer would be larger than the configured limit (TAGFLOW_MAX_CELLS,
    TAGFLOW_MAX_ROWS); the message says which limit and how to narrow the read."""


class StateUnavailable(TagflowError, ConnectionError):
    """tagflow's state database (span annotations) could not be reached, dropped the
    connection or did not answer in time; nothing of the write in progress was kept."""


class StateSchemaTooNew(TagflowError):
    """The state database was migrated by a newer tagflow than this one: this code refuses to
    read or write it rather than downgrade it silently."""


class UnknownSpan(TagflowError, LookupError):
    """No span with this id for this tenant (another tenant's id is unknown too, never
    forbidden)."""


class InvalidAnnotation(TagflowError, ValueError):
    """An annotation that cannot be stored: bounds not ordered or naive, labels not a string →
    string map or over their limits, a note too long; nothing was written."""


class Conflict(TagflowError):
    """An update that started from a revision that is no longer the span's current one: nothing
    was written; `current` holds the span's current annotation to start again from."""

    # An Annotation (tagflow.annotations), or the client's Span: this module imports neither.
    def __init__(self, message: str, current: Any) -> None:
        super().__init__(message)
        self.current = current
