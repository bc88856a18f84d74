"""A historic backfill launched the way the web UI launches it (its GraphQL mutation) on a real
`dagster dev`, against a local server speaking the Insights API; the partitioned asset is in the UI."""

import datetime as dt
import time

import pytest

from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.dagster_process import chromium_dom, graphql, is_up, start_dagster_dev, stop
from iris_pipeline_tests.fake_insights_api import FakeInsightsApi

DAYS = ["2025-03-28", "2025-03-29", "2025-03-30"]
LAUNCH = """mutation {
  launchPartitionBackfill(backfillParams: {
    partitionNames: [%s],
    assetSelection: [{path: ["bmrs_freq_api_extract"]}, {path: ["bmrs_freq"]}]
  }) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } }
}"""


def _status(port, backfill_id):
    data = graphql(port, '{ partitionBackfillOrError(backfillId: "%s") { ... on PartitionBackfill { status } } }' % backfill_id)
    return (data.get("partitionBackfillOrError") or {}).get("status")


@pytest.mark.timeout(300)
def test_a_backfill_launched_like_the_ui_does_loads_each_day_once(tmp_path, pipeline_env):
    log = open(tmp_path / "dev.log", "wb")
    with FakeInsightsApi() as api:
        env = pipeline_env | {"ELEXON_API_BASE_URL": api.base_url, "IRIS_HISTORIC_START": "2025-03-01"}
        dev, port = start_dagster_dev(tmp_path / "dagster_home", env, log)
        try:
            deadline = time.monotonic() + 120
            while not is_up(port):
                assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-3000:]
                time.sleep(1)
            launched = graphql(port, LAUNCH % ", ".join(f'"{d}"' for d in DAYS))["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            deadline = time.monotonic() + 200
            while (status := _status(port, launched["backfillId"])) not in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED"):
                assert time.monotonic() < deadline, f"backfill {status}\n" + (tmp_path / "dev.log").read_text()[-3000:]
                time.sleep(2)
            assert status == "COMPLETED_SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]

            dom = chromium_dom(f"http://127.0.0.1:{port}/assets/bmrs_freq?view=partitions", tmp_path / "chromium")
            assert "bmrs_freq" in dom and "Partition" in dom
        finally:
            stop(dev)
            log.close()
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as wh:
        per_day = dict(wh.query(
            "SELECT CAST(timezone('Europe/London', measurementTime) AS DATE), count(*) FROM bmrs_freq GROUP BY 1"))
    assert per_day == {dt.date(2025, 3, 28): 5760, dt.date(2025, 3, 29): 5760, dt.date(2025, 3, 30): 23 * 240}
