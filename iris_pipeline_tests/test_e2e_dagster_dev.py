"""End to end, as `make dev` runs it: the simulator and a real `dagster dev`, rows arriving within a minute,
and the assets visible in the web UI (headless Chromium)."""

import time

import pytest

from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.dagster_process import (
    VENV_BIN, chromium_dom, graphql, is_up, start, start_dagster_dev, stop,
)


def _materialized(port, key):
    data = graphql(
        port,
        '{ assetOrError(assetKey: {path: ["%s"]}) { ... on Asset { assetMaterializations(limit: 1) { timestamp } } } }'
        % key,
    )
    return bool((data.get("assetOrError") or {}).get("assetMaterializations"))


@pytest.fixture
def dagster_dev(tmp_path, pipeline_env):
    log = open(tmp_path / "dev.log", "wb")
    feed = start([str(VENV_BIN / "iris-pipeline"), "simulate", "--backfill-minutes", "10"], pipeline_env, log)
    dev, port = start_dagster_dev(tmp_path / "dagster_home", pipeline_env, log)
    try:
        yield port, tmp_path
    finally:
        stop(feed)
        stop(dev)
        log.close()


@pytest.mark.timeout(360)
def test_make_dev_shows_rows_arriving_within_a_minute(dagster_dev):
    port, tmp_path = dagster_dev
    started = time.monotonic()
    while not (is_up(port) and _materialized(port, "bmrs_freq_iris")):
        assert time.monotonic() - started < 120, (tmp_path / "dev.log").read_text()[-3000:]
        time.sleep(2)
    first_rows_after = time.monotonic() - started
    assert first_rows_after < 90, f"first rows after {first_rows_after:.0f}s"  # includes dagster dev start-up

    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as wh:
        assert wh.query("SELECT count(*) FROM bmrs_freq_iris")[0][0] > 0
        assert wh.query("SELECT count(DISTINCT dataset) FROM iris_ingest_log")[0][0] >= 5

    dom = chromium_dom(f"http://127.0.0.1:{port}/assets/bmrs_freq_iris", tmp_path / "chromium")
    assert "bmrs_freq_iris" in dom and "as received from Elexon IRIS" in dom

    # the unified layer's views are created by the automation sensor, unasked
    # (the step creates the unified views, then the latest, then the resolved ones: wait for the last)
    while not (_materialized(port, "bmrs_freq_unified") and _materialized(port, "bmrs_mels_resolved")):
        assert time.monotonic() - started < 240, (tmp_path / "dev.log").read_text()[-3000:]
        time.sleep(3)
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as wh:
        (rows, sources), = wh.query("SELECT count(*), string_agg(DISTINCT source) FROM bmrs_freq_unified")
        assert rows > 0 and sources == "IRIS"
        assert {"bmrs_disebsp_latest", "bmrs_mid_unified"} <= wh.tables()  # created by the automation
        assert wh.query("SELECT count(*) FROM bmrs_mels_resolved")[0][0] > 0  # the simulator sends MELS
