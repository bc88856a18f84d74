"""One timeline per dataset: the unified and latest views, and the deduplicated tables built from them.

Framework-free: the Dagster assets and the tests call these. The SQL is in `sql/` (templates for both
backends, see sql_templates); this module decides what goes into them from the registry and from the
columns the warehouse actually has, so a historic table in a legacy layout (DATETIME or text times,
missing columns, other `_`-prefixed columns) is adapted rather than refused.

  bmrs_<code>_unified  every registered dataset: history (where the Insights API serves it) and IRIS,
                       one row per natural key (vintage datasets: per version), latest by the
                       registry's order (registry.MESSAGE_ORDER), with a `source` column.
  bmrs_<code>_latest   every vintage dataset but MELS/MILS: the latest version per fact.
  bmrs_<code>_dedup    FUELINST and MID (any keyed dataset works): the unified rows as a table, one
                       partition per settlement day, replaced a day at a time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from iris_pipeline.codec import META_COLUMNS
from iris_pipeline.historic import day_range
from iris_pipeline.insights_api import settlement_day_bounds
from iris_pipeline.registry import Dataset, Registry
from iris_pipeline.sql_templates import Dialect, dialect, render
from iris_pipeline.warehouse.base import TableLayout, Warehouse, evolved_type

SOURCE_COLUMN = "source"
OBSERVED_COLUMN = "_observed_at"
HISTORIC, IRIS = "HISTORIC", "IRIS"
# MELS/MILS are not "latest per key": their resolved position is Elexon's interval rule (resolved.py).
RESOLVED = ("MELS", "MILS")
DEDUP = ("FUELINST", "MID")
# Per dedup table, flag columns (name, dialect-neutral SQL over the unified row `u`, description).
DEDUP_FLAGS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "MID": (("missingPrice", "(u.price = 0 AND u.volume = 0)",
             "No trades in the period: Elexon sends price 0 with volume 0 (N2EX almost always), which is"
             " missing data, not a price of £0/MWh."),),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def unified_name(dataset: Dataset) -> str:
    return f"bmrs_{dataset.code.lower()}_unified"


def latest_name(dataset: Dataset) -> str:
    return f"bmrs_{dataset.code.lower()}_latest"


def dedup_name(dataset: Dataset) -> str:
    return f"bmrs_{dataset.code.lower()}_dedup"


def has_history(dataset: Dataset) -> bool:
    return dataset.api is not None


def latest_datasets(registry: Registry) -> list[Dataset]:
    return [ds for ds in registry if ds.key_kind == "vintage" and ds.code not in RESOLVED]


def dedup_datasets(registry: Registry, codes=DEDUP) -> list[Dataset]:
    return [registry[code] for code in codes if registry[code].key_kind != "record"]


def unified_columns(dataset: Dataset) -> dict[str, str]:
    """The unified view's columns and their registry types: the dataset's, then the provenance ones."""
    return ({c.name: c.type for c in dataset.columns} | {SOURCE_COLUMN: "STRING", OBSERVED_COLUMN: "TIMESTAMP"}
            | META_COLUMNS)


# --- ordering: the registry's "latest", written once --------------------------------------------

def latest_order(dataset: Dataset, sql: Dialect, prefix: str = "") -> list[str]:
    """ORDER BY terms that put the latest row first: the dataset's version terms, then MESSAGE_ORDER."""
    q = lambda name: prefix + sql.q(name)  # noqa: E731

    def term_sql(term) -> str:
        if term.ranks:
            whens = " ".join(f"WHEN {sql.string(v)} THEN {i + 1}" for i, v in enumerate(term.ranks))
            return f"CASE {q(term.column)} {whens} ELSE 0 END DESC"
        return f"{q(term.column)} DESC"  # NULLs last on both backends

    # A version only IRIS carries (MID's source file serial) cannot compare an IRIS row with a historic
    # one: it orders IRIS copies after the observation time has spoken.
    iris_only = {c.name for c in dataset.columns if c.iris_only}
    return [term_sql(t) for t in dataset.version_order if t.column not in iris_only] + [
        f"{q(OBSERVED_COLUMN)} DESC",
        f"CASE {q(SOURCE_COLUMN)} WHEN {sql.string(HISTORIC)} THEN 1 ELSE 0 END DESC",
    ] + [term_sql(t) for t in dataset.version_order if t.column in iris_only] + [
        f"{q('_ingested_at')} DESC",
        f"{q('_source_file')} DESC",
        f"{q('_record_index')} DESC",
    ]


def partition_terms(dataset: Dataset, columns: list[str], sql: Dialect, prefix: str = "") -> list[str]:
    types = {c.name: c.type for c in dataset.columns}
    return [sql.key(prefix + sql.q(c), types[c]) for c in columns]


def fact_key(dataset: Dataset) -> list[str]:
    """What one unified row stands for: the natural key, or for a keyless dataset the whole record."""
    return list(dataset.natural_key) or [c.name for c in dataset.columns]


# --- the unified view --------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceSelect:
    label: str
    ref: str
    columns: list[tuple[str, str]]  # (output column, expression)
    observed_at: str


def _sources(warehouse: Warehouse, dataset: Dataset) -> list[tuple[str, str, dict[str, str]]]:
    """(label, table, native columns) of the dataset's tables that exist: IRIS, then history."""
    tables = [(IRIS, dataset.table_name)] + ([(HISTORIC, dataset.historic_table_name)] if has_history(dataset) else [])
    return [(label, table, native) for label, table in tables if (native := warehouse.native_columns(table))]


def view_types(warehouse: Warehouse, dataset: Dataset, sources=None) -> dict[str, str]:
    """The unified view's columns and types: the registry's, widened where a source table widened a
    column (a fraction in an INT64 field makes it FLOAT64; the view must not round it back).
    `sources`: `_sources(...)` when the caller read them already (on BigQuery each is an API call)."""
    sql = dialect(warehouse.dialect)
    types = unified_columns(dataset)
    for _, _, native in sources if sources is not None else _sources(warehouse, dataset):
        folded = {name.lower(): kind for name, kind in native.items()}
        for name, wanted in types.items():
            have = sql.registry_type(folded.get(name.lower(), ""))
            if have and evolved_type(wanted, have) == have:
                types[name] = have
    return types


def _source_select(sql: Dialect, table_ref: str, table: str, label: str, native: dict[str, str],
                   types: dict[str, str]) -> SourceSelect:
    by_folded = {name.lower(): name for name in native}
    columns = []
    for name, wanted in types.items():
        if name in (SOURCE_COLUMN, OBSERVED_COLUMN):
            continue
        actual = by_folded.get(name.lower())
        have = sql.registry_type(native[actual]) if actual else None
        if actual is None:
            expr = sql.null(wanted)
        elif have == wanted:
            expr = sql.q(actual)
        elif have and evolved_type(have, wanted) == wanted:  # another source widened it: widen this one too
            expr = sql.widen(sql.q(actual), have, wanted)
        else:  # a legacy layout: converted, NULL where a value does not convert
            expr = sql.convert(sql.q(actual), native[actual], wanted)
        if name in META_COLUMNS and expr != sql.q(actual or name):
            # provenance a legacy table lacks or spells otherwise (the dedup tables require it)
            expr = f"COALESCE({expr}, {_meta_fallback(sql, name, label, table)})"
        columns.append((name, expr))
    exprs = dict(columns)
    observed = (f"COALESCE({sql.file_time(exprs['_source_file'])}, {exprs['_ingested_at']})" if label == IRIS
                else exprs["_ingested_at"])
    return SourceSelect(label, table_ref, columns, observed)


def _meta_fallback(sql: Dialect, name: str, label: str, table: str) -> str:
    return {"_source_file": sql.string(f"{label.lower()}:{table}"), "_record_index": "0",
            "_ingested_at": sql.timestamp(_EPOCH)}[name]


def unified_view_sql(warehouse: Warehouse, dataset: Dataset) -> str:
    """The view's SELECT over the sources that exist (`ensure_sources` makes sure both do)."""
    sql = dialect(warehouse.dialect)
    found = _sources(warehouse, dataset)  # read once: the types and the selects both need them
    types = view_types(warehouse, dataset, found)
    sources = [_source_select(sql, warehouse.table_ref(table), table, label, native, types)
               for label, table, native in found]
    if not sources:
        raise ValueError(f"{dataset.code}: neither {dataset.table_name} nor {dataset.historic_table_name} exists")
    return render(
        "unified_view.sql", sql, sources=sources,
        partition=partition_terms(dataset, fact_key(dataset), sql, "r."),
        order=latest_order(dataset, sql, "r."),
        output=[sql.q(c) for c in unified_columns(dataset)],
    )


def ensure_sources(warehouse: Warehouse, dataset: Dataset) -> list[str]:
    """Create the dataset's IRIS and historic tables, empty, where they do not exist yet, so that its
    view always reads both and never needs re-creating when the first history or message lands.
    An existing table is left as it is (a legacy one too: the view adapts to it)."""
    columns = {c.name: c.type for c in dataset.columns}
    layout = TableLayout(dataset.partition_column, dataset.cluster_columns)
    tables = [dataset.table_name] + ([dataset.historic_table_name] if has_history(dataset) else [])
    return [change for table in tables if warehouse.table_columns(table) is None
            for change in warehouse.ensure_table(table, columns, layout)]


def create_unified_view(warehouse: Warehouse, dataset: Dataset) -> str:
    ensure_sources(warehouse, dataset)
    name = unified_name(dataset)
    warehouse.create_view(name, unified_view_sql(warehouse, dataset))
    return name


def latest_view_sql(warehouse: Warehouse, dataset: Dataset) -> str:
    sql = dialect(warehouse.dialect)
    return render(
        "latest_view.sql", sql, unified=warehouse.table_ref(unified_name(dataset)),
        partition=partition_terms(dataset, list(dataset.latest_key), sql, "r."),
        order=latest_order(dataset, sql, "r."),
        output=[sql.q(c) for c in unified_columns(dataset)],
    )


def create_latest_view(warehouse: Warehouse, dataset: Dataset) -> str:
    name = latest_name(dataset)
    warehouse.create_view(name, latest_view_sql(warehouse, dataset))
    return name


# --- deduplicated tables ------------------------------------------------------------------------

def dedup_columns(warehouse: Warehouse, dataset: Dataset) -> dict[str, str]:
    """The dedup table's columns beyond the provenance ones every table gets (ensure_table adds those)."""
    columns = view_types(warehouse, dataset) | {name: "BOOL" for name, _, _ in DEDUP_FLAGS.get(dataset.code, ())}
    return {name: kind for name, kind in columns.items() if name not in META_COLUMNS}


def _key_bounds(sql: Dialect, dataset: Dataset, days) -> list[tuple[str, str, str]]:
    """Bounds on a time column of the natural key, a day wider than the settlement days: a filter on a
    column the view's window is partitioned by reaches the tables (FUELINST's days are by settlementDate,
    its key is startTime: without this, every refresh of today would read the whole history)."""
    if days.column in dataset.natural_key:
        return []
    margin = dt.timedelta(days=1)
    start, end = (days.start, days.end) if isinstance(days.start, dt.datetime) else (
        settlement_day_bounds(days.first)[0], settlement_day_bounds(days.last)[1])
    return [(c, sql.timestamp(start - margin), sql.timestamp(end + margin)) for c in dataset.natural_key
            if (col := dataset.column(c)) and col.type == "TIMESTAMP"][:1]


def replace_dedup_days(warehouse: Warehouse, dataset: Dataset, first: dt.date, last: dt.date) -> int:
    """Make settlement days first..last of `bmrs_<code>_dedup` the unified view's rows for them, in one
    transaction. Returns the rows those days now hold."""
    sql = dialect(warehouse.dialect)
    days = day_range(dataset, first, last)
    bound = sql.date if isinstance(days.start, dt.date) and not isinstance(days.start, dt.datetime) else sql.timestamp
    select = render(
        "dedup_select.sql", sql, unified=warehouse.table_ref(unified_name(dataset)), day_column=days.column,
        first=bound(days.start), end=bound(days.end), key_bounds=_key_bounds(sql, dataset, days),
        flags=[(name, expr) for name, expr, _ in DEDUP_FLAGS.get(dataset.code, ())],
    )
    layout = TableLayout(dataset.partition_column, dataset.cluster_columns)
    return warehouse.replace_range_with_select(
        dedup_name(dataset), dedup_columns(warehouse, dataset), layout, days.column, days.start, days.end, select)
