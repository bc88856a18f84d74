"""Resources, and the one place that picks the local (DuckDB) or production (BigQuery) warehouse.

Both warehouse resources are bound under the key `warehouse` and expose `open()`; the assets never
branch on the backend.
"""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from typing import Iterator

import dagster as dg
from dagster_gcp import BigQueryResource
from pydantic import Field

from iris_pipeline.config import Settings
from iris_pipeline.spool import Spool
from iris_pipeline.warehouse import Warehouse

WAREHOUSE_POOL = "iris_warehouse"  # the Dagster concurrency pool every warehouse writer takes a slot of
DERIVED_POOL = "iris_derived"  # BigQuery: the views and dedup tables, one writer at a time among themselves


def derived_pool(storage_kind: str) -> str:
    """The pool of the steps that build views and dedup tables from the loaded tables. DuckDB admits one
    writer process, so they queue with the loads; BigQuery does not, and there they must not hold up
    the real-time ingest (creating every view is minutes of DDL jobs on a first start)."""
    return WAREHOUSE_POOL if storage_kind == "duckdb" else DERIVED_POOL


class SpoolResource(dg.ConfigurableResource):
    """The on-disk spool the IRIS client writes and the loader drains."""

    root: str

    def get(self) -> Spool:
        return Spool(self.root)


class DuckDBWarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB warehouse file (one writer process at a time)."""

    path: str = "data/warehouse.duckdb"

    @contextmanager
    def open(self) -> Iterator[Warehouse]:
        from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

        with DuckDBWarehouse(self.path) as warehouse:
            yield warehouse


class BigQueryWarehouseResource(BigQueryResource):
    """The production BigQuery dataset. Credentials as `BigQueryResource` takes them (Application Default
    Credentials, or `gcp_credentials`); with `emulator_host` set, anonymous credentials and that endpoint."""

    dataset: str = Field(default="uk_energy_prod", description="BigQuery dataset holding the tables (BQ_DATASET)")
    emulator_host: str | None = Field(default=None, description="BIGQUERY_EMULATOR_HOST, e.g. http://127.0.0.1:9050")
    min_flush_seconds: float = Field(default=60.0, description="at most one write per table per this many seconds")
    max_flush_rows: int = Field(default=1_000_000, description="a backlog goes up in flushes of at most this many rows")

    def get_object_to_set_on_execution_context(self):
        return self  # BigQueryResource would set a client generator; the assets call open()

    @contextmanager
    def open(self) -> Iterator[Warehouse]:
        from iris_pipeline.warehouse.bigquery_client import make_client
        from iris_pipeline.warehouse.bigquery_warehouse import BigQueryWarehouse

        location = self.location or "EU"
        with contextlib.ExitStack() as stack:
            if self.emulator_host:
                client = make_client(self.project, location, self.emulator_host)
            else:  # BigQueryResource's own client: it writes gcp_credentials to a temporary file
                client = stack.enter_context(self.get_client())
            with BigQueryWarehouse(
                client, self.dataset, location=location, min_flush_interval_s=self.min_flush_seconds,
                max_flush_rows=self.max_flush_rows,
            ) as warehouse:
                yield warehouse


class InsightsApiResource(dg.ConfigurableResource):
    """Elexon's Insights API (ELEXON_API_BASE_URL), for the historic assets."""

    base_url: str = "https://data.elexon.co.uk/bmrs/api/v1"

    @contextmanager
    def client(self):
        from iris_pipeline.insights_api import InsightsClient

        with InsightsClient(self.base_url) as client:
            yield client


def warehouse_resource(settings: Settings) -> dg.ConfigurableResource:
    """The warehouse resource for this environment: DuckDB locally, BigQuery in production."""
    if settings.warehouse == "bigquery":
        return BigQueryWarehouseResource(
            project=dg.EnvVar("BQ_PROJECT") if settings.bq_project else None,
            location=settings.bq_location,
            dataset=settings.bq_dataset,
            emulator_host=settings.bigquery_emulator_host,
            min_flush_seconds=settings.bq_min_flush_seconds,
            max_flush_rows=settings.bq_max_flush_rows,
            # a service-account key (base64 JSON), if one is used instead of Application Default Credentials
            gcp_credentials=dg.EnvVar("BQ_CREDENTIALS") if settings.bq_credentials_set else None,
        )
    return DuckDBWarehouseResource(path=str(settings.duckdb_path))


def resources_from_env(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    settings = settings or Settings.from_env()
    return {
        "spool": SpoolResource(root=str(settings.spool_dir)),
        "warehouse": warehouse_resource(settings),
        "insights_api": InsightsApiResource(base_url=settings.elexon_api_base_url),
    }
