"""A tenant's annotations kept in memory between reads, exact at every read.

A read of the annotation layer is the tenant's annotations as of a snapshot of the state
database. The cache keeps them as of the snapshot of the statement that read them; the next
read asks, in one indexed statement, for the records of the spans changed in transactions that
snapshot did not see (their history rows' `xid` is at least its xmin and not visible in it), and
patches those in. Every change of a record appends a history row in its own transaction, so the
patched layer is the tenant's annotations as of the new statement's snapshot: a write committed
anywhere (this process or another server) before a read begins is in that read's answer,
whatever order writers commit in. A high-water mark of `seq` would not do: a change given a
lower seq can commit after a reader saw a higher one.

No I/O here: AnnotationStore runs the statements (SNAPSHOT_SELECT, CHANGED_SINCE) and offers
what it read."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from tagflow.annotations.state_database import PerEngine

# A tenant's layer larger than this is not kept (reads query the database by range instead),
# nor more than CACHE_BYTES of layers per engine (the least recently read go first).
LAYER_BYTES = 64 * 1024 * 1024
CACHE_BYTES = 256 * 1024 * 1024
# How long a tenant found too large is read by range before the cache tries it again.
TOO_LARGE_S = 60.0

# An open end, and a begin nobody knows, as µs.
_OPEN_END = np.iinfo(np.int64).max
_NO_BEGIN = np.iinfo(np.int64).min

# The records of the spans changed since snapshot %s (given twice): their history rows are of
# transactions that snapshot did not see; an index on (tenant, xid) finds them.
CHANGED_SINCE = (
    "tenant = %s AND span_id IN (SELECT span_id FROM span_annotation_history"
    " WHERE tenant = %s AND xid >= pg_snapshot_xmin(%s::pg_snapshot)"
    " AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot))"
)
# The snapshot a statement reads in (READ COMMITTED: the statement's own).
SNAPSHOT_SELECT = "pg_current_snapshot()::text"


def _us(column: pa.ChunkedArray, null_as: int) -> np.ndarray:
    return pc.fill_null(column.cast(pa.int64()), null_as).to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Layer:
    """A tenant's annotations (ANNOTATION_COLUMNS, every one) as of `snapshot`, with each
    one's effective bounds as µs: the correction, else the computed bound last stored."""

    snapshot: str
    table: pa.Table
    begin_us: np.ndarray
    end_us: np.ndarray
    computed_begin_us: np.ndarray

    @classmethod
    def of(cls, snapshot: str, table: pa.Table) -> Layer:
        if table.column("span_id").num_chunks > 16:
            table = table.combine_chunks()
        begin = pc.coalesce(table.column("begin_at"), table.column("computed_begin_at"))
        end = pc.coalesce(table.column("end_at"), table.column("computed_end_at"))
        return cls(
            snapshot,
            table,
            _us(begin, _NO_BEGIN),
            _us(end, _OPEN_END),
            _us(table.column("computed_begin_at"), _NO_BEGIN),
        )

    def patched(self, snapshot: str, changed: pa.Table) -> Layer:
        """This layer with `changed` (the current records of the spans changed since its
        snapshot, read as of `snapshot`) in place of theirs."""
        if changed.num_rows == 0:
            return replace(self, snapshot=snapshot)
        stale = pc.is_in(self.table.column("span_id"), value_set=changed.column("span_id"))
        kept = self.table.filter(pc.invert(stale))
        return Layer.of(snapshot, pa.concat_tables([kept, changed]))

    def for_read(self, begin_us: int, end_us: int, since_us: int) -> pa.Table:
        """AnnotationStore.for_read's answer: the annotations whose effective bounds meet
        [begin, end) (an empty or reversed pair meets nothing, an open end meets everything
        after its begin), and those of computed spans that began in [since, end)."""
        meets = (self.begin_us < end_us) & (self.end_us > begin_us) & (self.end_us > self.begin_us)
        began = (self.computed_begin_us >= since_us) & (self.computed_begin_us < end_us)
        return self.table.filter(pa.array(meets | began))


class LayerCache:
    """The layers of one state database's tenants, kept by one process."""

    def __init__(self) -> None:
        self._layers: OrderedDict[str, Layer] = OrderedDict()
        self._too_large: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> Layer | None:
        with self._lock:
            layer = self._layers.get(tenant)
            if layer is not None:
                self._layers.move_to_end(tenant)
            return layer

    def too_large(self, tenant: str) -> bool:
        """Whether `tenant`'s layer was found too large to keep a short while ago."""
        with self._lock:
            return self._too_large.get(tenant, 0.0) > time.monotonic()

    def offer(self, tenant: str, base: Layer | None, layer: Layer) -> None:
        """Keep `layer`, read from `base` (None: from nothing), unless another read replaced
        `base` meanwhile (its layer is as exact, and kept)."""
        with self._lock:
            if self._layers.get(tenant) is not base:
                return
            if layer.table.nbytes > LAYER_BYTES:
                self._layers.pop(tenant, None)
                self._too_large[tenant] = time.monotonic() + TOO_LARGE_S
                return
            self._layers[tenant] = layer
            self._layers.move_to_end(tenant)
            total = sum(kept.table.nbytes for kept in self._layers.values())
            while total > CACHE_BYTES and len(self._layers) > 1:
                _, evicted = self._layers.popitem(last=False)
                total -= evicted.table.nbytes


_caches = PerEngine(LayerCache)


def layer_cache(engine: sa.Engine) -> LayerCache:
    """The cache of the state database of `engine`, one per engine in this process."""
    return _caches.of(engine)
