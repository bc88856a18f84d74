"""Run retention on a real instance configured by the project's dagster.yaml: old finished runs of the
frequent jobs go, recent ones, runs in flight and other jobs' runs stay."""

import datetime as dt
import logging
import shutil
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry

from iris_pipeline.defs.run_retention import purge_runs
from iris_pipeline_tests.dagster_process import REPO

NOW = dt.datetime.now(dt.timezone.utc)
S = dg.DagsterRunStatus


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _run(instance, job, status, days_ago, tags=None):
    run = dg.DagsterRun(job_name=job, run_id=str(uuid.uuid4()), status=status, tags=tags or {})
    instance.run_storage.add_historical_run(run, NOW - dt.timedelta(days=days_ago))
    return run.run_id


def _materialize(instance, run_id, asset):
    instance.store_event(EventLogEntry(
        error_info=None, level=logging.INFO, user_message="", run_id=run_id, timestamp=time.time(),
        dagster_event=DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="iris_ingest",
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(asset)),
        ),
    ))


def _remaining(instance):
    return {r.dagster_run.run_id for r in instance.get_run_records()}


def test_old_finished_runs_go_recent_and_running_ones_stay(instance):
    old = {_run(instance, job, status, 10) for job in ("iris_ingest", "iris_health")
           for status in (S.SUCCESS, S.FAILURE, S.CANCELED)}
    kept = {
        _run(instance, "iris_ingest", S.SUCCESS, 6),  # inside the 7 days
        _run(instance, "iris_ingest", S.FAILURE, 0),
        *(_run(instance, "iris_ingest", status, 30) for status in (S.NOT_STARTED, S.STARTING, S.STARTED, S.CANCELING)),
        _run(instance, "bmrs_fuelinst_daily_job", S.SUCCESS, 30),  # historic days: their runs say what is loaded
        _run(instance, "__ASSET_JOB", S.SUCCESS, 30),
    }
    report = purge_runs(instance, keep_days=7, now=NOW)
    assert (report.deleted, report.kept_latest) == (len(old), 0)
    assert _remaining(instance) == kept
    assert purge_runs(instance, keep_days=7, now=NOW).deleted == 0


def test_a_run_holding_an_assets_latest_materialization_stays(instance):
    rare = _run(instance, "iris_ingest", S.SUCCESS, 20)  # the last time a rare dataset arrived
    superseded = _run(instance, "iris_ingest", S.SUCCESS, 21)
    _materialize(instance, superseded, "bmrs_freq_iris")
    _materialize(instance, rare, "bmrs_rare_iris")
    newer = _run(instance, "iris_ingest", S.SUCCESS, 15)
    _materialize(instance, newer, "bmrs_freq_iris")
    report = purge_runs(instance, keep_days=7, now=NOW)
    assert (report.deleted, report.kept_latest) == (1, 2)
    assert _remaining(instance) == {rare, newer}
    assert instance.get_latest_materialization_event(dg.AssetKey("bmrs_rare_iris")).run_id == rare


def test_a_dedup_day_keeps_its_latest_successful_refresh(instance, monkeypatch):
    """288 refreshes a day of today's dedup partition: old ones go, but each day's last one stays."""
    monkeypatch.setattr("iris_pipeline.defs.run_retention.PAGE", 2)  # paged through too

    def refresh(day, status, days_ago):
        return _run(instance, "unified_dedup", status, days_ago, {"dagster/partition": day})

    superseded = {refresh("2025-06-01", S.SUCCESS, 30.2), refresh("2025-06-01", S.SUCCESS, 30.1),
                  refresh("2025-06-01", S.FAILURE, 29.9), refresh("2025-06-02", S.SUCCESS, 29.5)}
    last_of_day = {refresh("2025-06-01", S.SUCCESS, 30.0), refresh("2025-06-02", S.SUCCESS, 2)}
    backfill = _run(instance, "unified_dedup", S.SUCCESS, 40, {"dagster/asset_partition_range_start": "2025-05-01",
                                                              "dagster/asset_partition_range_end": "2025-05-31"})
    checks = _run(instance, "unified_view_checks", S.SUCCESS, 9)
    report = purge_runs(instance, keep_days=7, now=NOW)
    assert report.deleted == len(superseded) + 1  # and the old checks run
    assert _remaining(instance) == last_of_day | {backfill} and checks not in _remaining(instance)


def test_many_runs_are_paged_through(instance, monkeypatch):
    monkeypatch.setattr("iris_pipeline.defs.run_retention.PAGE", 3)
    old = {_run(instance, "iris_ingest", S.SUCCESS, 9) for _ in range(10)}
    recent = _run(instance, "iris_ingest", S.SUCCESS, 1)
    assert purge_runs(instance, keep_days=7, now=NOW).deleted == len(old)
    assert _remaining(instance) == {recent}


def test_the_daily_job_purges_with_the_configured_retention(instance, pipeline_env, monkeypatch):
    from iris_pipeline.definitions import build_definitions

    monkeypatch.setenv("IRIS_RUN_RETENTION_DAYS", "3")
    defs = build_definitions()
    assert defs.resolve_schedule_def("iris_run_purge_daily").default_status == dg.DefaultScheduleStatus.RUNNING
    old = _run(instance, "iris_ingest", S.SUCCESS, 4)
    recent = _run(instance, "iris_ingest", S.SUCCESS, 2)
    running = _run(instance, "iris_ingest", S.STARTED, 4)
    result = defs.resolve_job_def("iris_run_purge").execute_in_process(instance=instance)
    assert result.success
    assert _remaining(instance) == {recent, running, result.run_id}
    runs_dir = Path(instance.root_directory) / "history" / "runs"  # SQLite: one events file per run
    assert (runs_dir / f"{result.run_id}.db").exists() and not (runs_dir / f"{old}.db").exists()


def test_the_retention_setting_must_be_a_positive_number_of_days():
    from iris_pipeline.config import Settings

    assert Settings.from_env({}).run_retention_days == 7
    assert Settings.from_env({"IRIS_RUN_RETENTION_DAYS": "30"}).run_retention_days == 30
    for bad in ("0", "-1", "week"):
        with pytest.raises(ValueError, match="IRIS_RUN_RETENTION_DAYS"):
            Settings.from_env({"IRIS_RUN_RETENTION_DAYS": bad})
    with pytest.raises(ValueError):
        purge_runs(None, keep_days=-1)


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/postgres/dagster.yaml"])
def test_both_instance_files_purge_ticks(path):
    retention = yaml.safe_load((REPO / path).read_text())["retention"]
    assert retention["schedule"]["purge_after_days"] > 0
    assert all(days > 0 for days in retention["sensor"]["purge_after_days"].values())
