"""The warehouse interface the loader, the CLI and the Dagster assets share."""

from __future__ import annotations

import abc
import datetime as dt
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

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


def evolved_type(existing: str | None, incoming: str) -> str | None:
    """A column's type once values of type `incoming` are stored in it: INT64 and FLOAT64 meet at
    FLOAT64 (never narrowed), a new column takes `incoming`, any other change is refused (None)."""
    if existing is None or existing == incoming:
        return incoming
    if {existing, incoming} == {"INT64", "FLOAT64"}:
        return "FLOAT64"
    return None


@dataclass(frozen=True)
class LoadedFile:
    name: str
    rows: int


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
    def loaded_files(self, dataset: str, names: Sequence[str]) -> set[str]:
        """Which of these spool file names the ledger already holds for the dataset."""

    @abc.abstractmethod
    def append(self, dataset: str, table: str, rows: pa.Table, files: Sequence[LoadedFile]) -> list[LoadedFile]:
        """Insert rows and ledger entries of files not yet loaded, atomically. Returns the files it loaded."""

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
