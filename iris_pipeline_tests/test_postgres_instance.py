"""The production Dagster instance (deploy/postgres/dagster.yaml) on a real PostgreSQL server.

A throwaway cluster from Debian's `postgresql` package (initdb + pg_ctl, password authentication, a
free localhost port) backs a DAGSTER_HOME holding the deploy yaml; the real `dagster job execute`
drains a simulated spool through it. PostgreSQL refuses to run as root, so as root the server runs
as the `postgres` user the package creates."""

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import psycopg2
import pytest
from dagster._core.instance.config import PoolGranularity
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from iris_pipeline.codec import decode_body
from iris_pipeline.registry import load_registry
from iris_pipeline_tests.dagster_process import REPO, VENV_BIN, free_port

DEPLOY_YAML = REPO / "deploy" / "postgres" / "dagster.yaml"
PG_USER, PG_DB = "dagster_test", "dagster"
SPOOL_MESSAGES = 60


def _postgres_bin() -> Path | None:
    """The newest installed server's bin directory, e.g. /usr/lib/postgresql/15/bin."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").exists() and (d / "pg_isready").exists()]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0, default=None)


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: this user, or `postgres` when running as root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root and there is no `postgres` user to run the server as (apt-get install postgresql)")


def _as(account: pwd.struct_passwd | None):
    if account is None:
        return None

    def drop_root():
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)

    return drop_root


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str
    db: str

    def query(self, sql: str, params=(), db: str | None = None) -> list[tuple]:
        conn = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=db or self.db,
            connect_timeout=10,
        )
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.db,
        }


def _wait_ready(pg_bin: Path, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        ready = subprocess.run(
            [str(pg_bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
            capture_output=True, timeout=10,
        )
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL on port {port} not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


def _server_processes(data_dir: Path) -> list[psutil.Process]:
    """The postmaster and its children, as they are now."""
    try:
        postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
        return [postmaster, *postmaster.children(recursive=True)]
    except (FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess):
        return []


def _kill(processes: list[psutil.Process]) -> None:
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:  # a zombie is dead already; init reaps it
                process.kill()
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture(scope="module")
def postgres():
    """A fresh PostgreSQL cluster on a free localhost port, with a password-protected user and database."""
    pg_bin = _postgres_bin()
    if pg_bin is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    account = _server_account()
    # Not under pytest's tmp dir: that is private to this user, and the server's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="iris-pg-"))
    data_dir, socket_dir, log = root / "data", root / "sock", root / "server.log"
    socket_dir.mkdir()
    password = secrets.token_urlsafe(24)
    (root / "pwfile").write_text(password + "\n")
    if account is not None:
        for path in (root, socket_dir, root / "pwfile"):
            os.chown(path, account.pw_uid, account.pw_gid)
    as_server_user = _as(account)

    def pg(tool: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [str(pg_bin / tool), *args], cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, preexec_fn=as_server_user,
        )
        assert done.returncode == 0, f"{tool} failed:\n{done.stdout}\n{done.stderr}\n" + (
            log.read_text() if log.exists() else ""
        )

    port = free_port()
    try:
        pg("initdb", "-D", str(data_dir), "-U", PG_USER, "--pwfile", str(root / "pwfile"),
           "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")
        options = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={socket_dir} -c fsync=off"
        pg("pg_ctl", "start", "-D", str(data_dir), "-l", str(log), "-o", options, "-w", "-t", "60", timeout=90)
        _wait_ready(pg_bin, port, timeout_s=30)
        server = Server("127.0.0.1", port, PG_USER, password, PG_DB)
        server.query(f"CREATE DATABASE {PG_DB}", db="postgres")
        yield server
    finally:
        server_processes = _server_processes(data_dir)
        if server_processes:
            subprocess.run(
                [str(pg_bin / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "immediate", "-w", "-t", "30"],
                cwd=root, capture_output=True, timeout=60, preexec_fn=as_server_user,
            )
            _kill(server_processes)  # whatever outlived the stop
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Ingest:
    env: dict[str, str]
    home: Path
    spool_dir: Path
    warehouse: Path
    files: dict[str, int]  # dataset code -> spool files before the run
    records: dict[str, int]  # dataset code -> records those files held
    output: str  # the CLI's stdout and stderr


def _spool_contents(incoming: Path) -> tuple[dict[str, int], dict[str, int]]:
    files, records = {}, {}
    for dataset_dir in sorted(p for p in incoming.iterdir() if p.is_dir()):
        bodies = [p.read_bytes() for p in dataset_dir.iterdir() if p.is_file()]
        if bodies:
            files[dataset_dir.name] = len(bodies)
            records[dataset_dir.name] = sum(len(decode_body(b)) for b in bodies)
    return files, records


@pytest.fixture(scope="module")
def ingested(postgres, tmp_path_factory) -> Ingest:
    """A simulated spool drained by the real `dagster job execute` on the Postgres-backed instance."""
    tmp = tmp_path_factory.mktemp("pg_instance")
    home, spool_dir, warehouse = tmp / "dagster_home", tmp / "spool", tmp / "warehouse.duckdb"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    env = dict(os.environ) | postgres.env() | {
        "DAGSTER_HOME": str(home), "IRIS_SPOOL_DIR": str(spool_dir), "IRIS_DUCKDB_PATH": str(warehouse),
        "IRIS_WAREHOUSE": "duckdb", "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
    }
    simulated = subprocess.run(
        [str(VENV_BIN / "iris-pipeline"), "simulate", "--count", str(SPOOL_MESSAGES)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert simulated.returncode == 0, simulated.stderr
    files, records = _spool_contents(spool_dir / "incoming")
    assert sum(files.values()) == SPOOL_MESSAGES

    done = subprocess.run(
        [str(VENV_BIN / "dagster"), "job", "execute", "-m", "iris_pipeline.definitions", "-j", "iris_ingest"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return Ingest(env, home, spool_dir, warehouse, files, records, done.stdout + done.stderr)


def test_the_run_is_recorded_in_postgres_as_success(postgres, ingested):
    assert postgres.query("SELECT status FROM runs WHERE pipeline_name = 'iris_ingest'") == [("SUCCESS",)]


def test_materializations_of_the_spooled_tables_are_in_postgres_event_log(postgres, ingested):
    registry = load_registry()
    expected = {f'["{registry.get(code).table_name}"]' for code in ingested.files}
    materialized = [key for (key,) in postgres.query(
        "SELECT e.asset_key FROM event_logs e JOIN runs r ON r.run_id = e.run_id"
        " WHERE r.pipeline_name = 'iris_ingest' AND e.dagster_event_type = 'ASSET_MATERIALIZATION'"
    )]
    assert len(materialized) == len(expected) and set(materialized) == expected


def test_every_spooled_record_is_in_the_duckdb_warehouse_once(ingested):
    registry = load_registry()
    with duckdb.connect(str(ingested.warehouse), read_only=True) as con:
        rows = {
            code: con.sql(f"SELECT count(*) FROM {registry.get(code).table_name}").fetchone()[0]
            for code in ingested.records
        }
        ledger_files = con.sql("SELECT count(*) FROM iris_ingest_log").fetchone()[0]
    assert rows == ingested.records
    assert ledger_files == SPOOL_MESSAGES
    assert not [p for p in (ingested.spool_dir / "incoming").rglob("*") if p.is_file()]


def test_the_deploy_config_loads_as_a_postgres_instance_with_the_warehouse_pool(postgres, ingested, monkeypatch):
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(ingested.home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        [record] = instance.get_run_records(dg.RunsFilter(job_name="iris_ingest"))
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS

        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_coordinator.get_run_queue_config().max_user_code_failure_retries == 3
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
        assert concurrency.run_queue_config.max_concurrent_runs == 4
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        # The ingest run's step declared pool="iris_warehouse": the pool got the default, one slot.
        assert instance.event_log_storage.get_concurrency_info("iris_warehouse").slot_count == 1


def test_dagster_instance_info_reports_postgres_storage_without_the_password(postgres, ingested):
    info = subprocess.run(
        [str(VENV_BIN / "dagster"), "instance", "info"], cwd=REPO, env=ingested.env,
        capture_output=True, text=True, timeout=120,
    )
    assert info.returncode == 0, info.stderr
    assert "PostgresRunStorage" in info.stdout and "PostgresEventLogStorage" in info.stdout
    assert postgres.password not in info.stdout + info.stderr
    assert postgres.password not in ingested.output
    assert postgres.query("SELECT count(*) FROM runs WHERE run_body LIKE %s", (f"%{postgres.password}%",)) == [(0,)]
