"""The Dagster resources the assets use, built from the deployment's settings: the source
database, the state database (span annotations) and the dataset IO manager."""

from __future__ import annotations

import dagster as dg

from tagflow.annotations import AnnotationStore, state_url
from tagflow.errors import StateUnavailable
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.settings import Settings
from tagflow.source.tenant_source import TenantSource


class SourceDatabase(dg.ConfigurableResource):
    """The tenants' PostgreSQL database (read only) as a Dagster resource: a URL, or `embedded`
    for the demo's server, and an optional per-tenant URL template (source.tenant_source)."""

    url: str
    tenant_url_template: str | None = None
    # Seconds the day step retries a source it cannot reach (TAGFLOW_SOURCE_RETRY_BUDGET_S).
    retry_budget_s: int = 30

    def reader(self) -> TenantSource:
        """The source's reads, outside Dagster (the day step and the sensors use them)."""
        return TenantSource(self.url, self.tenant_url_template)


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


def state_database(settings: Settings) -> StateDatabase:
    """The state database as a plain object, for commands that use it outside a run."""
    return StateDatabase(url=settings.state_database(), source_url=settings.source_url)


def _secret(settings: Settings, name: str) -> str | dg.EnvVar | None:
    """A secret setting as Dagster should hold it: by its variable's name when it came from the
    environment, so the UI's resource page shows the name, never the value."""
    value = getattr(settings, name)
    if value is not None and settings.from_environment(name):
        return dg.EnvVar(Settings.variable(name))
    return value


def source_database(settings: Settings) -> SourceDatabase:
    """The source resource as a plain object, for commands that read it outside a run."""
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
    source_url = _secret(settings, "source_url")
    assert source_url is not None  # checked above
    source = SourceDatabase(
        url=source_url,
        tenant_url_template=_secret(settings, "source_url_template"),
        retry_budget_s=settings.source_retry_budget_s,
    )
    datasets = ParquetDatasetIOManager(root=settings.store, temp_max_age_s=settings.temp_max_age_s)
    state = StateDatabase(
        url=_secret(settings, "state_url") or settings.state_database(),
        source_url=_secret(settings, "source_url"),
    )
    return {"source": source, "datasets": datasets, "state": state}
