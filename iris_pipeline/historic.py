"""History from the Insights API into `bmrs_<code>`, a range of settlement days at a time.

Framework-free: the partitioned Dagster assets and `iris-pipeline backfill` call `load_days`. A range
of days is fetched, typed by the same registry as `bmrs_<code>_iris`, and replaces those days in the
table in one transaction (`Warehouse.replace_range`), so re-running a day never doubles it and a day
with no data is an empty day, not a failure.

Which rows belong to a day: the settlement date where the dataset has one; otherwise its reference time
within the day's bounds in Europe/London (23 hours on the last Sunday of March, 25 in October).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from iris_pipeline import codec
from iris_pipeline.insights_api import settlement_date_of, settlement_day_bounds as day_bounds
from iris_pipeline.registry import ApiEndpoint, Dataset, validate_dataset_code
from iris_pipeline.warehouse.base import TableLayout, Warehouse, evolved_type

log = logging.getLogger(__name__)

# A record published just after midnight can belong to the day before (FUELINST's 23:55 reading is
# published at 00:00): windows that select by publish time reach this far beyond the days, and rows
# are then kept by the day they belong to.
FETCH_MARGIN = {"publish_time": dt.timedelta(hours=1)}
Fetch = Callable[[ApiEndpoint, dt.datetime, dt.datetime], list[dict]]


@dataclass(frozen=True)
class DayRange:
    """Consecutive settlement days, first to last inclusive, and the column and bounds that select them."""

    first: dt.date
    last: dt.date
    column: str
    start: dt.date | dt.datetime
    end: dt.date | dt.datetime


def day_range(dataset: Dataset, first: dt.date, last: dt.date) -> DayRange:
    settlement = dataset.column("settlementDate")
    if settlement is not None and settlement.type == "DATE":
        return DayRange(first, last, "settlementDate", first, last + dt.timedelta(days=1))
    column = dataset.partition_column
    if column is None or (dataset.column(column) and dataset.column(column).type != "TIMESTAMP"):
        raise ValueError(f"{dataset.code}: no settlement date or reference time to place its rows in a day")
    return DayRange(first, last, column, day_bounds(first)[0], day_bounds(last)[1])


@dataclass
class DaysLoaded:
    dataset: str
    first: dt.date
    last: dt.date
    rows_by_day: dict[dt.date, int]
    records_fetched: int
    records_outside: int  # returned by the API for the window but belonging to another day


def fetch_days(dataset: Dataset, first: dt.date, last: dt.date, fetch: Fetch) -> list[dict]:
    """The API's records for settlement days first..last (and a margin: see FETCH_MARGIN)."""
    if dataset.api is None:
        raise ValueError(f"{dataset.code}: the registry knows no Insights API endpoint for it")
    margin = FETCH_MARGIN.get(dataset.api.window_filter, dt.timedelta(0))
    return fetch(dataset.api, day_bounds(first)[0] - margin, day_bounds(last)[1] + margin)


def load_days(
    warehouse: Warehouse, dataset: Dataset, first: dt.date, last: dt.date, fetch: Fetch,
    *, now: dt.datetime | None = None,
) -> DaysLoaded:
    """Fetch settlement days first..last (inclusive) of `dataset` and replace them in its historic table."""
    return replace_days(warehouse, dataset, first, last, fetch_days(dataset, first, last, fetch), now=now)


def replace_days(
    warehouse: Warehouse, dataset: Dataset, first: dt.date, last: dt.date, records: list[dict],
    *, now: dt.datetime | None = None,
) -> DaysLoaded:
    """Type `records` by the registry and make them the whole of days first..last in `bmrs_<code>`."""
    days = day_range(dataset, first, last)
    now = now or dt.datetime.now(dt.timezone.utc)
    source = f"api:{dataset.api.path if dataset.api else dataset.code}:{first.isoformat()}..{last.isoformat()}"
    converted = codec.to_records_table(
        records,
        {c.name: c.type for c in dataset.columns},
        pa.array([source] * len(records), pa.string()),
        pa.array(range(len(records)), pa.int64()),
        pa.scalar(now, codec.ARROW_TYPES["TIMESTAMP"]),
    )
    table = dataset.historic_table_name
    refuse_legacy_layout(warehouse, dataset, table)
    warehouse.ensure_table(table, converted.column_types, TableLayout(dataset.partition_column, dataset.cluster_columns))
    columns = warehouse.table_columns(table) or {}
    rows = codec.conform(converted, columns)
    inside = _inside(rows, days)
    kept = rows.filter(inside)
    warehouse.replace_range(table, days.column, days.start, days.end, kept)
    return DaysLoaded(dataset.code, first, last, _rows_by_day(kept, days), len(records), rows.num_rows - kept.num_rows)


def refuse_legacy_layout(warehouse: Warehouse, dataset: Dataset, table: str) -> None:
    """A historic table brought from another pipeline (DATETIME or text times, numbers as text) is read by
    the unified view as it is, but never written into: widening its columns would turn them into JSON."""
    from iris_pipeline.sql_templates import dialect

    native = warehouse.native_columns(table)
    if not native:
        return
    sql, declared = dialect(warehouse.dialect), {c.name.lower(): c.type for c in dataset.columns}
    legacy = []
    for name, kind in native.items():
        wanted, have = declared.get(name.lower()), sql.registry_type(kind)
        # a column this project widened (INT64 -> FLOAT64, anything -> JSON) is not legacy
        if wanted and (have is None or evolved_type(wanted, have) != have):
            legacy.append((name, kind, wanted))
    if legacy:
        raise ValueError(
            f"{table} has a legacy layout ({', '.join(f'{n} is {k}, not {w}' for n, k, w in legacy[:5])}"
            f"{', ...' if len(legacy) > 5 else ''}): it is read by"
            f" {'bmrs_' + dataset.code.lower() + '_unified'} as it is, but not written into. To backfill, rename"
            f" it (its rows then leave the unified view) or convert its columns to the registry's types.")


# --- extracts on disk: the Dagster assets fetch without holding the warehouse, then load in seconds ---

def extract_dir(root: str | os.PathLike[str], dataset: Dataset) -> Path:
    return Path(root) / "historic" / validate_dataset_code(dataset.code)


def extract_days(root: str | os.PathLike[str], dataset: Dataset, first: dt.date, last: dt.date, fetch: Fetch) -> dict[dt.date, int]:
    """Fetch days first..last and write each day's records to `<root>/historic/<CODE>/<day>.json`
    (written elsewhere, then renamed into place; an empty day is `[]`). Returns records per day."""
    days = day_range(dataset, first, last)
    by_day: dict[dt.date, list[dict]] = {first + dt.timedelta(days=i): [] for i in range((last - first).days + 1)}
    unplaced = 0
    for record in fetch_days(dataset, first, last, fetch):
        day = _day_of(record, days)
        if day in by_day:
            by_day[day].append(record)
        elif day is None:
            unplaced += 1
    if unplaced:  # no day to put them in: the load would drop them too, so say so
        log.warning("%s: %d records without a readable %s were not extracted", dataset.code, unplaced, days.column)
    directory = extract_dir(root, dataset)
    directory.mkdir(parents=True, exist_ok=True)
    for day, records in by_day.items():
        target = directory / f"{day.isoformat()}.json"
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(orjson.dumps(records))
        os.replace(tmp, target)
    return {day: len(records) for day, records in by_day.items()}


def load_extracted_days(
    warehouse: Warehouse, root: str | os.PathLike[str], dataset: Dataset, first: dt.date, last: dt.date
) -> DaysLoaded:
    """Replace days first..last in `bmrs_<code>` with their extracts (every day must have one), then
    delete the extracts: the warehouse holds the days now (a year of BOD would be ~27 GB of JSON)."""
    directory = extract_dir(root, dataset)
    records: list[dict] = []
    paths = [directory / f"{(first + dt.timedelta(days=i)).isoformat()}.json" for i in range((last - first).days + 1)]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"{dataset.code}: no extract for {path.stem} at {path}: materialise"
                f" {dataset.historic_table_name}_api_extract for that day first"
            )
        records += orjson.loads(path.read_bytes())
    loaded = replace_days(warehouse, dataset, first, last, records)
    for path in paths:
        path.unlink(missing_ok=True)
    return loaded


def _day_of(record: dict, days: DayRange) -> dt.date | None:
    """The settlement day a raw record belongs to (its settlement date, else its time in London)."""
    value = record.get(days.column)
    if not isinstance(value, str):
        return None
    try:
        if days.column == "settlementDate":
            return dt.date.fromisoformat(value[:10])
        # the API sends up to 7 fractional digits (`...00.0000000+00:00`); Python reads at most 6
        return settlement_date_of(dt.datetime.fromisoformat(_FRACTION_RE.sub(r"\1", value)))
    except ValueError:
        return None


_FRACTION_RE = re.compile(r"(\.\d{6})\d+")


def _inside(rows: pa.Table, days: DayRange) -> pa.Array:
    if days.column not in rows.column_names:
        return pa.array([False] * rows.num_rows)
    values = rows[days.column]
    lo, hi = pa.scalar(days.start, values.type), pa.scalar(days.end, values.type)
    return pc.fill_null(pc.and_(pc.greater_equal(values, lo), pc.less(values, hi)), False)


def _rows_by_day(rows: pa.Table, days: DayRange) -> dict[dt.date, int]:
    counts = {days.first + dt.timedelta(days=i): 0 for i in range((days.last - days.first).days + 1)}
    if rows.num_rows == 0:
        return counts
    if days.column == "settlementDate":
        for value in rows[days.column].to_pylist():
            counts[value] += 1
    else:
        for value in rows[days.column].to_pylist():
            counts[settlement_date_of(value)] += 1
    return counts


def split_days(first: dt.date, last: dt.date, per_range: int) -> Sequence[tuple[dt.date, dt.date]]:
    """first..last cut into consecutive ranges of at most `per_range` days."""
    ranges, start = [], first
    while start <= last:
        end = min(last, start + dt.timedelta(days=per_range - 1))
        ranges.append((start, end))
        start = end + dt.timedelta(days=1)
    return ranges
