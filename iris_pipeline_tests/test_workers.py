"""The loader's worker pool: a killed worker costs only its task, and nothing ever waits forever."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from iris_pipeline.workers import WorkerDied, WorkerPool
from iris_pipeline_tests.conftest import VENV_BIN, body, freq_records


def die_once(marker: str, value: int) -> int:
    """Kill the worker running it the first time (as the OOM killer would), succeed after."""
    try:  # O_EXCL: of two workers running it at once, exactly one dies
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return value * 2
    os.kill(os.getpid(), signal.SIGKILL)


def always_die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def fail(message: str) -> None:
    raise ValueError(message)


def test_a_task_whose_worker_is_killed_runs_again_on_a_new_worker(tmp_path):
    with WorkerPool(2) as pool:
        jobs = [pool.submit(die_once, str(tmp_path / "died"), i) for i in range(6)]
        assert [j.result() for j in jobs] == [0, 2, 4, 6, 8, 10]
        assert pool.deaths == 1


def test_a_task_that_kills_every_worker_fails_instead_of_hanging():
    with WorkerPool(2, max_attempts=2) as pool:
        doomed = pool.submit(always_die)
        fine = pool.submit(pow, 2, 10)
        with pytest.raises(WorkerDied, match="2 attempts"):
            doomed.result()
        assert fine.result() == 1024
        assert pool.deaths == 2


def test_a_hung_task_is_killed_after_its_timeout():
    started = time.monotonic()
    with WorkerPool(1, max_attempts=1, task_timeout_s=1.0) as pool:
        with pytest.raises(WorkerDied, match="longer than 1s"):
            pool.submit(sleep_for, 60).result()
        assert pool.submit(pow, 3, 2).result() == 9  # a fresh worker took over
    assert time.monotonic() - started < 20


def test_exceptions_come_back_to_the_caller():
    with WorkerPool(1) as pool:
        with pytest.raises(ValueError, match="bad chunk"):
            pool.submit(fail, "bad chunk").result()
        assert pool.deaths == 0


def test_closing_kills_busy_workers_and_returns():
    pool = WorkerPool(2)
    pool.submit(sleep_for, 600)
    pool.submit(sleep_for, 600)
    pool._pump()  # both busy
    pids = pool.pids
    started = time.monotonic()
    pool.close(grace_s=0.5)
    assert time.monotonic() - started < 10
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ingest_survives_its_workers_being_killed_and_exits(spool, pipeline_env, warehouse_path):
    """The production path: `iris-pipeline ingest` with worker processes, each worker SIGKILLed once
    while the drain runs. It must finish (not hang in shutdown), load every record exactly once, and exit."""
    import psutil

    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

    files = 1200
    for i in range(files):
        spool.write_incoming("FREQ", f"FREQ_{i:05d}.json", body(freq_records(n=4, second=i % 50)), durable=False)
    proc = subprocess.Popen(
        [str(VENV_BIN / "iris-pipeline"), "ingest", "--chunk-files", "20", "--workers", "2"],
        env=pipeline_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    killed: set[int] = set()
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while proc.poll() is None and len(killed) < 2 and time.monotonic() < deadline:
            # forkserver workers are the forkserver's children, i.e. the ingest process's grandchildren
            try:
                workers = [w for c in parent.children() for w in c.children()]
            except psutil.NoSuchProcess:
                continue
            for worker in workers:
                if worker.pid not in killed:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        worker.kill()
                        killed.add(worker.pid)
            time.sleep(0.005)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()
    assert killed, "no worker was killed: the test proved nothing"
    with DuckDBWarehouse(warehouse_path) as wh:
        assert wh.query("SELECT count(*), count(DISTINCT (_source_file, _record_index)) FROM bmrs_freq_iris") == [
            (4 * files, 4 * files)
        ]
    assert spool.datasets_pending() == []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_without_any_worker_process_tasks_run_here(monkeypatch):
    """When no process can be started (out of memory, a process limit), tasks still run. Such limits
    cannot be imposed on root safely here, so starting a worker is made to fail as the OS would."""
    from iris_pipeline import workers

    def no_process(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(workers._Worker, "__init__", no_process)
    with WorkerPool(2) as pool:
        assert [pool.submit(pow, 2, i).result() for i in range(4)] == [1, 2, 4, 8]
        with pytest.raises(ValueError, match="bad chunk"):
            pool.submit(fail, "bad chunk").result()
        assert pool.pids == []
