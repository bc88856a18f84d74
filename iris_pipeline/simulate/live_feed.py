"""The live feed: `run` writes the simulator's messages into a spool as they fall due, and the
`iris-pipeline simulate` command line around it."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

from iris_pipeline.arg_types import non_negative_number, positive_int, positive_number
from iris_pipeline.simulate.settlement_time import MINUTE, UTC, floor_time
from iris_pipeline.simulate.simulator import Simulator
from iris_pipeline.spool import Spool

log = logging.getLogger(__package__)  # "iris_pipeline.simulate", as before the split into modules

POLL_SECONDS = 1.0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(
    spool: Spool | str | os.PathLike[str],
    *,
    count: int | None = None,
    duration: float | None = None,
    backfill_minutes: float = 15,
    realtime: bool = True,
    speed: float = 1.0,
    stop_event: threading.Event | None = None,
    seed: int = 0,
    now: dt.datetime | None = None,
) -> int:
    """Write the last `backfill_minutes` of messages, then keep writing them as they fall due.

    Stops after `count` new messages, `duration` seconds, `stop_event`, SIGINT or SIGTERM. With
    realtime=False the simulated clock advances a minute per step without sleeping. `now` (default: the
    wall clock) is where the simulated clock starts. A message already in the spool (incoming or archive)
    is not written again: a restart regenerates its backfill with the same names and bytes, so it resumes
    the feed rather than rewriting it. Returns the number of messages written.
    """
    spool = spool if isinstance(spool, Spool) else Spool(spool)
    stop = stop_event or threading.Event()
    began = time.monotonic()
    now = floor_time(now or dt.datetime.now(UTC), 1)
    simulator = Simulator(seed=seed, start=now - dt.timedelta(minutes=backfill_minutes))
    clock = now
    written = 0
    with _stop_on_signals(stop):
        while not stop.is_set():
            for message in simulator.messages_due(clock):
                if stop.is_set() or (count is not None and written >= count):
                    break
                # Not durable: synthetic data lost in a power cut is not worth an fsync per file.
                # The write is still atomic, so a reader never sees a partial file.
                written += spool.write_incoming(message.dataset, message.file_name, message.body, durable=False)
            elapsed = time.monotonic() - began
            if (count is not None and written >= count) or (duration is not None and elapsed >= duration):
                break
            if realtime:
                wait = POLL_SECONDS if duration is None else min(POLL_SECONDS, duration - elapsed)
                stop.wait(max(0.0, wait))
                clock = now + dt.timedelta(seconds=(time.monotonic() - began) * speed)
            else:
                clock += MINUTE
    return written


# --- command line --------------------------------------------------------------------------------

def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=positive_int, metavar="N",
                        help="write N new messages as fast as possible (simulated time, no sleeping), then exit")
    parser.add_argument("--duration", type=positive_number, metavar="S", help="stop after S seconds")
    parser.add_argument("--backfill-minutes", type=non_negative_number, default=15, metavar="M",
                        help="first write the messages of the last M minutes (default 15); messages already "
                             "in the spool are not written again, so a restart resumes the feed")
    parser.add_argument("--speed", type=positive_number, default=1.0, metavar="X",
                        help="simulated seconds per real second (default 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the same seed gives the same messages, names and bytes (default 0)")
    parser.add_argument("--spool-dir", help="spool root (default: $IRIS_SPOOL_DIR or data/spool)")


def main_simulate(args: argparse.Namespace) -> int:
    spool_dir = Path(args.spool_dir or os.environ.get("IRIS_SPOOL_DIR", "data/spool"))
    log.info("simulating IRIS into %s", spool_dir)
    written = run(
        Spool(spool_dir),
        count=args.count,
        duration=args.duration,
        backfill_minutes=args.backfill_minutes,
        realtime=args.count is None,
        speed=args.speed,
        seed=args.seed,
    )
    print(f"wrote {written} messages to {spool_dir / 'incoming'}")
    return 0
