"""A snapshot of every asset and check the code location defines: keys, groups, kinds, owners,
partitions, lineage, pools, backfill and freshness policies, subsetting, and checks. A
change to the definitions shows as a diff of tests/__snapshots__/test_asset_specs.ambr; when it
is meant, accept it with `pytest tests/test_asset_specs.py --snapshot-update` and commit
the file."""

from __future__ import annotations

from typing import Any

import dagster as dg

from tagflow.io_managers.parquet_io_manager import column_schema
from tagflow.pipelines.definitions import build_definitions
from tagflow.schemas.registry import ANNOTATION_DATASETS, DATASETS
from tagflow.schemas.registry import dataset as registered
from tagflow.settings import Settings


def _partitions(definition: dg.PartitionsDefinition | None) -> str | None:
    if isinstance(definition, dg.DynamicPartitionsDefinition):
        return f"{definition.name}: DynamicPartitionsDefinition"
    return (
        None
        if definition is None
        else " × ".join(
            f"{d.name}: {type(d.partitions_def).__name__}"
            + (
                f" from {d.partitions_def.start:%Y-%m-%d}"
                if hasattr(d.partitions_def, "start")
                else ""
            )
            for d in definition.partitions_defs
        )
    )


def asset_specs() -> dict[str, Any]:
    defs = build_definitions(Settings(source_url="postgresql://nobody@127.0.0.1:1/none"))
    graph = defs.resolve_asset_graph()
    out: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = node.assets_def
        policy = assets_def.backfill_policy
        out[key.to_user_string()] = {
            "step": assets_def.node_def.name,
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "partitions": _partitions(node.partitions_def),
            "parents": sorted(k.to_user_string() for k in node.parent_keys),
            "pool": assets_def.node_def.pool if hasattr(assets_def.node_def, "pool") else None,
            "backfill": None if policy is None else str(policy),
            "freshness": None if node.freshness_policy is None else str(node.freshness_policy),
            "subsettable": assets_def.can_subset,
            "checks": sorted(
                (c.name, graph.get_check_spec(c).blocking)
                for c in graph.asset_check_keys
                if c.asset_key == key
            ),
        }
    return out


def test_asset_specs_match_the_snapshot(snapshot):
    assert asset_specs() == snapshot


def test_every_column_of_every_dataset_has_its_description_in_the_column_schema():
    for name in [*DATASETS, *ANNOTATION_DATASETS]:
        columns = column_schema(name).columns
        assert [c.name for c in columns] == registered(name).schema.names
        assert all(c.description for c in columns), name
