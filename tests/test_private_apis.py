"""Private APIs of Dagster and uvicorn are used in one adapter each; these tests fail when the
installed release is outside the range the adapter was written for, so an upgrade starts by
re-reading the adapter, not by a failure deep in a run."""

from __future__ import annotations

from importlib.metadata import version

from packaging.specifiers import SpecifierSet

from tagflow.pipelines import dagster_internals
from tagflow.readapi.server import connection


def test_dagster_is_a_release_the_adapter_was_written_for():
    assert version("dagster") in SpecifierSet(",".join(dagster_internals.WRITTEN_FOR))


def test_the_dagster_range_is_the_one_pyproject_pins():
    from tests.test_layout import PYPROJECT

    pins = [d for d in PYPROJECT["project"]["optional-dependencies"]["pipeline"] if "dagster>" in d]
    assert pins == ["dagster" + ",".join(dagster_internals.WRITTEN_FOR)]


def test_documented_range_tags_match_the_ones_dagster_reads():
    from dagster._core.storage import tags

    assert dagster_internals.ASSET_PARTITION_RANGE_START_TAG == tags.ASSET_PARTITION_RANGE_START_TAG
    assert dagster_internals.ASSET_PARTITION_RANGE_END_TAG == tags.ASSET_PARTITION_RANGE_END_TAG
    assert dagster_internals.BACKFILL_ID_TAG == tags.BACKFILL_ID_TAG


def test_the_uvicorn_range_is_the_one_pyproject_pins():
    from tests.test_layout import PYPROJECT

    pins = [d for d in PYPROJECT["project"]["optional-dependencies"]["service"] if "uvicorn" in d]
    assert pins == ["uvicorn" + ",".join(connection.UVICORN_WRITTEN_FOR)]


def test_uvicorn_is_a_release_the_protocol_was_written_for():
    assert version("uvicorn") in SpecifierSet(",".join(connection.UVICORN_WRITTEN_FOR))
    assert version("h11") in SpecifierSet(",".join(connection.H11_WRITTEN_FOR))
