"""Loading test rows into the real tables the way the pipeline does: IRIS files through the ledgered
append, history through the historic replacement of whole settlement days."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from iris_pipeline import codec
from iris_pipeline.historic import replace_days
from iris_pipeline.registry import Dataset
from iris_pipeline.warehouse.base import LoadedFile, TableLayout, Warehouse

UTC = dt.timezone.utc


def file_batch(files: dict[str, list[dict]], declared: dict[str, str], ingested_at: dt.datetime, *, hashed: bool = True):
    """(converted rows, LoadedFile list) for {file name: records}, built the way the loader builds them."""
    names, indexes, records = [], [], []
    for name, recs in files.items():
        names += [name] * len(recs)
        indexes += list(range(len(recs)))
        records += recs
    converted = codec.to_records_table(
        records, declared, pa.array(names, pa.string()), pa.array(indexes, pa.int64()),
        pa.scalar(ingested_at, codec.ARROW_TYPES["TIMESTAMP"]),
    )
    return converted, [LoadedFile(n, len(r), f"sha-{n}" if hashed else None) for n, r in files.items()]


def load_iris(wh: Warehouse, dataset: Dataset, files: dict[str, list[dict]], ingested_at: dt.datetime) -> None:
    """IRIS messages {file name: records} into bmrs_<code>_iris, as the loader writes them."""
    converted, loaded = file_batch(files, {c.name: c.type for c in dataset.columns}, ingested_at)
    wh.ensure_table(dataset.table_name, converted.column_types, TableLayout(dataset.partition_column, dataset.cluster_columns))
    rows = codec.conform(converted, wh.table_columns(dataset.table_name) or {})
    wh.append(dataset.code, dataset.table_name, rows, loaded)


def load_history(wh: Warehouse, dataset: Dataset, first: dt.date, last: dt.date, records: list[dict],
                 fetched_at: dt.datetime) -> None:
    """API records for settlement days first..last into bmrs_<code>, as a backfill replaces them."""
    replace_days(wh, dataset, first, last, records, now=fetched_at)


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
