"""IRIS → client → spool → ingest → warehouse, over the wire: every good message's records exactly once,
every poison message accounted for (dead-lettered on the broker and kept in quarantine)."""

import signal
import subprocess


from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import VENV_BIN, body, freq_records

QUEUE = "iris.end-to-end"


def _client(env, *args, **extra):
    return subprocess.run(
        [str(VENV_BIN / "iris-pipeline"), "client", "--max-idle", "2", *args],
        env=env | extra, capture_output=True, text=True, timeout=60,
    )


def test_client_then_ingest_is_exactly_once_and_accounts_for_poison(make_amqp_broker, pipeline_env, spool, warehouse_path):
    broker = make_amqp_broker(lock_duration=1.5, max_delivery_count=5)  # IRIS's limit
    good = {}
    for i in range(30):
        dataset = ("FREQ", "FUELINST", "mibm_mid")[i % 3]
        records = freq_records(4, second=i) if dataset == "FREQ" else [{"dataset": dataset, "n": i, "k": k} for k in range(3)]
        good[f"{dataset}_{i:03d}.json"] = (dataset, len(records))
        broker.send(QUEUE, body(records, double_encoded=i % 2 == 0), subject=dataset, message_id=f"{dataset}_{i:03d}.json")
    broker.send(QUEUE, body(freq_records(4)), subject="FREQ", message_id="FREQ_000.json")  # delivered twice
    broker.send(QUEUE, b"{truncated", subject="FREQ", message_id="FREQ_poison.json")
    broker.send(QUEUE, b"\xff\xfe not utf-8", subject="BOD", message_id="BOD_poison.json")
    env = pipeline_env | {"IRIS_CONNECTION_STRING": broker.connection_string(), "IRIS_QUEUE_NAME": QUEUE}

    crashed = _client(env, IRIS_CLIENT_TEST_CRASH_AFTER_WRITE="7")  # dies between a write and its complete
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    finished = _client(env)
    assert finished.returncode == 0, finished.stderr
    ingested = subprocess.run([str(VENV_BIN / "iris-pipeline"), "ingest"], env=env, capture_output=True, text=True, timeout=60)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr

    assert broker.queue_depth(QUEUE) == 0
    assert len(broker.dead_letters(QUEUE)) == 2
    assert broker.dead_letter_depth(QUEUE) == 0  # read off the dead-letter queue: both already quarantined
    assert set(broker.completed_delivery_counts(QUEUE).values()) <= {1, 2}  # at most the crash's redelivery
    assert {p.name for p in spool.quarantined()} == {"FREQ_poison.json", "BOD_poison.json"}
    with DuckDBWarehouse(warehouse_path) as wh:
        ledger = dict(wh.query("SELECT _source_file, rows FROM iris_ingest_log"))
        assert ledger == {name: rows for name, (_, rows) in good.items()}
        for table in ("bmrs_freq_iris", "bmrs_fuelinst_iris", "bmrs_mibm_mid_iris"):
            assert wh.query(f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY _source_file, _record_index HAVING count(*) > 1)") == [(0,)]
        total = sum(wh.query(f"SELECT count(*) FROM {t}")[0][0] for t in ("bmrs_freq_iris", "bmrs_fuelinst_iris", "bmrs_mibm_mid_iris"))
        assert total == sum(rows for _, rows in good.values())
