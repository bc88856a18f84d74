"""Data-quality findings over the unified layer: duplicate keys, incomplete settlement days, keys that
hold two different facts. Framework-free; the Dagster checks (defs/unified/checks.py) call these.

Each returns a Finding: whether it holds, a one-line reason, and metadata for the UI.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from iris_pipeline.historic import DayRange
from iris_pipeline.insights_api import settlement_day_bounds
from iris_pipeline.registry import Dataset
from iris_pipeline.sql_templates import dialect, render
from iris_pipeline.warehouse.base import Warehouse

HALF_HOUR = dt.timedelta(minutes=30)
MAX_LISTED_DAYS = 10


@dataclass(frozen=True)
class Finding:
    passed: bool
    reason: str
    metadata: dict = field(default_factory=dict)


def periods_in_day(day: dt.date) -> int:
    """46 on the last Sunday of March, 50 on the last Sunday of October, else 48."""
    start, end = settlement_day_bounds(day)
    return int((end - start) / HALF_HOUR)


Within = DayRange  # read only these settlement days


def _where(sql, within: Within | None) -> str | None:
    if within is None:
        return None
    literal = sql.timestamp if isinstance(within.start, dt.datetime) else sql.date
    column = sql.q(within.column)
    return f"{column} >= {literal(within.start)} AND {column} < {literal(within.end)}"


def duplicate_keys(warehouse: Warehouse, table: str, dataset: Dataset, key: list[str], within: Within | None = None) -> Finding:
    """Passes when no two rows of `table` (of the days `within`, if given) share `key`."""
    sql = dialect(warehouse.dialect)
    types = {c.name: c.type for c in dataset.columns}
    key_terms = [sql.key(sql.q(c), types[c]) for c in key]
    sample = sql.row_text([(sql.q(c), types[c]) for c in key])
    (count, example), = warehouse.query(render(
        "duplicate_keys.sql", sql, table=warehouse.table_ref(table), key=key_terms, sample=f"MIN({sample})",
        where=_where(sql, within)))
    metadata = {"duplicate_keys": count, "key": ", ".join(key)}
    if count:
        return Finding(False, f"{count} key(s) of ({', '.join(key)}) have more than one row in {table},"
                              f" e.g. {example}", metadata | {"example": example})
    return Finding(True, f"one row per ({', '.join(key)}) in {table}", metadata)


def key_conflicts(warehouse: Warehouse, table: str, dataset: Dataset) -> Finding:
    """Passes when rows that share the natural key (versions included) also share every value: else the
    key misses a column (the keys resting on an assumption, registry.key_assumption, are watched so)."""
    sql = dialect(warehouse.dialect)
    types = {c.name: c.type for c in dataset.columns}
    present = warehouse.table_columns(table) or {}
    key = list(dataset.natural_key)
    values = [(sql.q(c), types[c]) for c in types if c not in key and c in present and c != "dataset"]
    (count, example), = warehouse.query(render(
        "key_conflicts.sql", sql, table=warehouse.table_ref(table),
        key=[sql.key(sql.q(c), types[c]) for c in key],
        sample=f"MIN({sql.row_text([(sql.q(c), types[c]) for c in key])})",
        fingerprint=sql.row_text(values)))
    metadata = {"conflicting_keys": count, "key": ", ".join(key), "assumption": dataset.key_assumption}
    if count:
        return Finding(False, f"{count} key(s) of ({', '.join(key)}) hold rows with different values in {table},"
                              f" e.g. {example}: the key may miss a column", metadata | {"example": example})
    return Finding(True, f"rows sharing ({', '.join(key)}) agree in {table}", metadata)


def settlement_day_gaps(
    warehouse: Warehouse, table: str, series_column: str | None = None, within: Within | None = None,
) -> Finding:
    """Half-hourly data: every settlement day (per series, e.g. MID's data provider) has periods within
    its 46, 48 or 50, and a day that is complete (its first and last period present) has all of them."""
    sql = dialect(warehouse.dialect)
    rows = warehouse.query(render(
        "period_counts.sql", sql, table=warehouse.table_ref(table),
        series_expr=sql.q(series_column) if series_column else "''",
        where=_where(sql, within)))
    bad = []
    for day, series, periods, first, last in rows:
        expected = periods_in_day(day)
        label = f"{day}{' ' + series if series else ''}"
        if first < 1 or last > expected:
            bad.append(f"{label}: periods {first}..{last} outside 1..{expected}")
        elif first == 1 and last == expected and periods != expected:
            bad.append(f"{label}: {periods} of {expected} periods")
    metadata = {"days_checked": len({r[0] for r in rows}), "bad_days": len(bad), "first_bad_days": bad[:MAX_LISTED_DAYS]}
    if bad:
        return Finding(False, f"{len(bad)} settlement day(s) with missing or impossible periods, first: {bad[0]}", metadata)
    return Finding(True, f"every complete settlement day has all its periods ({metadata['days_checked']} days)", metadata)
