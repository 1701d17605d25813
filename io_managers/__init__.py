"""Storage of the Parquet datasets: the layout (only here) and the Dagster IO manager over it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tagflow.io_managers.dataset_store import DatasetStore

if TYPE_CHECKING:
    from tagflow.io_managers.parquet_io_manager import ParquetDatasetIOManager

__all__ = ["DatasetStore", "ParquetDatasetIOManager"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the read client reads the store without Dagster installed.
    if name == "ParquetDatasetIOManager":
        from tagflow.io_managers.parquet_io_manager import ParquetDatasetIOManager

        return ParquetDatasetIOManager
    raise AttributeError(f"module 'tagflow.io_managers' has no attribute {name!r}")
