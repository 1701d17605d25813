"""Dagster resources: the source database and the dataset IO manager, configured from env vars."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa

from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.names import validate_tenant_name
from tagflow.source import connection, extract, fingerprints, tenants

DEFAULT_STORE = ".tagflow/store"
DEFAULT_EMBEDDED_PG = ".tagflow/pg"


class SourceDatabase(dg.ConfigurableResource):
    """The tenants' PostgreSQL database (read only). Without a URL, the embedded demo server.

    With `tenant_url_template` (`postgresql://{tenant}@db.internal/plant`, passwords from a
    PGPASSFILE, never in the URL) each tenant is read with its own least-privilege role, which
    cannot see other tenants; `url` stays the role that discovers tenants."""

    url: str | None = None
    tenant_url_template: str | None = None
    embedded_dir: str = DEFAULT_EMBEDDED_PG

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        from tagflow.source.embedded import embedded_server_url

        return embedded_server_url(Path(self.embedded_dir))

    def tenant_url(self, tenant: str) -> str:
        """The URL to read `tenant` with: its own role's when a template is set."""
        if self.tenant_url_template:
            # replace, not format: a URL may hold braces of its own.
            return self.tenant_url_template.replace("{tenant}", validate_tenant_name(tenant))
        return self.resolved_url()

    def list_tenants(self) -> list[str]:
        with connection.connect(self.resolved_url()) as conn:
            return tenants.list_tenants(conn)

    def read_tags(self, tenant: str) -> pa.Table:
        with connection.connect(self.tenant_url(tenant)) as conn:
            tenants.require_tenant(conn, tenant)
            return extract.read_tags(conn, tenant)

    def first_row_time(self, tenant: str) -> datetime | None:
        with connection.connect(self.tenant_url(tenant)) as conn:
            return extract.first_row_time(conn, tenant)

    def day_fingerprint(
        self, tenant: str, day_start: datetime, day_end: datetime
    ) -> fingerprints.DayFingerprint:
        with connection.connect(self.tenant_url(tenant)) as conn:
            return fingerprints.day_fingerprint(conn, tenant, day_start, day_end)

    def read_carry_in(self, tenant: str, day_start: datetime) -> pa.Table:
        with connection.connect(self.tenant_url(tenant)) as conn:
            tenants.require_tenant(conn, tenant)
            return extract.read_carry_in(conn, tenant, day_start)


def dataset_io_manager(root: str | None = None) -> ParquetDatasetIOManager:
    if root is not None:
        return ParquetDatasetIOManager(root=root)
    return ParquetDatasetIOManager(root=dg.EnvVar("TAGFLOW_STORE").get_value(DEFAULT_STORE))


def source_database(url: str | None = None) -> SourceDatabase:
    template = dg.EnvVar("TAGFLOW_SOURCE_URL_TEMPLATE").get_value()
    if url is not None:
        return SourceDatabase(url=url, tenant_url_template=template)
    return SourceDatabase(
        url=dg.EnvVar("TAGFLOW_SOURCE_URL").get_value(), tenant_url_template=template
    )
