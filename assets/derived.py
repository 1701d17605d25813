"""Assets derived from a day's transitions: spans and LOCF-resampled metrics at every width of
the registry (the finest computed from the transitions, each coarser one rolled up)."""

from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from tagflow.assets.extraction import OWNERS
from tagflow.assets.partitions import TenantDays
from tagflow.io_managers.parquet_io_manager import DayOutput, StoredDays
from tagflow.schemas.arrow import SAMPLES, SAMPLES_STR
from tagflow.schemas.registry import DATASETS, WIDTHS, samples_name
from tagflow.time_range import day_bounds
from tagflow.transforms.chunks import rollup_by_chunk, samples_by_chunk, spans_by_chunk


def _sample_outs(width_name: str) -> dict[str, dg.AssetOut]:
    common = {"io_manager_key": "datasets", "kinds": {"parquet"}, "owners": OWNERS}
    return {
        name: dg.AssetOut(**common, description=DATASETS[name].description)
        for name in (samples_name(width_name, False), samples_name(width_name, True))
    }


def derived_assets(partitions: TenantDays) -> list[dg.AssetsDefinition]:
    placement = {
        "partitions_def": partitions.definition,
        "backfill_policy": partitions.backfill_policy,
        "group_name": "derive",
    }

    @dg.asset(
        **placement,
        io_manager_key="datasets",
        kinds={"parquet"},
        owners=OWNERS,
        description=DATASETS["spans"].description,
    )
    def spans(
        context: dg.AssetExecutionContext,
        transitions: StoredDays,
        carry_in: StoredDays,
        tags: pa.Table,
    ):
        def outputs() -> Iterator[DayOutput]:
            for tenant, day in partitions.run_days(context):
                day_start, day_end = day_bounds(day)
                rows, carry = transitions.batches(tenant, day), carry_in.read(tenant, day)
                chunks = spans_by_chunk(rows, carry, day_start, day_end, tags, tenant)
                yield DayOutput(tenant, day, chunks)

        return dg.Output(outputs())

    finest, *coarser = WIDTHS

    @dg.multi_asset(outs=_sample_outs(finest), name=f"samples_{finest}", **placement)
    def finest_samples(
        context: dg.AssetExecutionContext,
        transitions: StoredDays,
        carry_in: StoredDays,
        tags: pa.Table,
    ):
        def outputs(value_kind: str) -> Iterator[DayOutput]:
            for tenant, day in partitions.run_days(context):
                day_start, day_end = day_bounds(day)
                rows, carry = transitions.batches(tenant, day), carry_in.read(tenant, day)
                chunks = samples_by_chunk(
                    rows, carry, day_start, day_end, WIDTHS[finest], tags, value_kind
                )
                yield DayOutput(tenant, day, chunks)

        # Numeric and string samples are computed in two passes over the stored transitions
        # (each over the tags holding that kind) so that neither output waits in memory for
        # the other.
        yield dg.Output(outputs("numeric"), output_name=samples_name(finest, False))
        yield dg.Output(outputs("string"), output_name=samples_name(finest, True))

    def rollup_asset(finer: str, width_name: str) -> dg.AssetsDefinition:
        @dg.multi_asset(
            name=f"samples_{width_name}",
            outs=_sample_outs(width_name),
            ins={
                "numeric": dg.AssetIn(samples_name(finer, False)),
                "text": dg.AssetIn(samples_name(finer, True)),
            },
            **placement,
        )
        def rolled_up(context: dg.AssetExecutionContext, numeric: StoredDays, text: StoredDays):
            width = WIDTHS[width_name]

            def outputs(finer_days: StoredDays, schema: pa.Schema) -> Iterator[DayOutput]:
                for tenant, day in partitions.run_days(context):
                    batches = finer_days.batches(tenant, day)
                    yield DayOutput(tenant, day, rollup_by_chunk(batches, schema, width))

            yield dg.Output(outputs(numeric, SAMPLES), output_name=samples_name(width_name, False))
            yield dg.Output(outputs(text, SAMPLES_STR), output_name=samples_name(width_name, True))

        return rolled_up

    rollups = [rollup_asset(finer, name) for finer, name in zip(WIDTHS, coarser, strict=False)]
    return [spans, finest_samples, *rollups]
