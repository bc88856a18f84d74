"""`iris-pipeline backfill` against a local server speaking the Insights API (BOD's one-hour window
included): a week of FUELINST, MID, BOD and FREQ loads every record once, and again adds nothing."""

import subprocess

import duckdb

from iris_pipeline_tests.conftest import VENV_BIN
from iris_pipeline_tests.fake_insights_api import FakeInsightsApi


def _backfill(env, *args):
    return subprocess.run([str(VENV_BIN / "iris-pipeline"), "backfill", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def _counts(path):
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("bmrs_fuelinst", "bmrs_mid", "bmrs_bod", "bmrs_freq")
        }


def test_a_week_of_four_datasets_loads_once_and_again_adds_nothing(pipeline_env, warehouse_path):
    week = ["--dataset", "FUELINST", "--dataset", "MID", "--dataset", "BOD", "--dataset", "FREQ",
            "--from", "2025-03-24", "--to", "2025-03-30"]  # ends on the 23-hour day the clocks go forward
    with FakeInsightsApi() as api:
        env = dict(pipeline_env, ELEXON_API_BASE_URL=api.base_url)
        first = _backfill(env, *week)
        assert first.returncode == 0, first.stdout + first.stderr
        counts = _counts(warehouse_path)
        again = _backfill(env, *week)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _counts(warehouse_path) == counts
        bod_requests = api.requests_to("/bmrs/api/v1/datasets/BOD/stream")
    hours = 6 * 24 + 23
    # every record once: 3 fuel types per 5 minutes, 2 providers and 2 units x 2 pairs per half hour,
    # a frequency reading every 15 s, over 6 days of 24 hours and one of 23
    assert counts == {"bmrs_fuelinst": hours * 12 * 3, "bmrs_mid": hours * 2 * 2, "bmrs_bod": hours * 2 * 4,
                      "bmrs_freq": hours * 240}
    assert all(r.status == 200 for r in bod_requests) and len(bod_requests) == 2 * hours  # one-hour windows, twice
    assert "BOD        2025-03-30  rows=184" in first.stdout  # 46 periods x 4
    assert first.stdout.count("\n") == 4 * 7


def test_an_unknown_dataset_or_a_reversed_range_is_refused(pipeline_env):
    assert _backfill(pipeline_env, "--dataset", "NOPE", "--from", "2025-01-01", "--to", "2025-01-01").returncode == 2
    reversed_range = _backfill(pipeline_env, "--dataset", "FREQ", "--from", "2025-01-02", "--to", "2025-01-01")
    assert reversed_range.returncode == 2 and "before" in reversed_range.stderr
