import os
from pathlib import Path

import orjson
import pytest

from iris_pipeline.spool import Spool
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.dagster_process import REPO, VENV_BIN  # noqa: F401 - re-exported for tests

pytest_plugins = [
    "iris_pipeline_tests.conftest_amqp",  # the AMQP test broker
    "iris_pipeline_tests.conftest_bigquery",  # the BigQuery emulator
]


def body(records, double_encoded=True) -> bytes:
    raw = orjson.dumps(records)
    return orjson.dumps(raw.decode()) if double_encoded else raw


def freq_records(n=8, second=0):
    return [
        {"dataset": "FREQ", "measurementTime": f"2025-01-01T00:{i // 4:02d}:{(i % 4) * 15:02d}Z", "frequency": 50.0 + i / 100}
        for i in range(second, second + n)
    ]


@pytest.fixture
def spool(tmp_path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def warehouse_path(tmp_path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def warehouse(warehouse_path):
    with DuckDBWarehouse(warehouse_path) as wh:
        yield wh


@pytest.fixture
def pipeline_env(tmp_path, monkeypatch):
    """Environment of a pipeline process pointed at this test's spool and warehouse."""
    env = dict(os.environ)
    env.update(
        IRIS_SPOOL_DIR=str(tmp_path / "spool"),
        IRIS_DUCKDB_PATH=str(tmp_path / "warehouse.duckdb"),
        IRIS_WAREHOUSE="duckdb",
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    for key in ("IRIS_SPOOL_DIR", "IRIS_DUCKDB_PATH", "IRIS_WAREHOUSE"):
        monkeypatch.setenv(key, env[key])
    return env
