"""Fixtures for the BigQuery backend: one real `bqemulator` server per test session, a dataset per test."""

from __future__ import annotations

import itertools
import os

import pytest

from iris_pipeline_tests.bigquery_emulator import EMULATOR_PYTHON, Emulator, start_emulator

_datasets = itertools.count()


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory) -> Emulator:
    if not EMULATOR_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{EMULATOR_PYTHON} is missing: `make test` builds it (scripts/bqemulator/env.sh)")
        pytest.skip(f"{EMULATOR_PYTHON} is missing: run scripts/bqemulator/env.sh (make test does)")
    emulator = start_emulator(tmp_path_factory.mktemp("bqemulator") / "emulator.log")
    yield emulator
    emulator.stop()


@pytest.fixture
def bq_dataset(request) -> str:
    """A dataset name of this test's own, so tests sharing the emulator never see each other's tables."""
    return f"t{next(_datasets)}_{os.getpid()}"


@pytest.fixture
def bigquery_env(bigquery_emulator, bq_dataset, pipeline_env, monkeypatch):
    """Environment of a pipeline process writing to this test's dataset on the emulator."""
    values = {
        "IRIS_WAREHOUSE": "bigquery",
        "BIGQUERY_EMULATOR_HOST": bigquery_emulator.host,
        "BQ_PROJECT": bigquery_emulator.project,
        "BQ_DATASET": bq_dataset,
        "IRIS_BQ_MIN_FLUSH_SECONDS": "0",  # the spacing itself has its own test
    }
    pipeline_env.update(values)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return pipeline_env


@pytest.fixture(params=["duckdb", "bigquery"])
def any_warehouse(request, tmp_path):
    """An open warehouse of each backend in turn: a DuckDB file, and a dataset on the emulator."""
    if request.param == "duckdb":
        from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

        warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=5)
    else:
        emulator = request.getfixturevalue("bigquery_emulator")
        from iris_pipeline.warehouse.bigquery_client import make_client
        from iris_pipeline.warehouse.bigquery_warehouse import BigQueryWarehouse

        warehouse = BigQueryWarehouse(make_client(emulator.project, "EU", emulator.host),
                                      request.getfixturevalue("bq_dataset"), min_flush_interval_s=0)
    with warehouse:
        yield warehouse
