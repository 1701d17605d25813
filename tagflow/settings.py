"""Every setting tagflow reads from its environment, in one object read once: by the code
location when Dagster loads it, by the CLI when a command starts, by the read client when it is
built. No module reads the environment at import time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from tagflow.errors import InvalidArgument

T = TypeVar("T")

# The word that names the demo's embedded PostgreSQL as the source (TAGFLOW_SOURCE_URL=embedded):
# only where it is asked for, so a production code location never starts a database itself.
EMBEDDED_SOURCE = "embedded"
EXECUTORS = ("multiprocess", "dask")


def _text(raw: str) -> str:
    return raw


def _positive_int(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError("a positive whole number")
    return int(raw)


def _hour_of_day(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 23:
        raise ValueError("a whole number of hours from 1 to 23")
    return int(raw)


def _day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError("a date like 2020-01-01") from None


def _executor(raw: str) -> str:
    kind = raw.lower()
    if kind not in EXECUTORS:
        raise ValueError(" or ".join(EXECUTORS))
    return kind


def _setting(
    variable: str, parse: Callable[[str], Any] = _text, default: Any = None, *, secret: bool = False
) -> Any:
    """A field read from `variable` (blank counts as unset); a secret never shows in repr."""
    return field(default=default, repr=not secret, metadata={"env": variable, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """What a deployment, a command or a read client is configured with; None means unset."""

    # The source database (SQLAlchemy or libpq URL), or EMBEDDED_SOURCE.
    source_url: str | None = _setting("TAGFLOW_SOURCE_URL", secret=True)
    # Each tenant read with its own role: `postgresql://{tenant}@host/db` (PGPASSFILE passwords).
    source_url_template: str | None = _setting("TAGFLOW_SOURCE_URL_TEMPLATE", secret=True)
    # The dataset root: a local path or an object-store URL.
    store: str = _setting("TAGFLOW_STORE", default=".tagflow/store")
    keys_file: str = _setting("TAGFLOW_KEYS_FILE", default=".tagflow/api_keys.json")
    # The first day of the date partitions (the demo sets it to its first day, so the UI
    # counts the demo's days, not every day since 2020).
    start_date: date = _setting("TAGFLOW_START_DATE", _day, date(2020, 1, 1))
    # The day after the partitions' last day (exclusive, as every end in tagflow); unset, the
    # days go on to yesterday. The demo's UI sets both, so it counts exactly the demo's days.
    end_date: date | None = _setting("TAGFLOW_END_DATE", _day)
    # Tenant-days in one run of a range backfill (each day still its own files).
    backfill_days_per_run: int = _setting("TAGFLOW_BACKFILL_DAYS_PER_RUN", _positive_int, 31)
    # A tenant-day is late (Dagster's freshness policy of the day's datasets) when nothing was
    # published in the first this many hours after the day ended, UTC; below a day, which is
    # the longest window Dagster's daily freshness deadline allows.
    freshness_hours: int = _setting("TAGFLOW_FRESHNESS_HOURS", _hour_of_day, 6)
    # The daily schedule, in UTC: 00:30 leaves half an hour for late rows of the day before.
    schedule_cron: str = _setting("TAGFLOW_SCHEDULE_CRON", default="30 0 * * *")
    # A new tenant's history is backfilled from here (default: start_date).
    backfill_floor: date | None = _setting("TAGFLOW_BACKFILL_FLOOR", _day)
    backfill_days_per_tick: int = _setting("TAGFLOW_BACKFILL_DAYS_PER_TICK", _positive_int, 31)
    late_data_lookback_days: int = _setting("TAGFLOW_LATE_DATA_LOOKBACK_DAYS", _positive_int, 7)
    executor: str = _setting("TAGFLOW_EXECUTOR", _executor, "multiprocess")
    dask_address: str | None = _setting("TAGFLOW_DASK_ADDRESS")
    # Steps of one launched run at once (default: one per CPU).
    max_concurrent: int | None = _setting("TAGFLOW_MAX_CONCURRENT", _positive_int)
    # Dagster's run, event and schedule storage in PostgreSQL (a psycopg2 SQLAlchemy URL).
    dagster_pg_url: str | None = _setting("TAGFLOW_DAGSTER_PG_URL", secret=True)
    # tagflow's own state database (span annotations, DESIGN §9): a SQLAlchemy or libpq URL,
    # or EMBEDDED_SOURCE; unset means the `tagflow_state` database of the demo's embedded server.
    state_url: str | None = _setting("TAGFLOW_STATE_URL", secret=True)
    # The read client's defaults (the CVec SDK's variables).
    host: str | None = _setting("TAGFLOW_HOST")
    tenant: str | None = _setting("TAGFLOW_TENANT")
    api_key: str | None = _setting("TAGFLOW_API_KEY", secret=True)
    # The derived tags file (YAML, DESIGN §8): per tenant, tags defined by expressions.
    derived_tags: str | None = _setting("TAGFLOW_DERIVED_TAGS")
    # `tagflow serve`'s limits, enforced before any key is checked (tagflow.readapi.server.limits
    # says what each one bounds and why its default is safe).
    max_header_bytes: int = _setting("TAGFLOW_MAX_HEADER_BYTES", _positive_int, 65_536)
    max_body_bytes: int = _setting("TAGFLOW_MAX_BODY_BYTES", _positive_int, 1_048_576)
    header_timeout_s: int = _setting("TAGFLOW_HEADER_TIMEOUT_S", _positive_int, 10)
    body_timeout_s: int = _setting("TAGFLOW_BODY_TIMEOUT_S", _positive_int, 30)
    keep_alive_timeout_s: int = _setting("TAGFLOW_KEEP_ALIVE_TIMEOUT_S", _positive_int, 5)
    max_connections: int = _setting("TAGFLOW_MAX_CONNECTIONS", _positive_int, 1000)
    # The largest answer of one read (tagflow.readapi.engine.limits), for the service and the
    # client alike: buckets × tags, and rows decoded from the datasets.
    max_cells: int = _setting("TAGFLOW_MAX_CELLS", _positive_int, 750_000)
    max_rows: int = _setting("TAGFLOW_MAX_ROWS", _positive_int, 2_000_000)
    # Seconds a day step keeps retrying a source it cannot reach before the run fails; errors a
    # retry cannot fix (credentials, schema drift, bad data) are never retried.
    source_retry_budget_s: int = _setting("TAGFLOW_SOURCE_RETRY_BUDGET_S", _positive_int, 30)
    # Age (seconds since last written) from which a staged temp file is a killed run's leftover
    # and swept (tagflow.io_managers.sweeper); above the longest a run holds one unpublished.
    temp_max_age_s: int = _setting("TAGFLOW_TEMP_MAX_AGE_S", _positive_int, 6 * 3600)
    # Which settings came from the environment (the others are defaults or set in code).
    _from_env: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings named by TAGFLOW_* variables of `env` (default: the process's); a value
        that cannot be used is an InvalidArgument naming its variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in _env_fields():
            variable, parse = setting.metadata["env"], setting.metadata["parse"]
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[setting.name] = parse(raw)
            except ValueError as reason:
                shown = "" if not setting.repr else f", got {raw[:40]!r}"
                raise InvalidArgument(f"{variable} must be {reason}{shown}") from None
        return cls(**values, _from_env=frozenset(values))

    def replace(self, **changes: Any) -> Settings:
        """These settings with `changes` (None values leave a setting as it is), for the
        command-line options that override the environment."""
        changes = {name: value for name, value in changes.items() if value is not None}
        return dataclasses.replace(self, **changes, _from_env=self._from_env - changes.keys())

    def from_environment(self, name: str) -> bool:
        """Whether setting `name` holds the value of its environment variable."""
        return name in self._from_env

    def state_database(self) -> str | None:
        """The state database the deployment uses (span annotations): TAGFLOW_STATE_URL, else
        the demo's embedded one when the source is the demo's, else none: a production
        deployment never starts a database itself."""
        if self.state_url is not None:
            return self.state_url
        return EMBEDDED_SOURCE if self.source_url == EMBEDDED_SOURCE else None

    @property
    def first_backfill_day(self) -> date:
        """The first day a new tenant's history is backfilled from."""
        return max(self.backfill_floor or self.start_date, self.start_date)

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of setting `name`."""
        return {f.name: f.metadata["env"] for f in _env_fields()}[name]


def _env_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Settings) if "env" in f.metadata]
