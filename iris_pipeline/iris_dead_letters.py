"""The IRIS queue's dead-letter sub-queue, read into `quarantine/`, so nothing the broker gives up on goes unseen.

The broker dead-letters what no client took in time (MaxDeliveryCountExceeded after 5 deliveries,
TTLExpiredException) and what the client refused itself (undecodable bodies, already quarantined by
the client). Nothing else reads the sub-queue, so every message there is moved to
`quarantine/<DATASET>/<file>` with the broker's reason in `<file>.error` and completed on the
sub-queue only once that copy is durable. An operator who moves the file to `incoming/<DATASET>/`
gets it loaded. A message whose file already landed in `incoming/` or `archive/` (its write
succeeded, its completion did not) is completed without a copy: nothing was lost.

Framework-free; runs as a thread of the IRIS client, on its own connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from iris_pipeline.codec import DecodeError, decode_body
from iris_pipeline.iris_client import (
    ClientSettings,
    Redactor,
    _is_expected_failure,
    backoff_delay,
    message_body,
    route,
)
from iris_pipeline.spool import Spool

log = logging.getLogger(__name__)

RECEIVE_WAIT_S = 1.0  # each receive returns within this, so a stop is seen within about a second
BATCH = 50


@dataclass(frozen=True)
class Placement:
    dataset: str
    file_name: str
    kept: bool  # the same bytes are already in incoming/ or archive/, or in quarantine/ at this name


class DeadLetterDrain:
    def __init__(self, settings: ClientSettings, spool: Spool, redactor: Redactor):
        self.settings = settings
        self.spool = spool
        self.redactor = redactor
        self.quarantined = 0
        self.already_kept = 0  # its bytes were already in incoming/, archive/ or quarantine/
        self.last_error: str | None = None

    def run(self, done: threading.Event, stop: threading.Event | None = None) -> None:
        """Drain, reconnecting with backoff, until `stop` is set, or until `done` is set and the
        sub-queue is found empty (the client exits once idle: so is its dead-letter queue)."""
        stop = stop or done
        attempt = 0
        while not (done.is_set() or stop.is_set()):
            try:
                self._drain(done, stop)
                attempt = 0
            except Exception as exc:  # noqa: BLE001 - every failure here means: reconnect
                attempt += 1
                self.last_error = self.redactor.redact(f"{type(exc).__name__}: {exc}")[:500]
                delay = backoff_delay(attempt, initial=1.0, cap=60.0)
                log.warning("dead-letter queue: %s; retrying in %.1f s", self.last_error, delay,
                            exc_info=not _is_expected_failure(exc))
                done.wait(delay)

    def _drain(self, done: threading.Event, stop: threading.Event) -> None:
        from azure.servicebus import ServiceBusSubQueue

        with self.settings.service_bus_client() as client:
            receiver = client.get_queue_receiver(self.settings.queue_name, sub_queue=ServiceBusSubQueue.DEAD_LETTER,
                                                 prefetch_count=0)
            with receiver:
                failures = 0
                while not stop.is_set():
                    messages = receiver.receive_messages(max_message_count=BATCH, max_wait_time=RECEIVE_WAIT_S)
                    self.last_error = None
                    if done.is_set() and not messages:
                        return
                    for message in messages:
                        if self.take(receiver, message):
                            failures = 0
                            continue
                        if done.is_set():
                            return  # the spool cannot take it and the client is leaving: it stays there
                        failures += 1  # the spool cannot take it: give it back and pause
                        done.wait(backoff_delay(failures, initial=1.0, cap=60.0))
                        break

    def take(self, receiver, message) -> bool:
        """Quarantine one dead-lettered message and complete it; False (abandoned) when the write fails.

        Abandoning on the dead-letter sub-queue spends nothing: it has no delivery limit."""
        body = message_body(message)
        reason = message.dead_letter_reason or "unknown"
        description = message.dead_letter_error_description or ""
        place = self._placement(message, body)
        if place.kept:
            self.already_kept += 1
            log.info("dead-lettered %s/%s (%s) is already kept in the spool; removing it from the dead-letter queue",
                     place.dataset, place.file_name, reason)
        else:
            text = (f"dead-lettered by the IRIS broker: {reason}: {description} "
                    f"(delivery count {message.delivery_count}, message id {message.message_id!s:.200}). "
                    f"To load it, move it to incoming/{place.dataset}/")
            try:
                self.spool.quarantine_bytes(place.dataset, place.file_name, body, text)
            except OSError as exc:
                self.last_error = self.redactor.redact(f"quarantine write failed for "
                                                       f"{place.dataset}/{place.file_name}: {exc}")[:500]
                log.error("%s; the message stays on the dead-letter queue", self.last_error)
                receiver.abandon_message(message)
                return False
            self.quarantined += 1
            log.error("broker dead-lettered %s/%s (%s: %s): kept in quarantine", place.dataset, place.file_name,
                      reason, description)
        receiver.complete_message(message)
        return True

    def _placement(self, message, body: bytes) -> Placement:
        try:
            records = decode_body(body)
        except DecodeError:
            records = None
        where = route(message, records, dt.datetime.now(dt.timezone.utc))
        dataset = where.dataset or "_invalid"
        file_name = where.file_name or f"message_{message.sequence_number}.json"
        routable = bool(where.dataset and where.file_name)
        if routable and (_same_bytes(self.spool.incoming / dataset / file_name, body)
                         or self.spool.is_archived(dataset, file_name)):
            return Placement(dataset, file_name, kept=True)  # written; only its completion was lost
        existing = self.spool.quarantine / dataset / file_name
        if _same_bytes(existing, body):  # the client quarantined it before dead-lettering it
            return Placement(dataset, file_name, kept=True)
        if existing.exists():  # another message by that name waits there: keep both
            file_name = f"{file_name}.dead-letter-{message.sequence_number}"
        return Placement(dataset, file_name, kept=False)


def _same_bytes(path, body: bytes) -> bool:
    try:
        return path.read_bytes() == body
    except OSError:
        return False
