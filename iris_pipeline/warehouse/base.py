"""The warehouse interface the loader, the CLI and the Dagster assets share."""

from __future__ import annotations

import abc
import datetime as dt
import re
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import pyarrow as pa

LEDGER_TABLE = "iris_ingest_log"
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class WarehouseError(RuntimeError):
    pass


RangeBound = dt.date | dt.datetime  # a DATE column's range is in dates, a TIMESTAMP column's in UTC instants


def rows_outside(rows: pa.Table, column: str, start: RangeBound, end: RangeBound) -> int:
    """How many rows have no `column` value or one outside [start, end)."""
    import pyarrow.compute as pc

    if rows.num_rows == 0:
        return 0
    if column not in rows.column_names:
        return rows.num_rows
    values = rows[column]
    lo, hi = pa.scalar(start, values.type), pa.scalar(end, values.type)
    inside = pc.and_(pc.greater_equal(values, lo), pc.less(values, hi))
    return rows.num_rows - pc.sum(pc.fill_null(inside, False).cast(pa.int64())).as_py()


class QueryRefused(WarehouseError):
    """SQL a reader may not run: anything but one read statement, or file or network access."""


def valid_identifier(name: str) -> str:
    """`name`, checked to be a safe table or column name; each backend quotes it its own way
    (DuckDB `"name"`, GoogleSQL `` `name` ``). Input never becomes SQL any other way."""
    if not IDENTIFIER_RE.fullmatch(name):  # fullmatch: "$" alone would accept a trailing newline
        raise WarehouseError(f"invalid identifier {name[:60]!r}")
    return name


def evolved_type(existing: str | None, incoming: str) -> str:
    """A column's type once values of type `incoming` are stored in it: the least type that holds both.

    INT64 and FLOAT64 meet at FLOAT64; any other two different types meet at JSON (a 5 and an "n/a"
    become the JSON texts 5 and "n/a"). Types only ever widen, and the result does not depend on the
    order values arrive in, so how messages were batched never changes a table.
    """
    if existing is None or existing == incoming:
        return incoming
    if {existing, incoming} == {"INT64", "FLOAT64"}:
        return "FLOAT64"
    return "JSON"


class LoadedFile(NamedTuple):  # a tuple: a drain makes one per file, and dataclasses cost 5 µs each
    name: str
    rows: int
    sha256: str | None = None  # of the file's bytes: a later body under the same name is told apart


@dataclass(frozen=True)
class Batch:
    """Rows of one table and the ledger entries of the files they came from."""

    dataset: str
    table: str
    rows: pa.Table
    files: Sequence[LoadedFile]


@dataclass(frozen=True)
class TableLayout:
    """How a backend that partitions and clusters (BigQuery) lays a table out; DuckDB ignores it."""

    partition_column: str | None = None  # a DATE or TIMESTAMP column, partitioned by day
    cluster_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableFreshness:
    last_ingested_at: dt.datetime | None
    latest_reference_time: dt.datetime | None
    rows: int


class Warehouse(abc.ABC):
    """Typed tables of records plus the ledger of loaded files, written in one transaction."""

    # How much of a backlog the loader commits at once: DuckDB commits cheaply and often; BigQuery
    # allows about one write per table per minute, so it takes far bigger groups.
    commit_group_rows: int = 100_000
    commit_group_chunks: int = 16
    dialect: str = "duckdb"  # which of sql_templates.DIALECTS renders SQL for this backend

    @abc.abstractmethod
    def tables(self) -> set[str]:
        """Names of the tables (and views) in the target schema."""

    @abc.abstractmethod
    def table_columns(self, table: str) -> dict[str, str] | None:
        """Column name → registry type (TIMESTAMP, DATE, INT64, FLOAT64, BOOL, STRING, JSON); None if absent."""

    @abc.abstractmethod
    def ensure_table(self, table: str, columns: Mapping[str, str], layout: TableLayout | None = None) -> list[str]:
        """Create the table (laid out as `layout` says, where the backend can), or add missing columns
        and widen types. Returns the changes made."""

    def ensure_tables(
        self, tables: Mapping[str, Mapping[str, str]], layouts: Mapping[str, TableLayout] | None = None
    ) -> list[str]:
        """ensure_table for several tables (a backend may do them in one go)."""
        layouts = layouts or {}
        return [
            change for table, columns in tables.items() for change in self.ensure_table(table, columns, layouts.get(table))
        ]

    @abc.abstractmethod
    def loaded_files(self, dataset: str, names: Sequence[str]) -> dict[str, str | None]:
        """Which of these spool file names the ledger already holds for the dataset, each with the
        sha256 of the body it loaded (None for entries written before the ledger kept hashes)."""

    def loaded_files_many(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, str | None]]:
        """`loaded_files` for several datasets at once (dataset -> names), in one query where the
        backend can: a drain asks for dozens of datasets."""
        return {dataset: self.loaded_files(dataset, names) for dataset, names in wanted.items()}

    @abc.abstractmethod
    def append(self, dataset: str, table: str, rows: pa.Table, files: Sequence[LoadedFile]) -> list[LoadedFile]:
        """Insert rows and ledger entries of files not yet loaded, atomically. Returns the files it loaded."""

    def append_many(self, batches: Sequence[Batch]) -> list[list[LoadedFile]]:
        """`append` for several batches, in one transaction where the backend can (all or nothing).
        Returns, per batch, the files it loaded."""
        return [self.append(b.dataset, b.table, b.rows, b.files) for b in batches]

    @abc.abstractmethod
    def replace_range(self, table: str, column: str, start: RangeBound, end: RangeBound, rows: pa.Table) -> int:
        """Replace every row whose `column` lies in [start, end) with `rows`, atomically: re-running the
        same range never doubles anything (historic days from the Insights API). Every row must lie in
        the range (checked: a row outside it, or with no value, would survive the next replacement).
        Returns the number of rows inserted."""

    @abc.abstractmethod
    def native_columns(self, table: str) -> dict[str, str] | None:
        """Column name -> the backend's own type name (DATETIME, TIMESTAMP WITH TIME ZONE, ...), for
        adapting tables this project did not create; None if absent."""

    @abc.abstractmethod
    def create_view(self, name: str, select_sql: str) -> None:
        """Create or replace view `name` as `select_sql` (rendered from the package's templates only)."""

    @abc.abstractmethod
    def replace_range_with_select(
        self, table: str, columns: Mapping[str, str], layout: TableLayout | None,
        column: str, start: RangeBound, end: RangeBound, select_sql: str,
    ) -> int:
        """Make the rows of `select_sql` (rendered from the package's templates only) whose `column` lies in
        [start, end) the whole of that range of `table`, atomically, creating the table or adding columns
        first (`ensure_table`). Rows of the select outside the range are not taken. Returns the rows now
        in the range."""

    @abc.abstractmethod
    def ledger_datasets(self) -> set[str]:
        """Dataset codes with at least one file in the ledger."""

    def usage(self) -> dict[str, int]:
        """What this connection has cost so far (load jobs, bytes processed, ...), for run metadata."""
        return {}

    def freshness_many(self, items: Sequence[tuple[str, str, str | None]]) -> dict[str, TableFreshness]:
        """`freshness` for several (dataset, table, reference column), in one query where the backend can."""
        return {dataset: self.freshness(dataset, table, reference) for dataset, table, reference in items}

    @abc.abstractmethod
    def freshness(self, dataset: str, table: str, reference_column: str | None) -> TableFreshness:
        """When the dataset last loaded, and its newest reference time."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run one read statement (checks, tests) and return its rows; anything else is refused
        (QueryRefused): tables change only through the methods above."""

    @abc.abstractmethod
    def quote(self, name: str) -> str:
        """A validated identifier, quoted for this backend's SQL."""

    def qualified_name(self, table: str) -> str:
        """The table's full name for people and catalogues (Dagster's `dagster/table_name`)."""
        return f"main.{valid_identifier(table)}"

    def table_ref(self, table: str) -> str:
        """The table as a read statement names it (BigQuery qualifies it with project and dataset)."""
        return self.quote(table)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (and, for DuckDB, the writer lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
