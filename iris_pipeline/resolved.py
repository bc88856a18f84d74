"""The resolved MEL/MIL position: `bmrs_mels_resolved` and `bmrs_mils_resolved`.

IRIS sends the raw gate-closure and redeclaration files; the Insights API serves only the position
Elexon resolves from them. Both land in `bmrs_<code>_unified` (every declaration, each version kept);
these views apply Elexon's rule (docs/mil_mel_resolution.md in elexon-data/insights-docs) to it, so an
IRIS position and an API position compare. The rule, in the SQL of `sql/resolved_limits.sql`:

- at each instant of a BM unit, the covering declaration latest by the registry's order holds:
  notificationSequence, then notificationTime (Elexon's validity test), then, for a tie (the gate-closure
  file repeats a redeclaration with another timeTo/levelTo), the observation order of every "latest"
  (unified.latest_order);
- a held stretch keeps its declaration's levelFrom/levelTo, never interpolated, with its times moved;
- pieces are cut at settlement-period boundaries (UTC half-hours; settlementDate/Period from the piece's
  timeFrom in Europe/London) and merged only where consecutive pieces repeat one segment: the same
  notificationSequence, notificationTime, levelFrom and levelTo (the API's already resolved rows and the
  raw file they came from merge back into one piece);
- a declaration with timeTo <= timeFrom (or either missing) covers no instant and is ignored; one
  longer than HORIZON_DAYS is resolved over its first HORIZON_DAYS only (each settlement period of a
  declaration is a row inside the query: a timeTo in the year 9999 would exceed BigQuery's array limit
  and fail the whole view).

A unit is its Elexon id (bmUnit), or its National Grid id where a row has no Elexon id.
Framework-free: the Dagster assets and the tests call these.
"""

from __future__ import annotations

from iris_pipeline.registry import Dataset
from iris_pipeline.sql_templates import dialect, render
from iris_pipeline.unified import RESOLVED, latest_order, unified_name
from iris_pipeline.warehouse.base import Warehouse

HORIZON_DAYS = 400  # longer than any real declaration; see the module docstring
# The view's columns and their registry types, in order.
RESOLVED_COLUMNS: dict[str, str] = {
    "bmUnit": "STRING", "nationalGridBmUnit": "STRING", "settlementDate": "DATE", "settlementPeriod": "INT64",
    "timeFrom": "TIMESTAMP", "timeTo": "TIMESTAMP", "levelFrom": "INT64", "levelTo": "INT64",
    "notificationSequence": "INT64", "notificationTime": "TIMESTAMP", "source": "STRING", "_source_file": "STRING",
}
# What makes two consecutive pieces one resolved piece (besides the unit and the settlement period).
_SEGMENT = ("levelFrom", "levelTo", "notificationSequence", "notificationTime")
# Of the winning declaration (of a merged piece: of its first part).
_PROVENANCE = ("bmUnit", "nationalGridBmUnit", "source", "_source_file")
# What each piece carries from its declaration: the output and everything latest_order reads.
_CARRIED = ("bmUnit", "nationalGridBmUnit", "timeFrom", "timeTo", "levelFrom", "levelTo", "notificationSequence",
            "notificationTime", "source", "_observed_at", "_ingested_at", "_source_file", "_record_index")


def _check(dataset: Dataset) -> Dataset:
    if dataset.code not in RESOLVED:
        raise ValueError(f"{dataset.code}: only {', '.join(RESOLVED)} have a resolved position")
    return dataset


def resolved_name(dataset: Dataset) -> str:
    return f"bmrs_{_check(dataset).code.lower()}_resolved"


def resolved_view_sql(warehouse: Warehouse, dataset: Dataset) -> str:
    sql = dialect(warehouse.dialect)
    q = sql.q
    return render(
        "resolved_limits.sql", sql,
        unified=warehouse.table_ref(unified_name(_check(dataset))),
        unit=f"COALESCE(r.{q('bmUnit')}, {sql.string('NG:')} || r.{q('nationalGridBmUnit')})",
        carried=[q(c) for c in _CARRIED],
        order=latest_order(dataset, sql, "p."),
        segment=[q(c) for c in _SEGMENT],
        provenance=[q(c) for c in _PROVENANCE],
        horizon_periods=HORIZON_DAYS * 48,
    )


def create_resolved_view(warehouse: Warehouse, dataset: Dataset) -> str:
    """Create (or replace) the dataset's resolved view over its unified view, which must exist
    (unified.create_unified_view)."""
    if unified_name(_check(dataset)) not in warehouse.tables():
        raise ValueError(f"{dataset.code}: {unified_name(dataset)} does not exist yet (create_unified_view first)")
    name = resolved_name(dataset)
    warehouse.create_view(name, resolved_view_sql(warehouse, dataset))
    return name
