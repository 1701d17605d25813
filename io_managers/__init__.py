"""Storage of the Parquet datasets: the layout (only here) and the Dagster IO manager over it."""

from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.parquet_io_manager import ParquetDatasetIOManager

__all__ = ["DatasetStore", "ParquetDatasetIOManager"]
