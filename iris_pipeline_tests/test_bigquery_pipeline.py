"""The pipeline on BigQuery: the real CLI and Dagster assets against the bqemulator emulator."""

import datetime as dt
import http.client
import http.server
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse

import dagster as dg
import pytest

from iris_pipeline.registry import load_registry
from iris_pipeline.warehouse.base import LEDGER_TABLE, Batch, LoadedFile
from iris_pipeline.warehouse.bigquery_client import make_client
from iris_pipeline.warehouse.bigquery_warehouse import (
    STAGING_PREFIX, BigQueryWarehouse, file_date, is_transient, seconds_until_flush,
)
from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import VENV_BIN, body, freq_records


def _cli(env, *args, timeout=300):
    return subprocess.run([str(VENV_BIN / "iris-pipeline"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _bq(emulator, dataset, **kwargs) -> BigQueryWarehouse:
    return BigQueryWarehouse(make_client(emulator.project, "EU", emulator.host), dataset, **{"min_flush_interval_s": 0, **kwargs})


def _table_counts(wh, tables) -> dict[str, int]:
    return {t: wh.query(f"SELECT count(*) FROM {wh.table_ref(t)}")[0][0] for t in sorted(tables)}


def _doubled(wh, tables) -> int:
    return sum(
        wh.query(f"SELECT count(*) FROM (SELECT _source_file, _record_index FROM {wh.table_ref(t)}"
                 " GROUP BY 1, 2 HAVING count(*) > 1)")[0][0]
        for t in tables
    )


def test_cli_ingest_loads_a_spool_exactly_once_and_redeliveries_add_nothing(bigquery_env, bigquery_emulator, bq_dataset, spool, tmp_path):
    assert _cli(bigquery_env, "simulate", "--count", "400").returncode == 0
    # the same spool, loaded into DuckDB too: both backends must hold the same rows
    shutil.copytree(spool.root, tmp_path / "duck_spool")
    duck_env = dict(bigquery_env, IRIS_WAREHOUSE="duckdb", IRIS_SPOOL_DIR=str(tmp_path / "duck_spool"))
    assert _cli(duck_env, "ingest").returncode == 0

    first = _cli(bigquery_env, "ingest")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "total: 400 files" in first.stdout
    assert re.search(r"^warehouse: .*load jobs \d+", first.stdout, re.M)  # what the drain cost, on BigQuery
    with _bq(bigquery_emulator, bq_dataset) as wh, DuckDBWarehouse(tmp_path / "warehouse.duckdb") as duck:
        written = {t for t in wh.tables() if t.endswith("_iris")}
        assert len(written) >= len(load_registry())  # every registered table exists, typed, from the start
        loaded = _table_counts(wh, written)
        assert loaded == _table_counts(duck, written)
        assert sum(loaded.values()) > 1000
        assert wh.query(f"SELECT count(*) FROM {wh.table_ref(LEDGER_TABLE)}") == [(400,)]
        assert not [t for t in wh.tables() if t.startswith(STAGING_PREFIX)]  # staging tables dropped

    # Every message delivered again (IRIS redelivers after a lost lock; the archive gap-fill re-sends)
    archived = [p for p in spool.archive.rglob("*") if p.is_file()]
    for path in archived:
        dataset = path.parent.parent.name
        (spool.incoming / dataset).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, spool.incoming / dataset / path.name)
    again = _cli(bigquery_env, "ingest")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "total: 0 files, 0 rows" in again.stdout
    with _bq(bigquery_emulator, bq_dataset) as wh:
        assert _table_counts(wh, written) == loaded
        assert wh.query(f"SELECT count(*) FROM {wh.table_ref(LEDGER_TABLE)}") == [(400,)]
    assert spool.datasets_pending() == []

    rows = _cli(bigquery_env, "query", "--format", "csv",
                f"SELECT count(*) AS files FROM `{bigquery_emulator.project}.{bq_dataset}.{LEDGER_TABLE}`")
    assert (rows.returncode, rows.stdout) == (0, "files\n400\n")
    refused = _cli(bigquery_env, "query", f"DELETE FROM `{bigquery_emulator.project}.{bq_dataset}.{LEDGER_TABLE}` WHERE TRUE")
    assert refused.returncode == 2 and "refused" in refused.stderr


def test_sigkill_at_random_points_then_rerun_is_exactly_once(bigquery_env, bigquery_emulator, bq_dataset, spool):
    files, expected_rows = 0, 0
    for i in range(300):
        for dataset in ("FREQ", "FUELINST"):
            n = 1 + i % 7
            records = freq_records(n) if dataset == "FREQ" else [{"fuelType": "WIND", "generation": i, "k": j} for j in range(n)]
            spool.write_incoming(dataset, f"{dataset}_20261201{i % 24:02d}00_{i:05d}.json", body(records), durable=False)
            files, expected_rows = files + 1, expected_rows + n
    # flushes of at most 300 rows (the default is 1,000,000), one after another: many points to die at
    env = dict(bigquery_env, IRIS_BQ_MAX_FLUSH_ROWS="300")
    rng = random.Random(20261202)
    killed = 0

    def archived() -> int:
        return sum(1 for _ in spool.archive.rglob("*.json"))

    for _ in range(5):
        # Kill once a random share of what is left has been archived: mid-drain however fast the machine.
        target = archived() + int(rng.uniform(0.05, 0.5) * (files - archived()))
        proc = subprocess.Popen([str(VENV_BIN / "iris-pipeline"), "ingest", "--chunk-files", "40"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and archived() < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += archived() < files
        proc.wait(timeout=60)
    final = _cli(env, "ingest")
    assert final.returncode == 0, final.stdout + final.stderr
    assert killed >= 2, "no run was killed mid-way: the test proved nothing"
    # an hour on, the next open drops whatever staging tables the killed runs left behind
    with _bq(bigquery_emulator, bq_dataset, orphan_age=dt.timedelta(0)) as wh:
        tables = ["bmrs_freq_iris", "bmrs_fuelinst_iris"]
        assert _doubled(wh, tables) == 0
        assert sum(_table_counts(wh, tables).values()) == expected_rows
        assert wh.query(f"SELECT count(*), sum(rows) FROM {wh.table_ref(LEDGER_TABLE)}") == [(files, expected_rows)]
        assert not [t for t in wh.tables() if t.startswith(STAGING_PREFIX)]
    assert spool.datasets_pending() == [] and spool.quarantined() == []


def _one_file_batch(name):
    import pyarrow as pa

    return Batch("FREQ", "bmrs_freq_iris", pa.table({"_source_file": pa.array([], pa.string())}), [LoadedFile(name, 0)])


def test_flushes_are_spaced(bigquery_emulator, bq_dataset):
    interval = 4.0
    with _bq(bigquery_emulator, bq_dataset, min_flush_interval_s=interval) as wh:
        wh.ensure_table("bmrs_freq_iris", {"frequency": "FLOAT64"})
        wh.append_many([_one_file_batch("a.json")])
        started = time.monotonic()
        wh.append_many([_one_file_batch("b.json")])
        assert time.monotonic() - started >= interval - 0.5
        assert wh.query(f"SELECT count(*) FROM {wh.table_ref(LEDGER_TABLE)}") == [(2,)]


def test_a_new_process_waits_out_the_interval_since_the_last_flush():
    """Across processes the last flush is the ledger's modification time, which BigQuery updates with
    every DML commit. The emulator does not (it keeps the creation time), so the decision is tested
    here on its own."""
    now = dt.datetime(2026, 12, 2, 12, 0, 30, tzinfo=dt.timezone.utc)
    assert seconds_until_flush(None, now, 60) == 0
    assert seconds_until_flush(now - dt.timedelta(seconds=20), now, 60) == 40
    assert seconds_until_flush(now - dt.timedelta(minutes=5), now, 60) == 0
    assert seconds_until_flush(now + dt.timedelta(hours=1), now, 60) == 60  # a clock stepped back: bounded


class _FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards to the emulator, but answers job insertions listed in `failures` ((kind, status)) with
    503 or 429,
    as BigQuery does under load: a real HTTP failure on the wire, not a mock of the client."""

    def __init__(self, target: str, failures: list[tuple[str, int]]):
        self.target, self.failures, self.failed = target, failures, []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        kind = self.path.split("/")[1]  # "upload" (load jobs) or "bigquery" (queries)
        pending = [f for f in self.server.failures if f[0] == kind]
        if self.command == "POST" and self.path.split("?")[0].endswith("/jobs") and pending:
            self.server.failures.remove(pending[0])
            status = pending[0][1]
            self.server.failed.append((status, kind))
            reason = "rateLimitExceeded" if status == 429 else "backendError"
            payload = f'{{"error": {{"code": {status}, "message": "injected", "errors": [{{"reason": "{reason}"}}]}}}}'.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        target = urllib.parse.urlsplit(self.server.target)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(self.command, self.path, body=data, headers=headers)
        response = connection.getresponse()
        content = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                # resumable uploads continue at the URL in Location: keep them coming through here
                self.send_header(key, value.replace(self.server.target, f"http://127.0.0.1:{self.server.server_address[1]}"))
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def test_5xx_and_rate_limits_are_retried_and_load_exactly_once(bigquery_emulator, bq_dataset):
    proxy = _FlakyProxy(bigquery_emulator.host, failures=[])
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        client = make_client(bigquery_emulator.project, "EU", f"http://127.0.0.1:{proxy.server_address[1]}")
        with BigQueryWarehouse(client, bq_dataset, min_flush_interval_s=0) as wh:
            wh.ensure_table("bmrs_freq_iris", {"frequency": "FLOAT64"})
            # the flush's staging loads meet a 503 and a 429, then its transaction two 503s
            injected = [("upload", 503), ("upload", 429), ("bigquery", 503), ("bigquery", 503)]
            proxy.failures.extend(injected)
            assert wh.append_many([_one_file_batch("a.json")]) == [[LoadedFile("a.json", 0)]]
            assert sorted(proxy.failed) == sorted((status, kind) for kind, status in injected)
            assert wh.append_many([_one_file_batch("a.json")]) == [[]]  # and retrying never doubled it
            assert wh.query(f"SELECT count(*) FROM {wh.table_ref(LEDGER_TABLE)}") == [(1,)]
    finally:
        proxy.shutdown()


def test_transient_errors_are_told_from_permanent_ones():
    from google.api_core import exceptions as gexc

    assert is_transient(gexc.ServiceUnavailable("x"))
    assert is_transient(gexc.TooManyRequests("x"))
    assert is_transient(gexc.Forbidden("x", errors=[{"reason": "rateLimitExceeded"}]))
    assert is_transient(gexc.BadRequest("x", errors=[{"reason": "backendError"}]))
    assert not is_transient(gexc.BadRequest("x", errors=[{"reason": "invalidQuery"}]))
    assert not is_transient(gexc.Forbidden("x", errors=[{"reason": "accessDenied"}]))
    assert not is_transient(ValueError("x"))


@pytest.mark.parametrize("name, day", [
    ("BOALF_202311140741_NGET-EMFIP-BOALF-00689167-1.json", dt.date(2023, 11, 14)),
    ("FREQ_20261201_2359.json", dt.date(1970, 1, 1)),  # not the IRIS pattern: the undated partition
    ("FREQ_209913450000_x.json", dt.date(1970, 1, 1)),  # no 13th month
    ("FREQ_2024-06-01T10:00Z.json", dt.date(1970, 1, 1)),
])
def test_ledger_partition_of_a_file_comes_from_its_name(name, day):
    assert file_date(name) == day


def test_dagster_materializes_into_bigquery_with_load_jobs_in_the_metadata(bigquery_emulator, bq_dataset, spool, tmp_path):
    from iris_pipeline.defs.realtime.tables import build_iris_tables
    from iris_pipeline.defs.resources import BigQueryWarehouseResource, SpoolResource

    for i in range(3):
        spool.write_incoming("FREQ", f"FREQ_20261201120{i}_{i}.json", body(freq_records(4, second=4 * i)))
    resource = BigQueryWarehouseResource(
        project=bigquery_emulator.project, dataset=bq_dataset, emulator_host=bigquery_emulator.host, min_flush_seconds=0
    )
    iris_tables = build_iris_tables(storage_kind="bigquery")
    freq = dg.AssetKey("bmrs_freq_iris")
    result = dg.materialize(
        [iris_tables], selection=[freq], resources={"spool": SpoolResource(root=str(spool.root)), "warehouse": resource},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == freq]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["rows_loaded"] == 12 and metadata["files_loaded"] == 3
    assert metadata["dagster/row_count"] == 12
    assert metadata["dagster/table_name"] == f"{bigquery_emulator.project}.{bq_dataset}.bmrs_freq_iris"
    assert metadata["run_load_jobs"] == 2  # the rows and the ledger entries, in one flush
    assert "run_bytes_processed" in metadata  # 0 on the emulator; BigQuery reports the real figure
    assert iris_tables.specs_by_key[freq].kinds >= {"bigquery"}


def test_tables_are_partitioned_by_day_and_clustered_by_their_key(bigquery_emulator, bq_dataset, spool):
    from iris_pipeline.loader import load_spool

    spool.write_incoming("FREQ", "FREQ_202612011200_1.json", body(freq_records(4)))
    with _bq(bigquery_emulator, bq_dataset) as wh:
        load_spool(spool, wh, workers=0)
        client = wh.client
        table = lambda name: client.get_table(wh.qualified_name(name))  # noqa: E731
        bod, freq, ledger = table("bmrs_bod_iris"), table("bmrs_freq_iris"), table(LEDGER_TABLE)
        assert (bod.time_partitioning.type_, bod.time_partitioning.field) == ("DAY", "settlementDate")
        assert bod.clustering_fields == ["bmUnit", "settlementDate", "settlementPeriod", "pairId"]
        assert freq.time_partitioning.field == "measurementTime"  # no settlement date: its reference time
        assert (ledger.time_partitioning.field, ledger.clustering_fields) == ("file_date", ["dataset", "_source_file"])
        assert wh.query(f"SELECT file_date FROM {wh.table_ref(LEDGER_TABLE)}") == [(dt.date(2026, 12, 1),)]


def test_a_flush_of_more_tables_than_a_transaction_may_write_is_split(bigquery_emulator, bq_dataset, monkeypatch):
    import pyarrow as pa

    from iris_pipeline.warehouse import bigquery_warehouse

    with _bq(bigquery_emulator, bq_dataset) as wh:
        names = [f"bmrs_t{i}_iris" for i in range(5)]
        for name in names:
            wh.ensure_table(name, {"x": "INT64"})
        batches = [
            Batch(f"T{i}", name, pa.table({"x": pa.array([i], pa.int64()), "_source_file": [f"f{i}.json"],
                  "_record_index": pa.array([0], pa.int64()), "_ingested_at": pa.array([dt.datetime.now(dt.timezone.utc)])}),
                  [LoadedFile(f"f{i}.json", 1)])
            for i, name in enumerate(names)
        ]
        monkeypatch.setattr(bigquery_warehouse, "MAX_TABLES_PER_FLUSH", 2)  # BigQuery's is 90: 5 tables show the cut
        loaded = wh.append_many(batches)
        assert [[f.name for f in part] for part in loaded] == [[f"f{i}.json"] for i in range(5)]
        assert wh.usage()["load_jobs"] == 5 + 3  # a staging load per table, and a file list per flush (3)
        assert wh.query(f"SELECT count(*) FROM {wh.table_ref(LEDGER_TABLE)}") == [(5,)]
