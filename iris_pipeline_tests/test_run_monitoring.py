"""A run whose worker died with its code server (here: `dagster dev` killed with SIGKILL mid-run) is
marked FAILURE by run monitoring after a restart, and the spool sensor then loads the files by itself.
Real `dagster dev` processes, the shipped dagster.yaml with shorter polling."""

import os
import signal
import time

import dagster as dg
import psutil
import pytest
import yaml

from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import body, freq_records
from iris_pipeline_tests.dagster_process import REPO, VENV_BIN, free_port, start, stop


def _instance_yaml(home):
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["max_resume_run_attempts"] == 0
    assert config["run_launcher"]["class"] == "WorkerCheckingRunLauncher"
    config["run_monitoring"]["poll_interval_seconds"] = 2  # production: 30
    config["run_launcher"]["config"]["unreachable_grace_seconds"] = 4  # production: 60
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0  # else the pool slot is lost
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 2  # production: 30
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def _dagster_dev(env, log):
    cmd = [str(VENV_BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(free_port())]
    return start(cmd, env, log)


def _wait(what, predicate, seconds, log_path):
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} not within {seconds}s\n" + log_path.read_text()[-3000:]
        time.sleep(0.5)
    return value


def _started_worker(instance):
    """(run id, worker pid) of an iris_ingest run in STARTED, from its "Started process" engine event."""
    runs = instance.get_run_records(dg.RunsFilter(job_name="iris_ingest", statuses=[dg.DagsterRunStatus.STARTED]))
    for record in runs:
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            pid = entry.dagster_event.engine_event_data.metadata.get("pid")
            if pid is not None:
                return record.dagster_run.run_id, int(pid.value)
    return None


@pytest.mark.timeout(240)
def test_a_run_killed_with_dagster_dev_is_failed_and_ingestion_resumes(tmp_path, pipeline_env, spool, warehouse_path):
    for i in range(3):
        spool.write_incoming("FREQ", f"FREQ_{i}.json", body(freq_records(second=8 * i)))
    home = tmp_path / "dagster_home"
    _instance_yaml(home)
    env = pipeline_env | {"DAGSTER_HOME": str(home)}
    log_path = tmp_path / "dev.log"
    log = open(log_path, "wb")
    holder = DuckDBWarehouse(warehouse_path)  # the run waits for the warehouse, so it stays STARTED
    first = second = None
    try:
        # Open the instance first: its SQLite storage is created once, not raced by two processes.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_run_records(limit=1)
            first = _dagster_dev(env, log)
            run_id, pid = _wait("a STARTED iris_ingest run", lambda: _started_worker(instance), 120, log_path)
            assert psutil.pid_exists(pid)
            os.killpg(first.pid, signal.SIGKILL)  # webserver, daemon, code server and run worker at once
            first.wait(timeout=10)
            _wait("the run worker to die", lambda: not psutil.pid_exists(pid), 10, log_path)
            holder.close()
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # what stalled ingestion

            second = _dagster_dev(env, log)
            _wait("the dead run marked FAILURE",
                  lambda: instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE, 90, log_path)
            succeeded = dg.RunsFilter(job_name="iris_ingest", statuses=[dg.DagsterRunStatus.SUCCESS])
            _wait("the sensor's next run to succeed", lambda: instance.get_run_records(succeeded), 60, log_path)
            assert not spool.pending("FREQ")
    finally:
        holder.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                stop(proc)
        log.close()
    with DuckDBWarehouse(warehouse_path) as wh:
        assert wh.query("SELECT count(*) FROM bmrs_freq_iris")[0][0] == 24
