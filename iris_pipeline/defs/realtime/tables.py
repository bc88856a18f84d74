"""One `bmrs_<code>_iris` asset per registered IRIS dataset, all loaded by one subsettable step.

A single step drains every selected dataset through one warehouse connection: 87 separate steps
would cost seconds of Dagster overhead per run and 87 openings of a one-writer DuckDB file.
"""

from typing import Iterator

import dagster as dg

from iris_pipeline.defs.realtime.checks import REGISTERED, evaluate_table_checks, table_check_specs
from iris_pipeline.defs.realtime.client import IRIS_FEED_KEY as FEED_KEY
from iris_pipeline.defs.resources import WAREHOUSE_POOL
from iris_pipeline.freshness_status import IngestStatus, read_status, refresh_status
from iris_pipeline.health import DEFAULT_MAX_LAG_S
from iris_pipeline.chunk import DEFAULT_MAX_MESSAGE_BYTES
from iris_pipeline.codec import META_COLUMNS
from iris_pipeline.loader import DatasetReport, LoadReport, load_spool
from iris_pipeline.registry import Dataset, Registry, load_registry
from iris_pipeline.spool import Spool

GROUP = "iris_realtime"
UNREGISTERED_KEY = dg.AssetKey("bmrs_unregistered_iris")


def asset_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(dataset.table_name)


def describe(dataset: Dataset) -> str:
    key = ", ".join(dataset.natural_key) or "the whole record (exact duplicates only)"
    return (
        f"{dataset.name} ({dataset.code}) as received from Elexon IRIS: one row per record of each IRIS"
        f" message, with the fields typed from the Insights API schema plus `_source_file`,"
        f" `_record_index` and `_ingested_at`. Every message file is loaded exactly once (see"
        f" `iris_ingest_log`); redelivered versions are kept as separate rows.\n\n"
        f"Natural key: {key}. " + (
            "Event-driven: no expected cadence." if dataset.event_driven
            else f"Expected cadence: every {max(1, dataset.cadence_seconds // 60)} min.")
        + (f"\n\nKey assumption: {dataset.key_assumption}" if dataset.key_assumption else "")
    )


OWNERS = ["team:iris-pipeline"]
META_DESCRIPTIONS = {
    "_source_file": "Name of the spool file (IRIS message) the row came from; with `_record_index`, unique per row.",
    "_record_index": "Position of the record in its message, from 0.",
    "_ingested_at": "When the row was loaded into the warehouse (UTC).",
}


def column_schema(dataset: Dataset) -> dg.TableSchema:
    """The table's columns as loaded: the record fields, then the three the loader adds."""
    columns = [dg.TableColumn(c.name, c.type, description=c.description or None) for c in dataset.columns]
    columns += [dg.TableColumn(name, kind, description=META_DESCRIPTIONS[name]) for name, kind in META_COLUMNS.items()]
    return dg.TableSchema(columns=columns)


def _spec(dataset: Dataset, storage_kind: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=asset_key(dataset),
        description=describe(dataset),
        group_name=GROUP,
        skippable=True,
        kinds={"python", storage_kind},
        owners=OWNERS,
        deps=[FEED_KEY],  # the IRIS feed (client -> spool) is what these tables are loaded from
        metadata={
            "dataset_code": dataset.code,
            "natural_key": list(dataset.natural_key),
            "reference_time_field": dataset.reference_time_field,
            "cadence_seconds": dataset.expected_cadence_seconds,
            "dagster/column_schema": column_schema(dataset),
        },
    )


def _unregistered_spec(storage_kind: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=UNREGISTERED_KEY,
        description=(
            "Records of IRIS dataset codes the registry does not know yet. Each such code still lands in its"
            " own `bmrs_<code>_iris` table (columns inferred from JSON value kinds) so nothing is skipped; the"
            f" `{REGISTERED}` check on this asset warns until the registry is regenerated to include them."
        ),
        group_name=GROUP,
        skippable=True,
        kinds={"python", storage_kind},
        owners=OWNERS,
        deps=[FEED_KEY],
    )


def codes_for_selection(registry: Registry, selected: set[dg.AssetKey], pending: list[str]) -> list[str]:
    """Dataset directories a run should drain, given its selected assets and what is pending."""
    wanted = {ds.code for ds in registry if asset_key(ds) in selected}
    unregistered_wanted = UNREGISTERED_KEY in selected
    return sorted(code for code in pending if code in wanted or (unregistered_wanted and code not in registry))


def key_for_code(registry: Registry, code: str) -> dg.AssetKey:
    dataset = registry.get(code)
    return asset_key(dataset) if dataset else UNREGISTERED_KEY


def build_iris_tables(
    registry: Registry | None = None, max_lag_s: float = DEFAULT_MAX_LAG_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    storage_kind: str = "duckdb",
) -> dg.AssetsDefinition:
    registry = registry or load_registry()

    @dg.multi_asset(
        name="iris_spool_loader",
        specs=[_spec(ds, storage_kind) for ds in registry] + [_unregistered_spec(storage_kind)],
        check_specs=table_check_specs(registry, UNREGISTERED_KEY, max_lag_s),
        can_subset=True,
        # Writers of the warehouse take a slot of one pool however their run started (sensor, UI,
        # backfill, schedule): DuckDB admits one writer, and BigQuery wants one flush at a time.
        pool=WAREHOUSE_POOL,
        required_resource_keys={"spool", "warehouse"},  # warehouse: DuckDB or BigQuery, both with open()
    )
    def iris_spool_loader(context: dg.AssetExecutionContext):
        """Drain the selected datasets' pending spool files into their tables exactly once, then
        evaluate the selected checks. With only checks selected (launched on their own from the UI)
        it reads the spool and the ingest status file and touches nothing else."""
        spool_dir: Spool = context.resources.spool.get()
        if not context.selected_asset_keys:
            status = read_status(spool_dir.root) or IngestStatus()
            yield from evaluate_table_checks(context.selected_asset_check_keys, registry, spool_dir, status, max_lag_s)
            return
        codes = codes_for_selection(registry, set(context.selected_asset_keys), spool_dir.datasets_pending())
        with context.resources.warehouse.open() as wh:  # held briefly: DuckDB admits one process at a time
            report = load_spool(spool_dir, wh, datasets=codes, registry=registry, max_message_bytes=max_message_bytes)
            written = [code for code, ds_report in report.datasets.items() if ds_report.files_loaded]
            status = refresh_status(spool_dir.root, wh, registry, written)
            usage = wh.usage()
            table_names = {code: wh.qualified_name(registry.resolve(code).table_name) for code in written}
        checks = list(evaluate_table_checks(context.selected_asset_check_keys, registry, spool_dir, status, max_lag_s))
        yield from _results(context, registry, report, _run_metadata(usage, status, table_names))
        yield from checks
        if report.failed:
            raise dg.Failure(
                description=f"{len(report.failed)} dataset(s) failed and stay in the spool for the next run",
                metadata={code: error for code, error in report.failed.items()},
            )

    return iris_spool_loader


def _run_metadata(usage: dict[str, int], status: IngestStatus, table_names: dict[str, str]) -> dict[str, dict]:
    """Per dataset: the standard table metadata, plus what the whole run cost the warehouse (BigQuery
    load jobs and bytes; DuckDB reports nothing)."""
    run_usage = {f"run_{name}": value for name, value in sorted(usage.items())}
    return {
        code: {"dagster/table_name": name, "dagster/row_count": status.freshness(code).rows} | run_usage
        for code, name in table_names.items()
    }


def _results(
    context: dg.AssetExecutionContext, registry: Registry, report: LoadReport, metadata: dict[str, dict]
) -> Iterator[dg.MaterializeResult]:
    if report.datasets:
        context.log.info(report.summary())
    unregistered: list[DatasetReport] = []
    for code, ds_report in sorted(report.datasets.items()):
        if ds_report.error:
            context.log.error(f"{code}: {ds_report.error}")
            continue
        for name, reason in list(ds_report.quarantine_reasons.items())[:20]:
            context.log.warning(f"quarantined {code}/{name}: {reason}")
        if code in registry:
            yield dg.MaterializeResult(
                asset_key=key_for_code(registry, code), metadata=ds_report.as_metadata() | metadata.get(code, {})
            )
        else:
            unregistered.append(ds_report)
    if unregistered:
        context.log.warning(f"unregistered dataset codes loaded: {[r.dataset for r in unregistered]}")
        yield dg.MaterializeResult(
            asset_key=UNREGISTERED_KEY,
            metadata={
                "dataset_codes": ", ".join(r.dataset for r in unregistered),
                "files_loaded": sum(r.files_loaded for r in unregistered),
                "rows_loaded": sum(r.rows_loaded for r in unregistered),
                "files_quarantined": sum(r.files_quarantined for r in unregistered),
            },
        )
