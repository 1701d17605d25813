"""The read API: the client (`client/`), the HTTP service (`server/`, started by `tagflow
serve`) and the query engine behind both (`engine/`), joined by one query object per read
(`query.py`). It never imports assets/ or pipelines/: it reads the datasets through
io_managers and computes days not materialised through source/ and transforms/.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagflow.readapi.annotation_wire import COMPUTED
    from tagflow.readapi.client.client import Client
    from tagflow.readapi.errors import (
        AnnotationsNotConfigured,
        AuthenticationFailed,
        Conflict,
        CorruptPartition,
        InvalidAnnotation,
        InvalidArgument,
        InvalidName,
        InvalidTimeRange,
        NotMaterialised,
        PermissionDenied,
        SourceUnavailable,
        StateUnavailable,
        TagflowError,
        UnknownSpan,
        UnknownTag,
        UnknownTenant,
    )
    from tagflow.readapi.models import Span, SpanChange, Tag
    from tagflow.time_range import TimeRange

# Imported on first use, so `tagflow keys` and the service do not pay for pandas
# and the client transports they do not need; every other name of __all__ is an error class
# of tagflow.readapi.errors.
_HOMES = {
    "Client": "tagflow.readapi.client",
    "COMPUTED": "tagflow.readapi.annotation_wire",
    "Span": "tagflow.readapi.models",
    "SpanChange": "tagflow.readapi.models",
    "Tag": "tagflow.readapi.models",
    "TimeRange": "tagflow.time_range",
}

__all__ = [
    "COMPUTED",
    "AnnotationsNotConfigured",
    "AuthenticationFailed",
    "Client",
    "Conflict",
    "CorruptPartition",
    "InvalidAnnotation",
    "InvalidArgument",
    "InvalidName",
    "InvalidTimeRange",
    "NotMaterialised",
    "PermissionDenied",
    "SourceUnavailable",
    "Span",
    "SpanChange",
    "StateUnavailable",
    "Tag",
    "TagflowError",
    "TimeRange",
    "UnknownSpan",
    "UnknownTag",
    "UnknownTenant",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(_HOMES.get(name, "tagflow.readapi.errors")), name)
    raise AttributeError(f"module 'tagflow.readapi' has no attribute {name!r}")
