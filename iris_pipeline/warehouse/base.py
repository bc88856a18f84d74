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


class QueryRefused(WarehouseError):
    """SQL a reader may not run: anything but one read statement, or file or network access."""


def identifier(name: str) -> str:
    """A validated, quoted SQL identifier. Input never becomes SQL any other way."""
    if not IDENTIFIER_RE.fullmatch(name):  # fullmatch: "$" alone would accept a trailing newline
        raise WarehouseError(f"invalid identifier {name[:60]!r}")
    return f'"{name}"'


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
class TableFreshness:
    last_ingested_at: dt.datetime | None
    latest_reference_time: dt.datetime | None
    rows: int


class Warehouse(abc.ABC):
    """Typed tables of records plus the ledger of loaded files, written in one transaction."""

    @abc.abstractmethod
    def tables(self) -> set[str]:
        """Names of the tables (and views) in the target schema."""

    @abc.abstractmethod
    def table_columns(self, table: str) -> dict[str, str] | None:
        """Column name → registry type (TIMESTAMP, DATE, INT64, FLOAT64, BOOL, STRING, JSON); None if absent."""

    @abc.abstractmethod
    def ensure_table(self, table: str, columns: Mapping[str, str]) -> list[str]:
        """Create the table, or add missing columns and widen types. Returns the changes made."""

    def ensure_tables(self, tables: Mapping[str, Mapping[str, str]]) -> list[str]:
        """ensure_table for several tables (a backend may do them in one go)."""
        return [change for table, columns in tables.items() for change in self.ensure_table(table, columns)]

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
    def freshness(self, dataset: str, table: str, reference_column: str | None) -> TableFreshness:
        """When the dataset last loaded, and its newest reference time."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run SQL on this (writing) connection, for checks and tests; a user's SQL goes to read_query."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (and, for DuckDB, the writer lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
