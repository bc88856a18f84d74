"""The IRIS client against a real AMQP 1.0 broker, through the real azure-servicebus SDK (no mocks).

In-process tests run `IrisClient.run`; the crash, signal, lock and log tests run the real CLI
(`python -m iris_pipeline.cli client`) as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from iris_pipeline.codec import decode_body
from iris_pipeline.iris_client import (
    ClientSettings,
    ConfigError,
    IrisClient,
    client_health,
    read_status,
)
from iris_pipeline.spool import Spool, content_hash, content_variant_name
from iris_pipeline_tests.dagster_process import REPO, VENV_BIN

PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
QUEUE = "iris.test-queue"


# --- helpers ---------------------------------------------------------------------------------
def records(dataset: str, n: int = 3, start: int = 0) -> list[dict]:
    return [{"dataset": dataset, "settlementPeriod": i + 1, "value": i * 1.5, "note": "ä/../x"} for i in
            range(start, start + n)]


def double_encoded(recs) -> bytes:
    return orjson.dumps(orjson.dumps(recs).decode())


def settings_for(broker, **overrides) -> ClientSettings:
    env = {"IRIS_CONNECTION_STRING": broker.connection_string(), "IRIS_QUEUE_NAME": QUEUE}
    return ClientSettings.from_env(env, **overrides)


def run_client(broker, spool: Spool, max_idle: float = 0.5, **overrides):
    return IrisClient(settings_for(broker, **overrides), spool).run(max_idle=max_idle)


def spool_files(root: Path, area: str = "incoming") -> dict[str, bytes]:
    base = root / area
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def client_env(broker, spool_root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS_")}
    env.update(IRIS_SPOOL_DIR=str(spool_root), IRIS_CONNECTION_STRING=broker.connection_string(),
               IRIS_QUEUE_NAME=QUEUE, PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def start_cli(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(PYTHON), "-m", "iris_pipeline.cli", "client", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- landing ---------------------------------------------------------------------------------
def test_messages_land_byte_for_byte_and_decoded_equal(amqp_broker, spool):
    sent = {
        "FREQ/FREQ_202501010000_1.json": double_encoded(records("FREQ")),
        "FREQ/FREQ_202501010000_2.json": orjson.dumps(records("FREQ", 2, 10)),  # plain JSON array
        "mibm_mid/MIBM_1.json": double_encoded(records("mibm_mid", 1)),  # lower-case dataset kept as is
        "REMIT/REMIT_1.json": orjson.dumps({"dataset": "REMIT", "mrid": "x"}),  # a single object
    }
    for path, body in sent.items():
        dataset, name = path.split("/")
        amqp_broker.send(QUEUE, body, subject=dataset, message_id=name)

    stats = run_client(amqp_broker, spool)

    landed = spool_files(spool.root)
    assert landed == sent
    for path, body in sent.items():
        assert decode_body(landed[path]) == decode_body(body)
    assert (stats.received, stats.written, stats.completed, stats.dead_lettered) == (4, 4, 4, 0)
    assert amqp_broker.queue_depth(QUEUE) == 0 and amqp_broker.completed_count(QUEUE) == 4
    assert not list((spool.root / "tmp").glob("*"))
    status = read_status(spool.root)
    assert status["completed"] == 4 and status["received"] == 4 and status["connected"] is False
    assert status["pid"] == os.getpid() and status["last_message_at"] and status["last_error"] is None


def test_subject_missing_falls_back_to_body_dataset_and_names_fall_back(amqp_broker, spool):
    amqp_broker.send(QUEUE, double_encoded(records("BOALF")), message_id="BOALF_1.json")
    amqp_broker.send(QUEUE, double_encoded(records("MID")), subject="MID",
                     application_properties={"source_file_name": "MID_from_property.json"})
    amqp_broker.send(QUEUE, double_encoded(records("FUELINST")), subject="FUELINST")

    run_client(amqp_broker, spool)

    landed = spool_files(spool.root)
    assert "BOALF/BOALF_1.json" in landed
    assert "MID/MID_from_property.json" in landed
    fuelinst = [p for p in landed if p.startswith("FUELINST/")]
    assert len(fuelinst) == 1 and fuelinst[0].startswith("FUELINST/FUELINST_") and fuelinst[0].endswith(".json")
    assert len(landed) == 3 and amqp_broker.queue_depth(QUEUE) == 0


def test_poison_is_dead_lettered_with_reason_and_quarantined(amqp_broker, spool):
    poison = {
        "not_json.json": b"this is not json",
        "truncated.json": double_encoded(records("FREQ"))[:-7],
        "not_utf8.json": b"\xff\xfe\x00garbage",
        "scalar.json": b"42",
        "string_of_garbage.json": orjson.dumps("[{not json"),
    }
    for name, body in poison.items():
        amqp_broker.send(QUEUE, body, subject="FREQ", message_id=name)
    amqp_broker.send(QUEUE, double_encoded(records("FREQ")), subject="FREQ", message_id="good.json")

    stats = run_client(amqp_broker, spool)

    assert stats.dead_lettered == len(poison) and stats.completed == 1
    assert list(spool_files(spool.root)) == ["FREQ/good.json"]
    dead = {d.message_id: d for d in amqp_broker.dead_letters(QUEUE)}
    assert set(dead) == set(poison)
    assert all(d.reason == "UndecodableBody" and d.description and d.delivery_count == 1 for d in dead.values())
    quarantined = spool_files(spool.root, "quarantine")
    for name, body in poison.items():
        assert quarantined[f"FREQ/{name}"] == body
        assert "UndecodableBody" in quarantined[f"FREQ/{name}.error"].decode()
    assert amqp_broker.queue_depth(QUEUE) == 0


def test_hostile_names_and_subjects_stay_inside_the_spool(amqp_broker, tmp_path, spool):
    names = ["../../etc/passwd", "/abs", "a/b", "..\\..\\win.json", "..", "./.hidden.json", "ok.json.error"]
    for i, name in enumerate(names):
        amqp_broker.send(QUEUE, double_encoded(records("FREQ", 1, i)), subject="FREQ", message_id=name)
    for subject in ["../evil", "/etc", "FREQ/../../x"]:
        amqp_broker.send(QUEUE, double_encoded(records("FREQ")), subject=subject, message_id="s.json")

    stats = run_client(amqp_broker, spool)

    everything = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert everything and all(p.resolve().is_relative_to(spool.root.resolve()) for p in everything)
    assert not (tmp_path / "etc").exists() and not Path("/abs").exists()
    landed = spool_files(spool.root)
    assert all("/" not in name.split("/", 1)[1] and not name.split("/", 1)[1].startswith(".") for name in landed)
    assert len({body for body in landed.values()}) == len(landed)  # sanitised names never collide
    assert len(landed) == len(names) - 1  # ".." has no usable name left
    reasons = sorted(d.reason for d in amqp_broker.dead_letters(QUEUE))
    assert reasons == ["InvalidDataset"] * 3 + ["InvalidFileName"]
    assert stats.completed + stats.dead_lettered == len(names) + 3
    assert amqp_broker.queue_depth(QUEUE) == 0


# --- at least once, never doubled ------------------------------------------------------------
def test_redelivered_message_is_not_written_twice(amqp_broker, spool):
    body = double_encoded(records("FREQ"))
    assert spool.write_incoming("FREQ", "FREQ_1.json", body)  # an earlier delivery already landed
    before = (spool.incoming / "FREQ" / "FREQ_1.json").stat()
    amqp_broker.send(QUEUE, body, subject="FREQ", message_id="FREQ_1.json")
    amqp_broker.send(QUEUE, double_encoded(records("FREQ", 5)), subject="FREQ", message_id="FREQ_2.json")
    amqp_broker.send(QUEUE, double_encoded(records("FREQ", 9)), subject="FREQ", message_id="FREQ_1.json")

    stats = run_client(amqp_broker, spool)

    after = (spool.incoming / "FREQ" / "FREQ_1.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # Same name, different content: another message, kept under its content variant name and loaded.
    variant = content_variant_name("FREQ_1.json", content_hash(double_encoded(records("FREQ", 9))))
    landed = spool_files(spool.root)
    assert set(landed) == {"FREQ/FREQ_1.json", "FREQ/FREQ_2.json", f"FREQ/{variant}"}
    assert landed[f"FREQ/{variant}"] == double_encoded(records("FREQ", 9))
    assert (stats.written, stats.duplicates, stats.completed) == (2, 1, 3)
    assert not (spool.root / "quarantine").exists()


def test_sigkill_between_write_and_complete_redelivers_without_doubling(make_amqp_broker, tmp_path):
    broker = make_amqp_broker(lock_duration=1.5)
    bodies = {f"FREQ_{i}.json": double_encoded(records("FREQ", 2, i)) for i in range(6)}
    for name, body in bodies.items():
        broker.send(QUEUE, body, subject="FREQ", message_id=name)
    root = tmp_path / "spool"

    crashed = start_cli(client_env(broker, root, IRIS_CLIENT_TEST_CRASH_AFTER_WRITE="3"), "--max-idle", "5")
    _, err = crashed.communicate(timeout=30)
    assert crashed.returncode == -signal.SIGKILL, err
    completed, landed = broker.completed_count(QUEUE), len(spool_files(root))
    assert landed >= 3 and completed < landed  # at least the third was written and never completed
    assert broker.queue_depth(QUEUE) == 6 - completed

    again = start_cli(client_env(broker, root), "--max-idle", "2")
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])["client"]
    assert stats["duplicates"] == landed - completed and stats["written"] == 6 - landed
    assert spool_files(root) == {f"FREQ/{name}": body for name, body in bodies.items()}
    assert broker.queue_depth(QUEUE) == 0 and broker.dead_letters(QUEUE) == []


def test_broker_restart_client_reconnects_and_goes_on(amqp_broker, spool):
    client = IrisClient(settings_for(amqp_broker), spool)
    stop = threading.Event()
    thread = threading.Thread(target=client.run, kwargs={"stop_event": stop}, daemon=True)
    thread.start()
    try:
        for i in range(20):
            amqp_broker.send(QUEUE, double_encoded(records("FREQ", 1, i)), subject="FREQ", message_id=f"a{i}.json")
        wait_until(lambda: amqp_broker.completed_count(QUEUE) == 20, 20, "the first 20 messages")
        amqp_broker.restart()
        for i in range(20):
            amqp_broker.send(QUEUE, double_encoded(records("FREQ", 1, i)), subject="FREQ", message_id=f"b{i}.json")
        wait_until(lambda: len(spool_files(spool.root)) == 40 and amqp_broker.queue_depth(QUEUE) == 0, 30,
                   "the 20 messages sent after the restart")
        assert wait_until(lambda: read_status(spool.root)["connected"], 5, "connected status")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert client.stats.connections >= 2 and client.stats.written == 40
    assert client.stats.completed + client.stats.lock_lost == 40


def run_in_thread(client: IrisClient):
    stop = threading.Event()
    thread = threading.Thread(target=client.run, kwargs={"stop_event": stop}, daemon=True)
    thread.start()
    return stop, thread


def test_failing_write_keeps_messages_locked_until_it_succeeds(make_amqp_broker, spool):
    """A write that fails (a file where the dataset directory should be: root cannot write through it,
    while tmp/ stays writable) for longer than 5 lock durations spends none of the 5 deliveries."""
    broker = make_amqp_broker(lock_duration=1.0, max_delivery_count=5)
    spool.incoming.mkdir(parents=True)
    blocker = spool.incoming / "FREQ"
    blocker.write_text("a file where the dataset directory should be")
    sent = {f"FREQ/FREQ_{i}.json": double_encoded(records("FREQ", 2, i)) for i in range(3)}
    sent["MID/MID_1.json"] = double_encoded(records("MID"))
    for path, body in sent.items():
        dataset, name = path.split("/")
        broker.send(QUEUE, body, subject=dataset, message_id=name)
    # one message per batch: the others wait in the receiver's prefetch buffer, where locks run out too
    client = IrisClient(settings_for(broker, batch_size=1), spool)
    stop, thread = run_in_thread(client)
    try:
        wait_until(lambda: "write failed for FREQ/" in ((read_status(spool.root) or {}).get("last_error") or ""),
                   15, "a failing write")
        started = time.monotonic()
        while time.monotonic() - started < 6 * broker.lock_duration:  # past 5 would-be deliveries
            assert max(broker.delivery_counts(QUEUE).values()) == 1, "a delivery was spent"
            assert broker.dead_letters(QUEUE) == [] and thread.is_alive()
            time.sleep(0.2)
        status = read_status(spool.root)
        failing = status["write_failing_since"]
        assert failing and status["writes_failing"] >= 1
        assert "write failed for FREQ/FREQ_" in status["last_write_error"]
        later = dt.datetime.fromisoformat(failing) + dt.timedelta(seconds=61)
        ok, text, _ = client_health({**status, "updated_at": later.isoformat(), "last_message_at": failing},
                                    later, 3600)
        assert not ok and "spool writes failing since" in text
        blocker.unlink()
        wait_until(lambda: broker.completed_count(QUEUE) == len(sent), 20, "every message once the disk recovered")
        wait_until(lambda: read_status(spool.root)["write_failing_since"] is None, 5, "the failure cleared")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert spool_files(spool.root) == sent
    assert broker.dead_letters(QUEUE) == [] and broker.dead_letter_depth(QUEUE) == 0
    assert set(broker.completed_delivery_counts(QUEUE).values()) == {1}  # not one delivery spent
    assert client.stats.abandoned == 0 and client.stats.written == len(sent) and client.stats.write_failures >= 3


def test_stop_while_a_write_fails_gives_the_message_back_promptly(make_amqp_broker, spool):
    broker = make_amqp_broker(lock_duration=30.0, max_delivery_count=5)
    spool.incoming.mkdir(parents=True)
    (spool.incoming / "FREQ").write_text("a file where the dataset directory should be")
    broker.send(QUEUE, double_encoded(records("FREQ")), subject="FREQ", message_id="FREQ_1.json")
    client = IrisClient(settings_for(broker), spool)
    stop, thread = run_in_thread(client)
    try:
        wait_until(lambda: (read_status(spool.root) or {}).get("writes_failing"), 15, "a failing write")
        assert broker.locked_count(QUEUE) == 1  # held, not given back
        asked = time.monotonic()
        stop.set()
        thread.join(15)
        assert not thread.is_alive() and time.monotonic() - asked < 10
    finally:
        stop.set()
        thread.join(15)
    assert broker.locked_count(QUEUE) == 0 and broker.queue_depth(QUEUE) == 1 and broker.dead_letters(QUEUE) == []
    assert client.stats.abandoned == 1 and client.stats.write_failures >= 1
    status = read_status(spool.root)
    assert status["write_failing_since"] is None and status["connected"] is False


def test_broker_dead_letters_reach_quarantine_with_the_broker_reason(make_amqp_broker, spool):
    from azure.servicebus import ServiceBusClient

    broker = make_amqp_broker(lock_duration=1.0, max_delivery_count=5)
    expired, exhausted, landed = (double_encoded(records("FREQ", 1, i)) for i in range(3))
    broker.send(QUEUE, expired, subject="FREQ", message_id="FREQ_expired.json", time_to_live=0.2)
    broker.send(QUEUE, exhausted, subject="FREQ", message_id="FREQ_exhausted.json")
    broker.send(QUEUE, landed, subject="FREQ", message_id="FREQ_landed.json")
    assert spool.write_incoming("FREQ", "FREQ_landed.json", landed)  # written; its completion never arrived
    wait_until(lambda: broker.dead_letters(QUEUE), 5, "the TTL expiry")
    with ServiceBusClient.from_connection_string(broker.connection_string(), retry_total=0) as sb:
        with sb.get_queue_receiver(QUEUE, prefetch_count=0) as other_consumer:  # gives up on both, 5 times
            for _ in range(5):
                for message in other_consumer.receive_messages(max_message_count=2, max_wait_time=5):
                    other_consumer.abandon_message(message)
    reasons = {d.message_id: d.reason for d in broker.dead_letters(QUEUE)}
    assert reasons == {"FREQ_expired.json": "TTLExpiredException", "FREQ_exhausted.json": "MaxDeliveryCountExceeded",
                       "FREQ_landed.json": "MaxDeliveryCountExceeded"}

    client = IrisClient(settings_for(broker), spool)
    stop, thread = run_in_thread(client)
    try:
        wait_until(lambda: broker.dead_letter_depth(QUEUE) == 0, 20, "the dead-letter queue to be drained")
        wait_until(lambda: read_status(spool.root)["dead_letters_quarantined"] == 2, 5, "the status")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    quarantined = spool_files(spool.root, "quarantine")
    assert set(quarantined) == {"FREQ/FREQ_expired.json", "FREQ/FREQ_expired.json.error",
                                "FREQ/FREQ_exhausted.json", "FREQ/FREQ_exhausted.json.error"}
    assert quarantined["FREQ/FREQ_expired.json"] == expired and quarantined["FREQ/FREQ_exhausted.json"] == exhausted
    assert "TTLExpiredException" in quarantined["FREQ/FREQ_expired.json.error"].decode()
    error = quarantined["FREQ/FREQ_exhausted.json.error"].decode()
    assert "MaxDeliveryCountExceeded" in error and "after 5 delivery attempts" in error and "incoming/FREQ/" in error
    assert spool_files(spool.root) == {"FREQ/FREQ_landed.json": landed}  # already landed: no quarantine copy
    assert read_status(spool.root)["dead_letters_already_kept"] == 1


def test_slow_write_keeps_the_lock_alive(make_amqp_broker, spool):
    broker = make_amqp_broker(lock_duration=2.5)
    broker.send(QUEUE, double_encoded(records("FREQ")), subject="FREQ", message_id="slow.json")

    class SlowDisk(Spool):
        def write_incoming(self, *args, **kwargs):
            time.sleep(3.5)  # longer than the lock
            return super().write_incoming(*args, **kwargs)

    stats = IrisClient(settings_for(broker), SlowDisk(spool.root)).run(max_idle=0.5)

    assert (stats.completed, stats.lock_lost, stats.written, stats.duplicates) == (1, 0, 1, 0)
    assert broker.completed_count(QUEUE) == 1 and broker.queue_depth(QUEUE) == 0


# --- process life ----------------------------------------------------------------------------
def test_sigterm_mid_stream_exits_cleanly_and_loses_nothing(amqp_broker, tmp_path):
    sent = {f"FREQ_{i:05d}.json": double_encoded(records("FREQ", 2, i)) for i in range(3000)}
    for name, body in sent.items():
        amqp_broker.send(QUEUE, body, subject="FREQ", message_id=name)
    root = tmp_path / "spool"
    proc = start_cli(client_env(amqp_broker, root))
    try:
        wait_until(lambda: amqp_broker.completed_count(QUEUE) >= 200, 30, "the client to get going")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stop requested" in out
    landed = {name.split("/", 1)[1]: body for name, body in spool_files(root).items()}
    queued = {name: body for name, body in amqp_broker.pending_bodies(QUEUE)}
    assert 200 <= len(landed) < len(sent)
    assert {**landed, **queued} == sent and not landed.keys() & queued.keys()
    assert amqp_broker.locked_count(QUEUE) == 0  # in-hand messages finished, prefetched ones released
    assert read_status(root)["connected"] is False


def test_second_client_on_the_same_spool_is_refused(amqp_broker, tmp_path):
    root = tmp_path / "spool"
    first = start_cli(client_env(amqp_broker, root), "--max-idle", "30")
    try:
        wait_until(lambda: (read_status(root) or {}).get("connected"), 20, "the first client to connect")
        second = start_cli(client_env(amqp_broker, root), "--max-idle", "30")
        out, err = second.communicate(timeout=20)
        assert second.returncode == 2
        assert "already running" in err and str(first.pid) in err
        assert amqp_broker.consumer_count(QUEUE) == 1
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=20)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_secrets_never_reach_logs_or_status(make_amqp_broker, tmp_path):
    broker = make_amqp_broker()
    secret = "S3cr3tK3yV4lu3-never-log-me"
    conn = broker.connection_string().replace("SAS_KEY_VALUE", secret)
    broker.send(QUEUE, b"poison", subject="FREQ", message_id="p.json")
    broker.send(QUEUE, double_encoded(records("FREQ")), subject="FREQ", message_id="g.json")
    root = tmp_path / "spool"
    env = client_env(broker, root, IRIS_CONNECTION_STRING=conn, IRIS_CLIENT_SECRET=secret + "-2",
                     IRIS_CLIENT_ID="client-id")
    proc = start_cli(env, "--max-idle", "2", "--log-level", "DEBUG")
    try:
        wait_until(lambda: broker.completed_count(QUEUE) == 1 and broker.dead_letters(QUEUE), 20, "both messages")
        broker.stop()  # from now on every connection attempt fails and gets logged
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 0, err
    assert "dead-lettered" in err and "connection lost" in err.lower()
    status = (root / "client_status.json").read_text()
    assert json.loads(status)["last_error"]
    for text in (out, err, status):
        assert secret not in text
    settings = ClientSettings.from_env({"IRIS_CONNECTION_STRING": conn, "IRIS_QUEUE_NAME": QUEUE})
    assert secret not in repr(settings) and secret not in str(settings)


# --- settings and health ---------------------------------------------------------------------
def test_settings_from_env_and_from_elexon_settings_file(tmp_path):
    env = {"IRIS_CLIENT_ID": "cid", "IRIS_CLIENT_SECRET": "shh-secret", "IRIS_QUEUE_NAME": "iris.q",
           "IRIS_SECRET_EXPIRES": "2027-08-01"}
    s = ClientSettings.from_env(env)
    assert s.fully_qualified_namespace == "elexon-insights-iris.servicebus.windows.net"
    assert s.tenant_id == "4203b7a0-7773-4de5-b830-8b263a20426e"
    assert s.secret_expires == dt.date(2027, 8, 1) and "shh-secret" not in repr(s)
    assert ClientSettings.from_env({**env, "IRIS_NAMESPACE": "ns.example.net"}).fully_qualified_namespace == \
        "ns.example.net"
    conn = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
    assert ClientSettings.from_env({"IRIS_CONNECTION_STRING": conn + ";EntityPath=iris.x"}).queue_name == "iris.x"

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"ClientId": "file-cid", "QueueName": "iris.file", "ServiceBusNamespace":
                                "other-ns", "Secret": "file-secret", "RelativeFileDownloadDirectory": "./data"}))
    f = ClientSettings.from_settings_file(path, env={})
    assert (f.client_id, f.queue_name, f.client_secret) == ("file-cid", "iris.file", "file-secret")
    assert f.fully_qualified_namespace == "other-ns.servicebus.windows.net" and "file-secret" not in repr(f)

    with pytest.raises(ConfigError) as missing:
        ClientSettings.from_env({"IRIS_QUEUE_NAME": "q", "IRIS_CLIENT_SECRET": "lonely-secret"})
    assert "lonely-secret" not in str(missing.value)
    with pytest.raises(ConfigError):
        ClientSettings.from_env({"IRIS_CONNECTION_STRING": conn})  # no queue anywhere


def test_client_health():
    now = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.timezone.utc)

    def status(**kw):
        base = {"pid": 1, "started_at": "2026-01-10T11:00:00+00:00", "connected": True,
                "last_message_at": "2026-01-10T11:59:50+00:00", "updated_at": "2026-01-10T11:59:59+00:00",
                "received": 5, "completed": 5, "dead_lettered": 0, "abandoned": 0, "last_error": None,
                "secret_expires": "2027-01-01", "disconnected_since": None}
        return {**base, **kw}

    ok, text, meta = client_health(status(), now, 300)
    assert ok and "healthy" in text and meta["seconds_since_last_message"] == 10
    assert client_health(None, now, 300)[0] is False
    down = client_health(status(updated_at="2026-01-10T11:57:00+00:00"), now, 300)
    assert down[0] is False and "client down" in down[1]
    silent = client_health(status(last_message_at="2026-01-10T11:50:00+00:00"), now, 300)
    assert silent[0] is False and "no IRIS message for 600 s" in silent[1]
    never = client_health(status(last_message_at=None), now, 300)
    assert never[0] is False  # started an hour ago and nothing since
    cut_off = client_health(status(connected=False, disconnected_since="2026-01-10T11:55:00+00:00"), now, 3600)
    assert cut_off[0] is False and "disconnected" in cut_off[1]
    blip = client_health(status(connected=False, disconnected_since="2026-01-10T11:59:30+00:00"), now, 3600)
    assert blip[0] is True
    warn = client_health(status(secret_expires="2026-01-25"), now, 300)
    assert warn[0] is True and warn[1].startswith("WARNING") and warn[2]["secret_days_left"] == 15
    expired = client_health(status(secret_expires="2026-01-09"), now, 300)
    assert expired[0] is False and "expired" in expired[1]
    stuck = client_health(status(write_failing_since="2026-01-10T11:58:30+00:00", writes_failing=3,
                                 last_write_error="write failed for FREQ/F.json (attempt 9): [Errno 28]"), now, 300)
    assert stuck[0] is False and "spool writes failing since" in stuck[1] and "[Errno 28]" in stuck[1]
    assert stuck[2]["writes_failing"] == 3
    retrying = client_health(status(write_failing_since="2026-01-10T11:59:30+00:00", writes_failing=1), now, 300)
    assert retrying[0] is True  # a write failing for 30 s is still being retried


# --- the test broker itself ------------------------------------------------------------------
def test_broker_expires_locks_and_dead_letters_after_max_deliveries(make_amqp_broker):
    from azure.servicebus import ServiceBusClient
    from azure.servicebus.exceptions import MessageLockLostError

    broker = make_amqp_broker(lock_duration=0.5, max_delivery_count=3)
    broker.send(QUEUE, b"[]", subject="FREQ", message_id="m.json")
    with ServiceBusClient.from_connection_string(broker.connection_string(), retry_total=0) as client:
        with client.get_queue_receiver(QUEUE, prefetch_count=0) as receiver:
            first = receiver.receive_messages(max_message_count=1, max_wait_time=5)[0]
            assert first.delivery_count == 1 and first.lock_token and first.message_id == "m.json"
            second = receiver.receive_messages(max_message_count=1, max_wait_time=5)[0]  # after lock expiry
            assert second.delivery_count == 2 and second.lock_token != first.lock_token
            with pytest.raises(MessageLockLostError):
                receiver.complete_message(first)
            receiver.renew_message_lock(second)
            receiver.abandon_message(second)
            third = receiver.receive_messages(max_message_count=1, max_wait_time=5)[0]
            assert third.delivery_count == 3
            receiver.abandon_message(third)
            assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
    dead = broker.dead_letters(QUEUE)
    assert [(d.message_id, d.reason) for d in dead] == [("m.json", "MaxDeliveryCountExceeded")]
    assert broker.queue_depth(QUEUE) == 0


def test_broker_dead_letter_sub_queue_ttl_and_released_deliveries(make_amqp_broker):
    from azure.servicebus import ServiceBusClient, ServiceBusSubQueue

    broker = make_amqp_broker(lock_duration=5, max_delivery_count=5)
    broker.send(QUEUE, b"[1]", subject="FREQ", message_id="ttl.json", time_to_live=0.1)
    wait_until(lambda: broker.dead_letter_depth(QUEUE) == 1, 5, "the TTL expiry")
    broker.send_many(QUEUE, [{"body": b"[2]", "message_id": "a.json"}, {"body": b"[3]", "message_id": "b.json"}])
    with ServiceBusClient.from_connection_string(broker.connection_string(), retry_total=0) as client:
        with client.get_queue_receiver(QUEUE, prefetch_count=10) as receiver:
            (first,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert broker.locked_count(QUEUE) == 2  # the other one waits in the receiver's buffer
            receiver.dead_letter_message(first, reason="Mine", error_description="why")
        assert broker.delivery_counts(QUEUE) == {"b.json": 0}  # prefetched, released on close: not counted
        with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            dead = dlq.receive_messages(max_message_count=5, max_wait_time=5)
            got = {(m.message_id, m.dead_letter_reason, m.dead_letter_error_description) for m in dead}
            dlq.renew_message_lock(dead[0])
            for message in dead:
                dlq.complete_message(message)
    assert got == {("ttl.json", "TTLExpiredException", "The message expired and was dead lettered."),
                   (first.message_id, "Mine", "why")}
    assert broker.dead_letter_depth(QUEUE) == 0 and len(broker.dead_letters(QUEUE)) == 2


def test_broker_takes_messages_from_sdk_senders_single_and_batched(amqp_broker):
    from azure.servicebus import ServiceBusClient, ServiceBusMessage

    with ServiceBusClient.from_connection_string(amqp_broker.connection_string()) as client:
        with client.get_queue_sender(QUEUE) as sender:
            sender.send_messages(ServiceBusMessage(b'[{"a": 1}]', subject="FREQ", message_id="one.json"))
            sender.send_messages([ServiceBusMessage(f'[{{"b": {i}}}]'.encode(), subject="MID",
                                                    message_id=f"batch{i}.json") for i in range(3)])
    assert amqp_broker.pending_bodies(QUEUE) == [
        ("one.json", b'[{"a": 1}]'), ("batch0.json", b'[{"b": 0}]'), ("batch1.json", b'[{"b": 1}]'),
        ("batch2.json", b'[{"b": 2}]')]
