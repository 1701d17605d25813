"""The source database's reads that runs, sensors and commands make, without Dagster: one
object per source URL (and optional per-tenant URL template), every read on a pooled session
of the tenant's own (source.engines), the tenant's tables checked against the DDL first
(SchemaDrift if they drifted)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg
import pyarrow as pa

from tagflow.names import validate_tenant_name
from tagflow.source import extract, fingerprints, tenants
from tagflow.source.embedded import resolve_source_url
from tagflow.source.engines import source_session


@dataclass(frozen=True)
class TenantSource:
    """The tenants' PostgreSQL database (read only): a URL, or `embedded` for the demo's server.

    With `tenant_url_template` (`postgresql://{tenant}@db.internal/plant`, passwords from a
    PGPASSFILE, never in the URL) each tenant is read with its own least-privilege role, which
    cannot see other tenants; `url` stays the role that discovers tenants."""

    url: str
    tenant_url_template: str | None = None

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
