"""Resources, and the one place that picks the local (DuckDB) or production (BigQuery) warehouse."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import dagster as dg

from iris_pipeline.config import Settings
from iris_pipeline.spool import Spool
from iris_pipeline.warehouse import Warehouse, open_warehouse


class SpoolResource(dg.ConfigurableResource):
    """The on-disk spool the IRIS client writes and the loader drains."""

    root: str

    def get(self) -> Spool:
        return Spool(self.root)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse the `bmrs_*_iris` tables live in; assets never branch on the backend."""

    backend: str = "duckdb"
    duckdb_path: str = "data/warehouse.duckdb"
    bq_project: str | None = None
    bq_dataset: str = "uk_energy_prod"
    bq_location: str = "EU"

    @contextmanager
    def open(self) -> Iterator[Warehouse]:
        settings = Settings(
            warehouse=self.backend,
            duckdb_path=self.duckdb_path,
            bq_project=self.bq_project,
            bq_dataset=self.bq_dataset,
            bq_location=self.bq_location,
        )
        with open_warehouse(settings) as warehouse:
            yield warehouse


def resources_from_env(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    settings = settings or Settings.from_env()
    return {
        "spool": SpoolResource(root=str(settings.spool_dir)),
        "warehouse": WarehouseResource(
            backend=settings.warehouse,
            duckdb_path=str(settings.duckdb_path),
            bq_project=settings.bq_project,
            bq_dataset=settings.bq_dataset,
            bq_location=settings.bq_location,
        ),
    }
