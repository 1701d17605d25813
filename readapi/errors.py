"""The read API's side of the tagflow error hierarchy: the one table that maps
each error to an HTTP status and a wire code (the service sends it, the client raises it back).
"""

from __future__ import annotations

import json

from tagflow.errors import (
    AnswerTooLarge,
    AuthenticationFailed,
    Conflict,
    CorruptPartition,
    InvalidAnnotation,
    InvalidArgument,
    InvalidName,
    InvalidTimeRange,
    MissingPartition,
    NotMaterialised,
    SchemaDrift,
    SourceDataError,
    SourceUnavailable,
    StateSchemaTooNew,
    StateUnavailable,
    TagflowError,
    UnknownSpan,
    UnknownTag,
    UnknownTenant,
)


class RequestTooLarge(TagflowError):
    """A request whose body is over the service's limit (TAGFLOW_MAX_BODY_BYTES)."""


class RequestTimeout(TagflowError):
    """A request whose body did not arrive within the service's limit (TAGFLOW_BODY_TIMEOUT_S)."""


class ServiceUnavailable(TagflowError):
    """The service cannot answer now (its keys file is unusable, or it is at its connection
    limit); the caller is told nothing more, the operator finds the reason in the log."""


class PermissionDenied(TagflowError, PermissionError):
    """A valid key that may not do this: a read key writing span annotations (add one with
    `tagflow keys add TENANT --write`)."""


class AnnotationsNotConfigured(TagflowError):
    """A span annotation call where no state database is configured (TAGFLOW_STATE_URL)."""


class AnnotationsUnavailable(UserWarning):
    """Warned by get_spans when the state database could not be read: the computed spans are
    answered, but without their annotations (labels, notes, corrected bounds; hidden spans
    shown, people's spans missing). The answer's `annotations_unavailable` is True too."""


# Most specific first: the first class an error is an instance of decides.
WIRE_ERRORS: tuple[tuple[type[TagflowError], int, str], ...] = (
    (AuthenticationFailed, 401, "unauthorized"),
    (PermissionDenied, 403, "permission_denied"),
    # A stale revision: the body carries the span's current record ("current").
    (Conflict, 409, "conflict"),
    (UnknownSpan, 404, "unknown_span"),
    (InvalidAnnotation, 400, "invalid_annotation"),
    # Nothing of the write was kept; the message is one line without host or SQL.
    (StateUnavailable, 503, "state_unavailable"),
    (StateSchemaTooNew, 503, "state_schema_too_new"),
    (AnnotationsNotConfigured, 501, "annotations_not_configured"),
    (NotMaterialised, 409, "not_materialised"),
    (MissingPartition, 404, "missing_partition"),
    (UnknownTenant, 404, "unknown_tenant"),
    (UnknownTag, 404, "unknown_tag"),
    (InvalidName, 400, "invalid_name"),
    (InvalidTimeRange, 400, "invalid_time_range"),
    (InvalidArgument, 400, "invalid_argument"),
    (AnswerTooLarge, 400, "answer_too_large"),
    (SourceUnavailable, 503, "source_unavailable"),
    # A stored file that cannot be read and no source to answer its day: the service cannot
    # answer that range until the day is materialised again (the message names the day).
    (CorruptPartition, 503, "corrupt_partition"),
    (SchemaDrift, 409, "source_schema_drift"),
    (SourceDataError, 409, "source_data_error"),
    (RequestTooLarge, 413, "request_too_large"),
    (RequestTimeout, 408, "request_timeout"),
    (ServiceUnavailable, 503, "service_unavailable"),
    (TagflowError, 400, "error"),
)
_BY_CODE = {code: cls for cls, _, code in WIRE_ERRORS}

# One body for every authentication failure: no key, a wrong key, a revoked key, a key of
# another tenant and an unknown tenant are indistinguishable from outside.
UNAUTHORIZED_MESSAGE = "missing or invalid API key"
# The one body of a service that cannot answer: it never says why (the log does).
UNAVAILABLE_MESSAGE = "the service is not available; retry later, or ask its operator"


def error_body(code: str, message: str) -> bytes:
    """The one error body, `{"error": code, "message": message}`, as sent on the wire (for
    the answers written below FastAPI: by the connection protocol and the limits middleware)."""
    return json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()


def wire_error(error: TagflowError) -> tuple[int, str]:
    """(HTTP status, wire code) of an error."""
    for cls, status, code in WIRE_ERRORS:
        if isinstance(error, cls):
            return status, code
    return 400, "error"


def error_from_wire(
    status: int, code: object, message: object, current: object = None
) -> TagflowError:
    """The exception a client raises for an error response (`current`: a conflict's current
    record, as the client reads it)."""
    text = str(message)[:2000] if message else f"the service answered HTTP {status}"
    if status == 403 and code == "permission_denied":
        return PermissionDenied(text)
    if status == 401 or status == 403:
        return AuthenticationFailed(UNAUTHORIZED_MESSAGE)
    cls = _BY_CODE.get(str(code), TagflowError)
    if cls is Conflict:
        return Conflict(text, current)
    if status >= 500 and cls is TagflowError:
        return TagflowError(f"the read service failed (HTTP {status}); retry, or ask its operator")
    return cls(text)


__all__ = [
    "AnnotationsUnavailable",
    "AnnotationsNotConfigured",
    "AuthenticationFailed",
    "Conflict",
    "CorruptPartition",
    "InvalidAnnotation",
    "InvalidArgument",
    "InvalidName",
    "InvalidTimeRange",
    "MissingPartition",
    "NotMaterialised",
    "PermissionDenied",
    "RequestTimeout",
    "RequestTooLarge",
    "SchemaDrift",
    "ServiceUnavailable",
    "SourceUnavailable",
    "StateSchemaTooNew",
    "StateUnavailable",
    "TagflowError",
    "UnknownSpan",
    "UnknownTag",
    "UnknownTenant",
    "error_body",
    "error_from_wire",
    "wire_error",
]
