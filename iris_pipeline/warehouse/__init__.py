"""One warehouse interface, two backends (DuckDB embedded, BigQuery production)."""

from iris_pipeline.warehouse.base import LEDGER_TABLE, QueryRefused, Warehouse, WarehouseError

__all__ = ["LEDGER_TABLE", "QueryRefused", "Warehouse", "WarehouseError", "open_warehouse", "read_query"]


def open_warehouse(settings) -> Warehouse:
    """The backend named by settings.warehouse (`IRIS_WAREHOUSE`)."""
    if settings.warehouse == "duckdb":
        from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

        return DuckDBWarehouse(settings.duckdb_path)
    if settings.warehouse == "bigquery":
        from iris_pipeline.warehouse.bigquery_client import make_client
        from iris_pipeline.warehouse.bigquery_warehouse import BigQueryWarehouse

        client = make_client(settings.bq_project, settings.bq_location, settings.bigquery_emulator_host)
        return BigQueryWarehouse(
            client, settings.bq_dataset, location=settings.bq_location,
            min_flush_interval_s=settings.bq_min_flush_seconds, max_flush_rows=settings.bq_max_flush_rows,
        )
    raise WarehouseError(f"warehouse backend {settings.warehouse!r} is not available (expected 'duckdb' or 'bigquery')")


def read_query(settings, sql: str, out, *, timeout_s: float) -> int:
    """Run one read-only statement of a user's and spill its columns and rows to `out` (a
    query_output.ResultSpill); the warehouse is released when this returns. Returns the number of rows."""
    if settings.warehouse == "duckdb":
        from iris_pipeline.warehouse.duckdb_read import read_query as duckdb_read_query

        return duckdb_read_query(settings.duckdb_path, sql, out, timeout_s=timeout_s)
    if settings.warehouse == "bigquery":
        from iris_pipeline.warehouse.bigquery_read import read_query as bigquery_read_query

        return bigquery_read_query(settings, sql, out, timeout_s=timeout_s)
    raise WarehouseError(f"warehouse backend {settings.warehouse!r} is not available (expected 'duckdb' or 'bigquery')")
