"""One warehouse interface, two backends (DuckDB embedded, BigQuery production)."""

from iris_pipeline.warehouse.base import LEDGER_TABLE, Warehouse, WarehouseError

__all__ = ["LEDGER_TABLE", "Warehouse", "WarehouseError", "open_warehouse"]


def open_warehouse(settings) -> Warehouse:
    """The backend named by settings.warehouse (`IRIS_WAREHOUSE`)."""
    if settings.warehouse == "duckdb":
        from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

        return DuckDBWarehouse(settings.duckdb_path)
    raise WarehouseError(f"warehouse backend {settings.warehouse!r} is not available (expected 'duckdb')")
