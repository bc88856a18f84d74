"""User SQL on the DuckDB warehouse (`iris-pipeline query`): one read statement, on a read-only
connection with no file or network access, and the warehouse released before anything is printed."""

from __future__ import annotations

import os
import time
from pathlib import Path
import duckdb

from iris_pipeline.query_output import ResultSpill
from iris_pipeline.warehouse.base import QueryRefused, WarehouseError
from iris_pipeline.warehouse.duckdb_warehouse import connect_waiting

# SELECT, FROM, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE and table-valued PRAGMAs all parse as SELECT.
READ_STATEMENT_TYPES = frozenset({duckdb.StatementType.SELECT})
LOCKED_DOWN = {
    "enable_external_access": False,  # no COPY ... TO, read_text/read_csv of files, ATTACH, httpfs
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # and no SET to undo any of it
}
FETCH_ROWS = 10_000


def read_statement(sql: str) -> duckdb.Statement:
    """The one read statement `sql` holds, parsed; anything else is refused."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(_first_line(exc)) from None
    if not statements:
        raise QueryRefused("the query is empty: give one read statement, e.g. \"SELECT count(*) FROM iris_ingest_log\"")
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time, not {len(statements)}")
    statement = statements[0]
    if statement.type not in READ_STATEMENT_TYPES:
        raise QueryRefused(
            f"read-only: {statement.type.name} statements are refused"
            " (SELECT, FROM, WITH, DESCRIBE, SHOW and SUMMARIZE are accepted)"
        )
    return statement


def read_query(path: str | os.PathLike[str], sql: str, out: ResultSpill, *, timeout_s: float) -> int:
    """Run one read statement and spill its columns and rows to `out` (a temporary file, so the
    warehouse is not held while a slow consumer reads them). Returns the number of rows."""
    statement = read_statement(sql)  # refused before waiting for the warehouse
    path = Path(path)
    if not path.is_file():  # a reader never creates a warehouse (read_only=True fails on a missing file too)
        raise WarehouseError(
            f"no warehouse at {path.absolute()}: nothing has been loaded there yet"
            " (set IRIS_DUCKDB_PATH to the warehouse file, e.g. the project's data/warehouse.duckdb)"
        )
    try:
        con = connect_waiting(path, time.monotonic() + timeout_s, timeout_s, read_only=True, config=LOCKED_DOWN)
    except duckdb.Error as exc:
        raise WarehouseError(_first_line(exc)) from None
    try:
        result = con.execute(statement)
        out.set_columns([column[0] for column in result.description or ()])
        count = 0
        while rows := result.fetchmany(FETCH_ROWS):
            out.add_rows(rows)
            count += len(rows)
        return count
    except duckdb.PermissionException as exc:
        raise QueryRefused(_first_line(exc)) from None  # a file or URL the statement reads or writes
    except duckdb.Error as exc:
        raise WarehouseError(_first_line(exc)) from None  # the engine's message; its caret diagram is dropped
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
