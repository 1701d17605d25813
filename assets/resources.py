"""The Dagster resources the assets use, built from the deployment's settings: the source
database, the state database (span annotations) and the dataset IO manager."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import dagster as dg
import psycopg
import pyarrow as pa

from tagflow.annotations import AnnotationStore, state_url
from tagflow.errors import StateUnavailable
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.names import validate_tenant_name
from tagflow.settings import EMBEDDED_SOURCE, Settings
from tagflow.source import extract, fingerprints, tenants
from tagflow.source.embedded import resolve_source_url
from tagflow.source.engines import source_session


class SourceDatabase(dg.ConfigurableResource):
    """The tenants' PostgreSQL database (read only): a URL, or `embedded` for the demo's server.

    With `tenant_url_template` (`postgresql://{tenant}@db.internal/plant`, passwords from a
    PGPASSFILE, never in the URL) each tenant is read with its own least-privilege role, which
    cannot see other tenants; `url` stays the role that discovers tenants.

    Sessions come from one pool per URL (source.engines), and a tenant's tables are checked
    against the DDL before it is read (SchemaDrift if they drifted)."""

    url: str
    tenant_url_template: str | None = None
    # Seconds the day step retries a source it cannot reach (TAGFLOW_SOURCE_RETRY_BUDGET_S).
    retry_budget_s: int = 30

    def resolved_url(self) -> str:
        return resolve_source_url(self.url)

    def tenant_url(self, tenant: str) -> str:
        """The URL to read `tenant` with: its own role's when a template is set."""
        if self.tenant_url_template:
            # replace, not format: a URL may hold braces of its own.
            return self.tenant_url_template.replace("{tenant}", validate_tenant_name(tenant))
        return self.resolved_url()

    @contextmanager
    def tenant_session(self, tenant: str) -> Iterator[psycopg.Connection]:
        """A pooled session to read `tenant` with, once its tables passed the schema check."""
        with source_session(self.tenant_url(tenant), tenant=tenant) as conn:
            yield conn

    def list_tenants(self) -> list[str]:
        with source_session(self.resolved_url()) as conn:
            return tenants.list_tenants(conn)

    def read_tags(self, tenant: str) -> pa.Table:
        with self.tenant_session(tenant) as conn:
            return extract.read_tags(conn, tenant)

    def require_tenant(self, tenant: str) -> None:
        with self.tenant_session(tenant) as conn:
            tenants.require_tenant(conn, tenant)

    def count_out_of_range(self, tenant: str) -> int:
        with self.tenant_session(tenant) as conn:
            return extract.count_out_of_range(conn, tenant)

    def first_row_time(self, tenant: str) -> datetime | None:
        with self.tenant_session(tenant) as conn:
            return extract.first_row_time(conn, tenant)

    def day_fingerprint(
        self, tenant: str, day_start: datetime, day_end: datetime
    ) -> fingerprints.DayFingerprint:
        with self.tenant_session(tenant) as conn:
            return fingerprints.day_fingerprint(conn, tenant, day_start, day_end)

    def estimate_day_rows(self, tenant: str, day_start: datetime, day_end: datetime) -> int:
        with self.tenant_session(tenant) as conn:
            return extract.estimate_day_rows(conn, tenant, day_start, day_end)

    def read_carry_in(self, tenant: str, day_start: datetime) -> pa.Table:
        with self.tenant_session(tenant) as conn:
            tenants.require_tenant(conn, tenant)
            return extract.read_carry_in(conn, tenant, day_start)


NO_STATE = "no state database is configured (set TAGFLOW_STATE_URL)"


class StateDatabase(dg.ConfigurableResource):
    """tagflow's own database of span annotations (DESIGN §9): a URL, `embedded` for the demo's
    server, or None where the deployment has none (then nobody can annotate, and the
    annotation assets and checks say so)."""

    url: str | None = None
    # The source's URL, so that a state URL naming the source database is refused.
    source_url: str | None = None

    @property
    def configured(self) -> bool:
        return self.url is not None

    def store(self) -> AnnotationStore:
        """The annotation store (one pooled engine per URL); StateUnavailable if none is set."""
        if self.url is None:
            raise StateUnavailable(NO_STATE)
        return AnnotationStore.at(state_url(self.url, source_url=self.source_url))


def state_setting(settings: Settings) -> str | None:
    """The state database a deployment uses: TAGFLOW_STATE_URL, else the demo's embedded one when
    the source is the demo's, else none: a production code location never starts a database
    itself."""
    if settings.state_url is not None:
        return settings.state_url
    return EMBEDDED_SOURCE if settings.source_url == EMBEDDED_SOURCE else None


def state_database(settings: Settings) -> StateDatabase:
    """The state database as a plain object, for commands that use it outside a run."""
    return StateDatabase(url=state_setting(settings), source_url=settings.source_url)


def _secret(settings: Settings, name: str) -> str | dg.EnvVar | None:
    """A secret setting as Dagster should hold it: by its variable's name when it came from the
    environment, so the UI's resource page shows the name, never the value."""
    value = getattr(settings, name)
    if value is not None and settings.from_environment(name):
        return dg.EnvVar(Settings.variable(name))
    return value


def source_database(settings: Settings) -> SourceDatabase:
    """The source as a plain object, for commands that read it outside a run."""
    if settings.source_url is None:
        raise ValueError("source_database needs settings with a source URL")
    return SourceDatabase(
        url=settings.source_url,
        tenant_url_template=settings.source_url_template,
        retry_budget_s=settings.source_retry_budget_s,
    )


def resources(settings: Settings) -> dict[str, dg.ConfigurableResource | dg.IOManager]:
    """The code location's resources, keyed as the assets ask for them."""
    if settings.source_url is None:
        raise ValueError("resources need settings with a source URL")
    source = SourceDatabase(
        url=_secret(settings, "source_url"),
        tenant_url_template=_secret(settings, "source_url_template"),
        retry_budget_s=settings.source_retry_budget_s,
    )
    datasets = ParquetDatasetIOManager(root=settings.store, temp_max_age_s=settings.temp_max_age_s)
    state = StateDatabase(
        url=_secret(settings, "state_url") or state_setting(settings),
        source_url=_secret(settings, "source_url"),
    )
    return {"source": source, "datasets": datasets, "state": state}
