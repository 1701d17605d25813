"""readapi.Client: the CVec-shaped read client over tagflow's precomputed datasets.

`Client(store=...)` reads the Parquet datasets directly (falling back to the source database
for days not materialised); `Client(host=...)` asks the HTTP service. Both transports return
the same Arrow tables, which this class turns into records and DataFrames in one place.
"""

from __future__ import annotations

import getpass
import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType

import pandas as pd
import pyarrow as pa

from tagflow.errors import AuthenticationFailed
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.names import validate_tenant_name
from tagflow.readapi.client.http import DEFAULT_TIMEOUT_S, HttpTransport, public_address
from tagflow.readapi.engine.config import ReadConfig, StoreRoot
from tagflow.readapi.engine.read_engine import ReadEngine
from tagflow.readapi.engine.reader import TenantReader
from tagflow.readapi.engine.writes import SpanWrites
from tagflow.readapi.errors import AnnotationsUnavailable, InvalidArgument
from tagflow.readapi.models import (
    ANNOTATIONS_UNAVAILABLE,
    Span,
    SpanChange,
    SpanList,
    Tag,
    annotations_state,
    metric_frame,
    spans_from_table,
    tags_from_table,
    wide_frame,
)
from tagflow.readapi.query import (
    BucketQuery,
    MetricDataQuery,
    Sampling,
    SpanAnnotationsQuery,
    SpansQuery,
    TagsQuery,
    tag_list,
)
from tagflow.settings import Settings
from tagflow.time_range import TimeRange, parse_duration, parse_time_range, parse_width

TimeRangeLike = TimeRange | tuple[object, object] | list[object]


# What answers a query: a ReadEngine's TenantReader locally, HttpTransport through the service.
Transport = TenantReader | HttpTransport
# What writes span annotations: the engine's SpanWrites locally, HttpTransport through the
# service; both take the same arguments and give the same answers (update, create, history).
Writes = SpanWrites | HttpTransport


def _local_writer() -> str:
    """Who writes through the store transport, as annotations record it: the OS user (there is
    no key, so no key label)."""
    try:
        return f"{getpass.getuser()} (local)"
    except (KeyError, OSError):  # no user name in a bare container
        return "local"


def _where(
    host: str | None, store: StoreRoot | ReadConfig | None, env: Settings
) -> tuple[str | None, StoreRoot | ReadConfig | None]:
    """(host, store) to read from, exactly one of them set: the arguments, else TAGFLOW_HOST,
    else TAGFLOW_STORE."""
    if host is not None and store is not None:
        raise InvalidArgument("give either host= (HTTP service) or store= (datasets), not both")
    if host is None and store is None:
        host = env.host
        if host is None and env.from_environment("store"):
            store = env.store
    if host is None and store is None:
        raise InvalidArgument(
            "no data to read: pass host= (or set TAGFLOW_HOST) for the HTTP service, or "
            "store= (or set TAGFLOW_STORE) for the datasets"
        )
    return host, store


class Client:
    """Read tags, spans, transitions and samples of one tenant.

    Arguments left out come from TAGFLOW_HOST, TAGFLOW_TENANT, TAGFLOW_API_KEY, TAGFLOW_STORE
    (and TAGFLOW_SOURCE_URL for the store transport's fallback). An explicit `host` or
    `store` wins over the environment; giving both is an error. `store` may be a whole
    ReadConfig (the engine's settings), which the keyword arguments then leave as it is.

    `time_range` arguments are (start, end) pairs of aware datetimes, ISO 8601 strings with
    an offset, or pandas Timestamps; end is exclusive. `default_time_range` applies when a
    call gives none; with neither, a call covers everything materialised (up to now when
    the source may fill in). `allow_source=False` makes a read of days not materialised
    fail with NotMaterialised instead of asking the source database. `timeout_s` bounds each
    request to the service, or each read from the source database (SourceUnavailable when a
    source stops answering mid-read).
    """

    def __init__(
        self,
        host: str | None = None,
        tenant: str | None = None,
        api_key: str | None = None,
        default_time_range: TimeRangeLike | None = None,
        store: StoreRoot | ReadConfig | None = None,
        *,
        source_url: str | None = None,
        allow_source: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_ttl_s: float = ReadConfig.cache_ttl_s,
        max_source_days: int = ReadConfig.max_source_days,
    ) -> None:
        env = Settings.from_env()
        host, store = _where(host, store, env)
        tenant = tenant or env.tenant
        self.tenant = validate_tenant_name(tenant) if tenant is not None else None
        self.default_time_range = (
            parse_time_range(default_time_range) if default_time_range is not None else None
        )
        self.allow_source = bool(allow_source)
        self._api_key = api_key or env.api_key
        self._transport: Transport
        if host is not None:
            if self._api_key is None:
                raise AuthenticationFailed(
                    "no API key: pass api_key= or set TAGFLOW_API_KEY (the service needs one)"
                )
            self.host: str | None = public_address(host)
            self.store: DatasetStore | None = None
            http = HttpTransport(host, self._api_key, self.tenant, timeout_s)
            self._transport = http
            self._writes: Writes = http
            return
        if self.tenant is None:
            raise InvalidArgument(
                "reading datasets needs a tenant: pass tenant= or set TAGFLOW_TENANT"
            )
        if isinstance(store, ReadConfig):
            config = store
        else:
            config = ReadConfig.from_settings(
                env,
                store=store,
                source_url=source_url,
                source_timeout_s=timeout_s,
                cache_ttl_s=cache_ttl_s,
                max_source_days=max_source_days,
            )
        engine = ReadEngine(config)
        self.host, self.store = None, engine.store
        self._transport = engine.reader(self.tenant)
        self._writes = SpanWrites(engine, self.tenant, _local_writer())

    # ------------------------------------------------------------------ plumbing

    def __repr__(self) -> str:
        # The key is never shown, only whether one is set; the store's repr hides its root.
        where = f"host={self.host!r}" if self.host is not None else f"store={self.store!r}"
        key = "set" if self._api_key else "unset"
        window = ""
        if self.default_time_range is not None:
            start, end = self.default_time_range.as_strings()
            window = f", default_time_range=({start!r}, {end!r})"
        return f"Client({where}, tenant={self.tenant!r}, api_key=<{key}>{window})"

    def close(self) -> None:
        if isinstance(self._transport, HttpTransport):
            self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _range(self, time_range: TimeRangeLike | None) -> TimeRange | None:
        if time_range is not None:
            return parse_time_range(time_range)
        return self.default_time_range

    # ------------------------------------------------------------------ reads

    def get_tags(self, time_range: TimeRangeLike | None = None) -> list[Tag]:
        """Tags with at least one transition in the range, by name; all tags without one."""
        query = TagsQuery(time_range=self._range(time_range), allow_source=self.allow_source)
        return tags_from_table(self._transport.read(query))

    def get_spans(
        self,
        tag_name: str,
        time_range: TimeRangeLike | None = None,
        limit: int | None = None,
        *,
        include_hidden: bool = False,
    ) -> SpanList:
        """Runs of one value of `tag_name` intersecting the range, newest first, one per run
        even across days; `limit` keeps the newest ones. raw_end_at is None when the run has
        not ended before the range end.

        Where a state database is configured, people's annotations are merged in (DESIGN §9):
        `metadata` holds a span's labels, note, revision, hidden and origin; corrected bounds
        are begin_at / end_at (the range filter, clipping and order use them); people's own
        spans of the tag are listed (value None); hidden spans only with `include_hidden`. If
        the state database cannot be read, the computed spans are answered alone, the answer's
        `annotations_unavailable` is True and AnnotationsUnavailable is warned.

        get_spans_arrow gives the same answer as one Arrow table, without a record per span."""
        table = self._spans_table(tag_name, time_range, limit, include_hidden)
        return spans_from_table(table)

    def get_spans_arrow(
        self,
        tag_name: str,
        time_range: TimeRangeLike | None = None,
        limit: int | None = None,
        *,
        include_hidden: bool = False,
    ) -> pa.Table:
        """get_spans' answer as Arrow, a row per span in the same order: id, tag_name,
        value_double, value_string (a string tag's value; both null for a person's span),
        begin_at, end_at, raw_begin_at, raw_end_at; where a state database is configured, then
        each span's annotation (null for a computed span nobody annotated): origin, labels
        (JSON text), note, revision, hidden, updated_at, updated_by, computed_begin_at and
        computed_end_at (the raw bounds, set where a bound was corrected). For long ranges:
        building thousands of Span records costs more than reading them."""
        return self._spans_table(tag_name, time_range, limit, include_hidden)

    def _spans_table(
        self,
        tag_name: str,
        time_range: TimeRangeLike | None,
        limit: int | None,
        include_hidden: bool,
    ) -> pa.Table:
        query = SpansQuery(
            tag_name=tag_name,
            limit=limit,
            include_hidden=include_hidden,
            time_range=self._range(time_range),
            allow_source=self.allow_source,
        )
        table = self._transport.read(query)
        if annotations_state(table) == ANNOTATIONS_UNAVAILABLE:
            warnings.warn(
                AnnotationsUnavailable(
                    f"the span annotations of tenant {self.tenant or ''!r} could not be read "
                    "(state database unavailable): these are the computed spans without labels, "
                    "notes, corrected bounds or people's spans, and hidden spans are shown"
                ),
                stacklevel=3,
            )
        return table

    def get_span_annotations(
        self, time_range: TimeRangeLike | None = None, *, detached: bool = False
    ) -> list[Span]:
        """The tenant's span annotations as spans with their metadata, newest first: those
        whose (corrected) bounds meet the range, all without one. Read from the state database
        alone: `value` is None and raw_begin_at / raw_end_at are the computed bounds as last
        stored (get_spans gives the values). With `detached`, only the annotations of computed
        spans that a rerun or late data no longer computes. StateUnavailable if the state
        database cannot be read; [] where none is configured."""
        query = SpanAnnotationsQuery(
            detached=detached, time_range=self._range(time_range), allow_source=self.allow_source
        )
        return list(spans_from_table(self._transport.read(query)))

    def get_metric_arrow(
        self,
        tag_names: str | Iterable[str] | None = None,
        time_range: TimeRangeLike | None = None,
    ) -> pa.Table:
        """Every transition in the range as Arrow: tag_name, time, value_double,
        value_string, sorted by time (then tag name)."""
        query = MetricDataQuery(
            tag_names=tag_list(tag_names),
            time_range=self._range(time_range),
            allow_source=self.allow_source,
        )
        return self._transport.read(query)

    def get_metric_data(
        self,
        tag_names: str | Iterable[str] | None = None,
        time_range: TimeRangeLike | None = None,
    ) -> pd.DataFrame:
        """Every transition in the range: DataFrame tag_name, time, value (float64, or
        object when some values are strings), sorted by time."""
        return metric_frame(self.get_metric_arrow(tag_names, time_range))

    def sample_metric_data(
        self,
        bucket_width: timedelta | str,
        bucket_function: str = "locf",
        aggregate_function: str = "average",
        bucket_offset: timedelta | str = timedelta(0),
        tag_names: str | Iterable[str] | None = None,
        time_range: TimeRangeLike | None = None,
    ) -> pd.DataFrame:
        """LOCF samples as a wide DataFrame: `time` (bucket start, buckets [b, b+width)
        aligned to the epoch plus `bucket_offset`) and one column per tag holding
        `aggregate_function` (average = time-weighted, min, max, first, last, count) over the
        part of the bucket inside the range. NaN/None where the tag held no usable value."""
        return self._buckets(
            Sampling.SAMPLES,
            tag_names,
            time_range,
            bucket_width,
            bucket_offset,
            aggregate=aggregate_function,
            bucket_function=bucket_function,
        )

    def derivative(
        self,
        bucket_width: timedelta | str,
        aggregate_function: str = "average",
        bucket_offset: timedelta | str = timedelta(0),
        tag_names: str | Iterable[str] | None = None,
        time_range: TimeRangeLike | None = None,
    ) -> pd.DataFrame:
        """Rate of change per second of the sampled `aggregate_function` between
        consecutive buckets: (v[k] − v[k−1]) / bucket_width. NaN for the first bucket,
        beside missing values and for string tags."""
        return self._buckets(
            Sampling.DERIVATIVE,
            tag_names,
            time_range,
            bucket_width,
            bucket_offset,
            aggregate=aggregate_function,
        )

    def counter_rate(
        self,
        bucket_width: timedelta | str,
        bucket_offset: timedelta | str = timedelta(0),
        tag_names: str | Iterable[str] | None = None,
        time_range: TimeRangeLike | None = None,
    ) -> pd.DataFrame:
        """Increase per second of counter tags in each bucket, exact from the transitions: a
        drop is a reset (the counter restarted from zero), never a negative rate. NaN before
        the tag's first value."""
        return self._buckets(
            Sampling.COUNTER_RATE, tag_names, time_range, bucket_width, bucket_offset
        )

    def _buckets(
        self,
        sampling: Sampling,
        tag_names: str | Iterable[str] | None,
        time_range: TimeRangeLike | None,
        bucket_width: timedelta | str,
        bucket_offset: timedelta | str,
        **options: str,
    ) -> pd.DataFrame:
        query = BucketQuery(
            sampling=sampling,
            tag_names=tag_list(tag_names),
            width=parse_width(bucket_width),
            offset=parse_duration(bucket_offset, "bucket offset"),
            time_range=self._range(time_range),
            allow_source=self.allow_source,
            **options,
        )
        return wide_frame(self._transport.read(query))

    # ------------------------------------------------------------------ annotation writes

    def update_span(
        self,
        span: int | Span,
        *,
        revision: int,
        labels: dict[str, str] | None = None,
        note: str | None = None,
        begin_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        hidden: bool | None = None,
    ) -> Span:
        """Change the given fields of a span's annotation, starting from `revision` (the
        span's `metadata["revision"]`, 0 for a span never annotated), and return the span as
        it now is. Only the given fields change; `labels` replaces the whole map; a bound
        given as COMPUTED drops its correction. `span` is the Span get_spans returned (a
        computed span's first annotation needs it: its tag and raw begin identify it) or, once
        annotated, its id. Conflict (with `.current`, the span to start again from) if
        `revision` is stale; nothing is written then, nor on any other error."""
        return self._writes.update(
            span.id if isinstance(span, Span) else span,
            revision=revision,
            tag_name=span.tag_name if isinstance(span, Span) else None,
            raw_begin_at=span.raw_begin_at if isinstance(span, Span) else None,
            labels=labels,
            note=note,
            begin_at=begin_at,
            end_at=end_at,
            hidden=hidden,
        )

    def create_span(
        self,
        tag_name: str,
        begin_at: datetime,
        end_at: datetime,
        *,
        labels: dict[str, str] | None = None,
        note: str | None = None,
    ) -> Span:
        """Add a span of your own on `tag_name` from `begin_at` to `end_at` (aware datetimes)
        and return it (origin 'user', revision 1, value None)."""
        return self._writes.create(tag_name, begin_at, end_at, labels=labels, note=note)

    def move_span_annotation(
        self,
        span: int | Span,
        *,
        revision: int,
        to: Span | None = None,
        begin_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> Span:
        """Move a span's annotation (labels and note; typically a detached one, see
        get_span_annotations(detached=True)), starting from `revision`, and return the span
        that now carries it: `to`, a computed span as get_spans returned it that has no
        annotation of its own (Conflict with its record otherwise), or without `to` a new span
        of your own from `begin_at` to `end_at` (default: the bounds the annotation covers).
        The old span keeps its record, hidden, its metadata's history saying where it went."""
        return self._writes.move(
            span.id if isinstance(span, Span) else span,
            revision=revision,
            to_span_id=to.id if to is not None else None,
            to_tag_name=to.tag_name if to is not None else None,
            to_raw_begin_at=to.raw_begin_at if to is not None else None,
            begin_at=begin_at,
            end_at=end_at,
        )

    def get_span_history(self, span_id: int | Span) -> list[SpanChange]:
        """Every change of a span's annotation, oldest first ([] for a span never changed)."""
        return self._writes.history(span_id.id if isinstance(span_id, Span) else span_id)
