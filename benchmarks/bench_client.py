"""IRIS client throughput: messages/s received, durably written and completed.

Loads N realistic messages (2–5 KB double-encoded JSON arrays, several datasets) into the in-process
AMQP test broker, runs the real client (`python -m iris_pipeline.cli client`) as a separate process
until the queue is drained, and checks every message landed exactly once. To show what bounds the
figure, the same run also measures, on this machine:
  * durable spool writes alone (write, fsync file, link, fsync directory),
  * the same writes without fsync,
  * receive + complete alone through the SDK (no disk), with the same prefetch and batch size.
The broker runs in this process, the client in its own: on a 2-core machine they share the cores.

    .venv/bin/python benchmarks/bench_client.py                 # 20,000 messages, default settings
    .venv/bin/python benchmarks/bench_client.py --count 5000 --variants   # prefetch/batch matrix too
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from iris_pipeline.spool import Spool  # noqa: E402
from iris_pipeline_tests.amqp_broker import AmqpTestBroker  # noqa: E402

DATASETS = ["BOD", "BOALF", "FREQ", "FUELINST", "MELS", "MILS", "PN", "DISEBSP"]
DEFAULT_PREFETCH, DEFAULT_BATCH, DEFAULT_WRITERS = 500, 100, 4
WINDOW_S = 2.0


def make_messages(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    messages = []
    for i in range(count):
        dataset = DATASETS[i % len(DATASETS)]
        target = rng.randint(2000, 5000)
        records, size = [], 2
        while size < target:
            record = {
                "dataset": dataset, "settlementDate": "2025-06-01", "settlementPeriod": rng.randint(1, 48),
                "timeFrom": "2025-06-01T10:00:00Z", "timeTo": "2025-06-01T10:30:00Z",
                "bmUnit": f"T_UNIT-{rng.randint(1, 400)}", "nationalGridBmUnit": f"UNIT-{rng.randint(1, 400)}",
                "levelFrom": rng.randint(0, 900), "levelTo": rng.randint(0, 900),
                "notificationSequence": rng.randint(1, 99999), "publishTime": "2025-06-01T09:58:12Z",
            }
            records.append(record)
            size += len(json.dumps(record)) * 1.15 + 2
        body = json.dumps(json.dumps(records)).encode()
        name = f"{dataset}_202506011000_{i:08d}.json"
        messages.append({"body": body, "subject": dataset, "message_id": name})
    return messages


def run_client(broker: AmqpTestBroker, queue: str, count: int, prefetch: int, batch: int, writers: int) -> dict:
    spool_root = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    env = dict(os.environ, IRIS_SPOOL_DIR=str(spool_root), IRIS_QUEUE_NAME=queue,
               IRIS_CONNECTION_STRING=broker.connection_string(), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "iris_pipeline.cli", "--log-level", "WARNING", "client", "--max-idle", "3",
           "--prefetch", str(prefetch), "--batch-size", str(batch), "--writers", str(writers)]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    first = None
    windows, mark = [], (0, 0.0)
    while (done := broker.completed_count(queue)) < count:
        now = time.perf_counter()
        if first is None and done:
            first, mark = now, (done, now)
        elif first is not None and now - mark[1] >= WINDOW_S:
            windows.append((done - mark[0]) / (now - mark[1]))
            mark = (done, now)
        if proc.poll() is not None:
            raise SystemExit(f"client exited early with {proc.returncode}")
        time.sleep(0.02)
    drained = time.perf_counter()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    out, _ = proc.communicate(timeout=60)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    files = sum(len(files) for _, _, files in os.walk(spool_root / "incoming"))
    shutil.rmtree(spool_root, ignore_errors=True)
    assert files == count, f"{files} files for {count} messages"
    assert broker.queue_depth(queue) == 0 and not broker.dead_letters(queue)
    broker_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "rate_steady": count / (drained - first),
        "rate_wall": count / (drained - started),
        "windows": sorted(windows),
        "seconds": drained - started,
        "broker_cpu_share": broker_cpu / (drained - started),
        "client_cpu_s": children.ru_utime + children.ru_stime,
        "stats": json.loads(out.strip().splitlines()[-1])["client"],
    }


def spool_write_rate(messages: list[dict], durable: bool) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-write-"))
    spool = Spool(root)
    started = time.perf_counter()
    for m in messages:
        spool.write_incoming(m["subject"], m["message_id"], m["body"], durable=durable)
    rate = len(messages) / (time.perf_counter() - started)
    shutil.rmtree(root, ignore_errors=True)
    return rate


RECEIVE_ONLY = """
import sys, time
from azure.servicebus import ServiceBusClient
conn, queue, count, prefetch, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
done, first = 0, None
with ServiceBusClient.from_connection_string(conn) as client:
    with client.get_queue_receiver(queue, prefetch_count=prefetch) as receiver:
        while done < count:
            for message in receiver.receive_messages(max_message_count=batch, max_wait_time=5):
                first = first or time.perf_counter()
                b"".join(message.body)
                receiver.complete_message(message)
                done += 1
        print(count / (time.perf_counter() - first))
"""


def receive_only_rate(broker: AmqpTestBroker, queue: str, messages: list[dict], prefetch: int, batch: int) -> float:
    """Steady-state receive + complete through the SDK in its own process, no disk at all."""
    broker.send_many(queue, messages)
    out = subprocess.run([sys.executable, "-c", RECEIVE_ONLY, broker.connection_string(), queue,
                          str(len(messages)), str(prefetch), str(batch)],
                         check=True, timeout=600, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--writers", type=int, default=DEFAULT_WRITERS)
    parser.add_argument("--variants", action="store_true", help="also try other prefetch/batch/writers settings")
    args = parser.parse_args()

    print(f"generating {args.count} messages …", flush=True)
    messages = make_messages(args.count)
    sizes = sorted(len(m["body"]) for m in messages)
    print(f"body sizes: min {sizes[0]} B, median {sizes[len(sizes) // 2]} B, max {sizes[-1]} B; "
          f"{os.cpu_count()} CPUs")

    load_before = os.getloadavg()[0]
    broker = AmqpTestBroker()
    broker.start()
    try:
        broker.send_many("bench-main", messages)
        main_run = run_client(broker, "bench-main", args.count, args.prefetch, args.batch_size, args.writers)
        sample = messages[: min(5000, args.count)]
        durable = spool_write_rate(sample, durable=True)
        lazy = spool_write_rate(sample, durable=False)
        receive = receive_only_rate(broker, "bench-receive", sample, args.prefetch, args.batch_size)
        variants = []
        if args.variants:
            for setting in [(0, 1, 1), (500, 100, 1), (0, 100, 4), (50, 20, 4), (500, 100, 4), (2000, 500, 8)]:
                queue = "bench-{}-{}-{}".format(*setting)
                subset = messages[: min(5000, args.count)]
                broker.send_many(queue, subset)
                variants.append((setting, run_client(broker, queue, len(subset), *setting)))
    finally:
        broker.stop()

    print()
    print(f"client, {args.count} messages (prefetch {args.prefetch}, batch {args.batch_size}, "
          f"{args.writers} writer threads):")
    print(f"  {main_run['rate_steady']:.0f} msg/s received + durably written + completed (steady state)")
    print(f"  {main_run['rate_wall']:.0f} msg/s including client start-up ({main_run['seconds']:.1f} s)")
    w = main_run["windows"]
    if w:
        print(f"  per {WINDOW_S:g}-s window: min {w[0]:.0f}, median {w[len(w) // 2]:.0f}, max {w[-1]:.0f} msg/s; "
              f"load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f} (other processes share the "
              "2 cores and the disk)")
    print(f"  client CPU {main_run['client_cpu_s']:.1f} s; broker thread busy {main_run['broker_cpu_share']:.0%}")
    print(f"  stats: {main_run['stats']}")
    print("what bounds it (same machine, same messages, each measured alone):")
    print(f"  durable spool writes alone:      {durable:7.0f} msg/s  ({1000 / durable:.2f} ms each: 2 fsyncs)")
    print(f"  spool writes without fsync:      {lazy:7.0f} msg/s  ({1000 / lazy:.2f} ms each)")
    print(f"  SDK receive + complete, no disk: {receive:7.0f} msg/s  ({1000 / receive:.2f} ms each)")
    print(f"  client: {1000 / main_run['rate_steady']:.2f} ms per message. Writer threads store a batch in "
          "parallel (their fsyncs share journal commits) while the receiving thread settles each message "
          "once its own write is durable; complete_message waits for the broker's settled disposition "
          "(receiver-settle-mode second), one message at a time, in the SDK's pure-Python AMQP stack")
    for (prefetch, batch, writers), run in variants:
        print(f"  variant prefetch={prefetch:5d} batch={batch:4d} writers={writers}: {run['rate_steady']:6.0f} msg/s")
    target = 500
    print(f"\nRESULT {main_run['rate_steady']:.0f} msg/s (target ≥ {target}): "
          f"{'PASS' if main_run['rate_steady'] >= target else 'FAIL'}")


if __name__ == "__main__":
    main()
