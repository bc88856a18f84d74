"""The IRIS client: Azure Service Bus queue → spool, at least once, never lost, never doubled.

Per message, in peek-lock: route it (dataset from `subject`, file name from `message_id`), write it
durably into `incoming/<DATASET>/<file>` and only then complete it. A redelivered message finds its
file already there and is completed without a second write (a different body under the same id
is another message: the spool keeps it under its own name). Undecodable bodies are dead-lettered
with a copy in `quarantine/`. Writer threads store the messages of a batch while the receiving
thread settles each one as soon as its own write is durable.

A failed write (disk full, I/O error, a blocked dataset directory) never gives a message back: IRIS
dead-letters a message after 5 deliveries, so the client keeps it locked (renewing the lock), retries
the write with backoff and completes it once the write succeeds; the status file records how long
writes have been failing, for `client_health`. Whatever the broker dead-letters anyway (its lock
lost, TTL expiry) is read off the dead-letter sub-queue into `quarantine/` (iris_dead_letters).
`IRIS_CLIENT_TEST_CRASH_AFTER_WRITE=N` (tests only) SIGKILLs the process right after the N-th durable
write, before its completion.

Framework-free: the Dagster layer only reads the status file through `client_health`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import orjson

from iris_pipeline.codec import DecodeError, decode_body
from iris_pipeline.config import ELEXON_TENANT_ID
from iris_pipeline.registry import is_valid_dataset_code
from iris_pipeline.spool import InvalidName, Spool, safe_file_name

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "elexon-insights-iris"
LOCK_FILE = "client.lock"
STATUS_FILE = "client_status.json"
CLIENT_DOWN_AFTER_S = 120.0
WRITES_FAILING_AFTER_S = 60.0  # client_health fails once a write has kept failing this long
WRITE_RETRY_MAX_DELAY_S = 5.0  # a failing write is retried at least this often
HOLD_POLL_S = 0.5  # how often the receiving thread looks up from a batch that is still being written
DEFAULT_LOCK_S = 60.0  # Service Bus's default lock duration, when a message does not say
PREFETCHED_ONLY_WAIT_S = 1e-6  # receive_messages serves its buffer first; no time left to ask for more
SECRET_WARNING_DAYS = 30
CRASH_HOOK_ENV = "IRIS_CLIENT_TEST_CRASH_AFTER_WRITE"


class ConfigError(ValueError):
    """The client settings are incomplete or malformed (the message never contains a secret)."""


class ClientAlreadyRunning(RuntimeError):
    """Another client holds the spool's lock file."""


# --- settings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSettings:
    queue_name: str
    namespace: str = DEFAULT_NAMESPACE
    tenant_id: str = ELEXON_TENANT_ID
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    secret_expires: dt.date | None = None
    prefetch: int = 500
    batch_size: int = 100
    max_wait_s: float = 1.0
    writers: int = 4
    drain_dead_letters: bool = True

    def __post_init__(self) -> None:
        if not self.queue_name:
            raise ConfigError("no queue name: set IRIS_QUEUE_NAME (or EntityPath in the connection string)")
        if not self.connection_string and not (self.client_id and self.client_secret):
            raise ConfigError("set IRIS_CLIENT_ID and IRIS_CLIENT_SECRET, or IRIS_CONNECTION_STRING")

    @property
    def fully_qualified_namespace(self) -> str:
        return self.namespace if "." in self.namespace else f"{self.namespace}.servicebus.windows.net"

    @property
    def secrets(self) -> list[str]:
        found = [self.client_secret, self.connection_string]
        found += _connection_string_secrets(self.connection_string or "")
        return [s for s in found if s and len(s) >= 4]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "ClientSettings":
        env = os.environ if env is None else env
        conn = env.get("IRIS_CONNECTION_STRING") or None
        values = dict(
            queue_name=env.get("IRIS_QUEUE_NAME") or _entity_path(conn) or "",
            namespace=env.get("IRIS_NAMESPACE") or DEFAULT_NAMESPACE,
            tenant_id=env.get("IRIS_TENANT_ID") or ELEXON_TENANT_ID,
            client_id=env.get("IRIS_CLIENT_ID") or None,
            client_secret=env.get("IRIS_CLIENT_SECRET") or None,
            connection_string=conn,
            secret_expires=_parse_date(env.get("IRIS_SECRET_EXPIRES")),
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_settings_file(cls, path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                           **overrides: Any) -> "ClientSettings":
        """Elexon's official client settings (ClientId, QueueName, ServiceBusNamespace, Secret)."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read settings file {path}: {type(exc).__name__}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"settings file {path} is not a JSON object")
        file_values = {
            "queue_name": doc.get("QueueName"),
            "namespace": doc.get("ServiceBusNamespace"),
            "tenant_id": doc.get("TenantId"),
            "client_id": doc.get("ClientId"),
            "client_secret": doc.get("Secret"),
            "secret_expires": _parse_date(doc.get("SecretExpires")),
        }
        file_values = {k: v for k, v in file_values.items() if v}
        if "client_id" in file_values and "client_secret" in file_values:
            file_values["connection_string"] = None  # the file's credentials win over the environment's
        return cls.from_env(env, **{**file_values, **overrides})

    def service_bus_client(self):
        from azure.servicebus import ServiceBusClient

        retry = dict(retry_total=2, retry_backoff_factor=0.5, retry_backoff_max=10)
        if self.connection_string:
            return ServiceBusClient.from_connection_string(self.connection_string, **retry)
        from azure.identity import ClientSecretCredential

        credential = ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret)
        return ServiceBusClient(self.fully_qualified_namespace, credential, **retry)


def _connection_string_parts(conn: str) -> dict[str, str]:
    parts = (p.split("=", 1) for p in conn.strip().rstrip(";").split(";") if "=" in p)
    return {k.strip().lower(): v.strip() for k, v in parts}


def _connection_string_secrets(conn: str) -> list[str]:
    parts = _connection_string_parts(conn)
    return [parts[k] for k in ("sharedaccesskey", "sharedaccesssignature") if parts.get(k)]


def _entity_path(conn: str | None) -> str | None:
    return _connection_string_parts(conn).get("entitypath") if conn else None


def _parse_date(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(str(text).strip()[:10])
    except ValueError:
        raise ConfigError(f"secret expiry must be YYYY-MM-DD, not {str(text)[:20]!r}") from None


# --- secrets never leave the process ---------------------------------------------------------
class Redactor(logging.Filter):
    """Replaces known secrets in every log record passing through a handler."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.redact(record.getMessage()), None
            if record.exc_info:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_redactor(redactor: Redactor) -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redactor) and f.secrets == redactor.secrets for f in handler.filters):
            handler.addFilter(redactor)


# --- routing: which file a message becomes ---------------------------------------------------
@dataclass(frozen=True)
class Route:
    dataset: str | None
    file_name: str | None
    problem: str | None = None  # dead-letter reason
    detail: str = ""


def message_body(message) -> bytes:
    from azure.servicebus.amqp import AmqpMessageBodyType

    body = message.body
    if message.body_type == AmqpMessageBodyType.DATA:
        return body if isinstance(body, (bytes, bytearray)) else b"".join(body)
    if message.body_type == AmqpMessageBodyType.VALUE:
        if isinstance(body, (bytes, bytearray)):
            return bytes(body)
        if isinstance(body, str):
            return body.encode("utf-8")
    return orjson.dumps(body, default=str)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _app_property(message, name: str) -> str | None:
    props = message.application_properties or {}
    return _text(props.get(name.encode()) or props.get(name))


def spool_file_name(untrusted: str) -> str:
    """A single safe path component; a changed name gets a hash of the original so two never collide."""
    name = safe_file_name(untrusted)
    if name == untrusted:
        return name
    digest = hashlib.sha256(untrusted.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}-{digest}.{suffix}" if dot and stem else f"{name}-{digest}"


def route(message, records: list[dict] | None, received_at: dt.datetime) -> Route:
    dataset, problem, detail = _route_dataset(message, records)
    name = _text(message.message_id) or _app_property(message, "source_file_name")
    if not name:
        when = message.enqueued_time_utc or received_at
        seq = f"_{message.sequence_number}" if message.sequence_number is not None else ""
        name = f"{dataset or 'UNKNOWN'}_{when.strftime('%Y%m%dT%H%M%S%fZ')}{seq}.json"
    try:
        file_name = spool_file_name(name)
    except InvalidName:
        file_name = None
        problem, detail = problem or "InvalidFileName", detail or f"no usable file name in {name[:80]!r}"
    return Route(dataset, file_name, problem, detail)


def _route_dataset(message, records: list[dict] | None) -> tuple[str | None, str | None, str]:
    dataset = _text(message.subject) or None
    if dataset is None and records and isinstance(records[0], dict):
        dataset = _text(records[0].get("dataset"))
    if dataset is None:
        return None, "NoDataset", "no subject and no dataset field in the body"
    if not is_valid_dataset_code(dataset):
        return None, "InvalidDataset", f"dataset {dataset[:80]!r} is not a valid dataset code"
    return dataset, None, ""


# --- status file and health ------------------------------------------------------------------
def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value else None


def _parse_iso(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def read_status(spool_root: str | os.PathLike[str]) -> dict | None:
    try:
        return json.loads((Path(spool_root) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def client_health(status: dict | None, now: dt.datetime, max_silence_s: float) -> tuple[bool, str, dict]:
    """(passed, description, metadata) for the client's status file.

    Fails when there is no status, when it has not been updated for over 2 minutes (client down),
    when the client has been disconnected for over 2 minutes, when a spool write has kept failing
    for over a minute (the messages wait, locked, on the broker), when no message arrived for more
    than `max_silence_s`, or when the secret has expired. Passes with a warning when the secret
    expires within 30 days."""
    if not status:
        return False, "no IRIS client status: the client has not run on this spool", {}
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    updated = _parse_iso(status.get("updated_at"))
    last_message = _parse_iso(status.get("last_message_at"))
    since_message = now - (last_message or _parse_iso(status.get("started_at")) or now)
    meta: dict[str, Any] = {
        "pid": status.get("pid"),
        "connected": bool(status.get("connected")),
        "received": status.get("received", 0),
        "completed": status.get("completed", 0),
        "dead_lettered": status.get("dead_lettered", 0),
        "abandoned": status.get("abandoned", 0),
        "writes_failing": status.get("writes_failing", 0),
        "dead_letters_quarantined": status.get("dead_letters_quarantined", 0),
        "seconds_since_update": (now - updated).total_seconds() if updated else None,
        "seconds_since_last_message": since_message.total_seconds(),
        "last_error": status.get("last_error"),
    }
    expires = _parse_date_quietly(status.get("secret_expires"))
    days_left = (expires - now.date()).days if expires else None
    meta["secret_days_left"] = days_left
    disconnected = _parse_iso(status.get("disconnected_since"))
    failures = []
    if updated is None or (now - updated).total_seconds() > CLIENT_DOWN_AFTER_S:
        failures.append(f"client down: status not updated since {status.get('updated_at')}")
    elif not meta["connected"] and disconnected and (now - disconnected).total_seconds() > CLIENT_DOWN_AFTER_S:
        failures.append(f"client disconnected since {status.get('disconnected_since')}: {status.get('last_error')}")
    failing_since = _parse_iso(status.get("write_failing_since"))
    if failing_since and (now - failing_since).total_seconds() > WRITES_FAILING_AFTER_S:
        failures.append(f"spool writes failing since {status.get('write_failing_since')} "
                        f"({status.get('writes_failing', 0)} messages held): {status.get('last_write_error')}")
    if since_message.total_seconds() > max_silence_s:
        failures.append(f"no IRIS message for {since_message.total_seconds():.0f} s (limit {max_silence_s:.0f} s)")
    if days_left is not None and days_left < 0:
        failures.append(f"IRIS client secret expired on {expires}")
    if failures:
        return False, "; ".join(failures), meta
    if days_left is not None and days_left <= SECRET_WARNING_DAYS:
        meta["warning"] = f"IRIS client secret expires in {days_left} days ({expires}): renew it"
        return True, f"WARNING: {meta['warning']}", meta
    return True, f"IRIS client healthy: {meta['completed']} messages completed", meta


def _parse_date_quietly(value: Any) -> dt.date | None:
    try:
        return _parse_date(value)
    except ConfigError:
        return None


# --- the client ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    action: str  # complete | dead-letter | lock-lost (the broker redelivers) | abandon (on stop only)
    where: Route
    written: bool = False
    reason: str = ""
    detail: str = ""


@dataclass
class ClientStats:
    received: int = 0
    written: int = 0
    duplicates: int = 0
    completed: int = 0
    dead_lettered: int = 0
    abandoned: int = 0
    lock_lost: int = 0
    write_failures: int = 0
    connections: int = 0
    exit_reason: str = ""


class SpoolLock:
    """fcntl.flock on <spool>/client.lock, with the holder's pid inside for the error message."""

    def __init__(self, root: Path):
        self.path = root / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ClientAlreadyRunning(
                    f"another IRIS client (pid {holder}) is already running on this spool "
                    f"({self.path} is locked); refusing to start a second consumer"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _LockKeeper:
    """Renews the locks of the messages in hand at half-life (from the receiving thread).

    Half the lock leaves time for one renewal after another when hundreds are held, each a round
    trip to the broker."""

    def __init__(self, batch: list):
        first = batch[0].locked_until_utc if batch else None
        span = (first - _now()).total_seconds() if first else DEFAULT_LOCK_S
        self.margin_s = max(0.25, span / 2)
        self.poll_s = min(HOLD_POLL_S, self.margin_s / 2)

    def renew_due(self, receiver, in_hand: list) -> None:
        from azure.servicebus.exceptions import MessageLockLostError

        due = _now() + dt.timedelta(seconds=self.margin_s)
        for message in in_hand:
            locked_until = message.locked_until_utc
            if locked_until is None or locked_until > due or _lock_expired(message):
                continue  # settled, not due yet, or already lost (the broker redelivers it)
            try:
                receiver.renew_message_lock(message)
            except MessageLockLostError:
                log.warning("lock lost on %s: the broker redelivers it", message.message_id)


def _lock_expired(message) -> bool:
    locked_until = message.locked_until_utc
    return locked_until is not None and locked_until <= dt.datetime.now(dt.timezone.utc)


def _is_expected_failure(exc: BaseException) -> bool:
    from azure.core.exceptions import AzureError

    return isinstance(exc, (AzureError, OSError, TimeoutError))


def backoff_delay(attempt: int, initial: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (attempt 1, 2, 3, … → up to 0.5, 1, 2, … seconds)."""
    return random.uniform(0.5, 1.0) * min(cap, initial * 2 ** max(0, attempt - 1))


class IrisClient:
    def __init__(self, settings: ClientSettings, spool: Spool, *, clock: Callable[[], dt.datetime] = _now,
                 status_interval_s: float = 1.0):
        self.settings = settings
        self.spool = spool
        self.clock = clock
        self.status_interval_s = status_interval_s
        self.redactor = Redactor(settings.secrets)
        self.stats = ClientStats()
        self._started_at = clock()
        self._connected = False
        self._disconnected_since: dt.datetime | None = self._started_at
        self._last_message_at: dt.datetime | None = None
        self._last_error: str | None = None
        self._last_write_error: str | None = None
        self._failing: dict[int, dt.datetime] = {}  # id(message) → when its write first failed
        self._failing_lock = threading.Lock()
        self._status_written = 0.0
        self._stop = threading.Event()
        self._halt = threading.Event()  # writers stop retrying: a stop was requested or run() is ending
        self._dead_letters = None
        self._writes = itertools.count(1)
        self._crash_after = int(os.environ.get(CRASH_HOOK_ENV, "0") or 0)

    # -- main loop ---------------------------------------------------------------------------
    def run(self, max_idle: float | None = None, stop_event: threading.Event | None = None) -> ClientStats:
        stop = self._stop = stop_event or threading.Event()
        self._halt.clear()
        install_redactor(self.redactor)
        lock = SpoolLock(self.spool.root)
        lock.acquire()
        self._writer = ThreadPoolExecutor(self.settings.writers, thread_name_prefix="iris-spool-writer")
        self._idle_since = time.monotonic()
        drain_stop = threading.Event()
        drain_thread = self._start_dead_letter_drain(drain_stop)
        try:
            self._write_status(force=True)
            attempt = 0
            while not self._should_stop(stop, max_idle):
                try:
                    self._consume(stop, max_idle)
                    attempt = 0
                except Exception as exc:  # noqa: BLE001 - every failure here means: reconnect
                    attempt = 0 if self._connected else attempt + 1
                    self._disconnected(exc)
                    delay = backoff_delay(max(attempt, 1))
                    log.warning("IRIS connection lost (%s); reconnecting in %.1f s", self._last_error, delay,
                                exc_info=not _is_expected_failure(exc))
                    self._sleep(stop, max_idle, delay)
        finally:
            drain_stop.set()
            self._halt.set()
            self._writer.shutdown(wait=True)  # bounded: a retrying writer returns once halted
            if drain_thread is not None:
                drain_thread.join(30)
            self._connected = False
            self._write_status(force=True)
            lock.release()
        log.info("IRIS client stopped (%s): %s", self.stats.exit_reason, self.stats)
        return self.stats

    def _start_dead_letter_drain(self, drain_stop: threading.Event) -> threading.Thread | None:
        # imported here: iris_dead_letters uses this module's routing
        from iris_pipeline.iris_dead_letters import DeadLetterDrain

        if not self.settings.drain_dead_letters:
            return None
        self._dead_letters = DeadLetterDrain(self.settings, self.spool, self.redactor)
        thread = threading.Thread(target=self._dead_letters.run, args=(drain_stop, self._stop),
                                  name="iris-dead-letters", daemon=True)
        thread.start()
        return thread

    def _should_stop(self, stop: threading.Event, max_idle: float | None) -> bool:
        if stop.is_set():
            self.stats.exit_reason = "stop requested"
            return True
        if max_idle is not None and time.monotonic() - self._idle_since >= max_idle:
            self.stats.exit_reason = f"no message for {max_idle:g} s"
            return True
        return False

    def _sleep(self, stop: threading.Event, max_idle: float | None, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not self._should_stop(stop, max_idle) and time.monotonic() < deadline:
            stop.wait(min(1.0, deadline - time.monotonic()))
            self._write_status()

    def _consume(self, stop: threading.Event, max_idle: float | None) -> None:
        settings = self.settings
        with settings.service_bus_client() as client:
            receiver = client.get_queue_receiver(settings.queue_name, prefetch_count=settings.prefetch)
            with receiver:
                self._connected_now()
                while not self._should_stop(stop, max_idle):
                    wait = settings.max_wait_s
                    if max_idle is not None:
                        wait = max(0.1, min(wait, max_idle - (time.monotonic() - self._idle_since)))
                    batch = receiver.receive_messages(max_message_count=settings.batch_size, max_wait_time=wait)
                    if batch:
                        self._handle_batch(receiver, batch)
                    self._write_status()

    def _handle_batch(self, receiver, batch: list) -> None:
        """Writer threads store the batch while this thread settles each message once it is stored.

        Several writers let the file system commit their fsyncs together (journal group commit).
        While the batch is being written this thread renews the locks of the messages in hand as
        they near expiry (it is the only thread using the receiver: the SDK is not thread-safe).
        While a write keeps failing it also takes in hand the messages the receiver has already
        prefetched, so that their locks are renewed too instead of running out: each lock that runs
        out spends one of the 5 deliveries."""
        self._idle_since = time.monotonic()
        self._last_message_at = self.clock()
        self.stats.received += len(batch)
        pending = deque((message, self._writer.submit(self._store, message)) for message in batch)
        locks = _LockKeeper(batch)
        while pending:
            message, outcome = pending[0]
            try:
                stored = outcome.result(timeout=locks.poll_s)
            except FutureTimeout:
                if self._stop.is_set():
                    self._halt.set()  # a write still failing gives its message back now
                elif self._failing:
                    self._take_prefetched(receiver, pending)
                locks.renew_due(receiver, [m for m, _ in pending])
                self._write_status()
                continue
            pending.popleft()
            self._settle(receiver, message, stored)
        self._idle_since = time.monotonic()

    def _take_prefetched(self, receiver, pending: deque) -> None:
        """Take what the receiver already holds (a tiny wait: served from its buffer, no new credit)."""
        room = self.settings.prefetch + self.settings.batch_size - len(pending)
        if room <= 0 or not self.settings.prefetch:
            return
        more = receiver.receive_messages(max_message_count=room, max_wait_time=PREFETCHED_ONLY_WAIT_S)
        if more:
            log.warning("spool writes failing: holding %d prefetched messages too", len(more))
            self.stats.received += len(more)
            pending.extend((message, self._writer.submit(self._store, message)) for message in more)

    # -- one message: stored by the writer thread, then settled by the receiving thread -------
    def _store(self, message) -> Stored:
        """Store a message, retrying a failed write (with backoff) while its lock holds."""
        body = message_body(message)
        records, decode_error = self._decode(body)
        where = route(message, records, self.clock())
        attempt = 0
        try:
            while True:
                try:
                    return self._store_once(message, body, where, decode_error)
                except OSError as exc:
                    attempt += 1
                    detail = f"write failed for {where.dataset}/{where.file_name} (attempt {attempt}): {exc}"
                    self._write_failed(message, detail, attempt)
                    if self._halt.is_set():
                        return Stored("abandon", where, detail=detail)
                    if _lock_expired(message):
                        return Stored("lock-lost", where, detail=detail)
                    self._halt.wait(backoff_delay(attempt, initial=0.5, cap=WRITE_RETRY_MAX_DELAY_S))
        finally:
            with self._failing_lock:
                self._failing.pop(id(message), None)

    def _store_once(self, message, body: bytes, where: Route, decode_error: str | None) -> Stored:
        if decode_error or where.problem:
            reason, detail = ("UndecodableBody", decode_error) if decode_error else (where.problem, where.detail)
            self._quarantine(message, body, where, reason, detail)
            return Stored("dead-letter", where, reason=reason, detail=detail)
        if self.spool.write_incoming(where.dataset, where.file_name, body):
            self._crash_hook()
            return Stored("complete", where, written=True)
        return Stored("complete", where)  # this very body is already in the spool

    def _write_failed(self, message, detail: str, attempt: int) -> None:
        detail = self.redactor.redact(detail)[:500]
        with self._failing_lock:
            self._failing.setdefault(id(message), self.clock())
            self.stats.write_failures += 1
            self._last_write_error = self._last_error = detail
        level = logging.ERROR if attempt == 1 or attempt % 60 == 0 else logging.DEBUG  # retries every ≤ 5 s
        log.log(level, "%s; keeping the message locked and retrying", detail)

    def _settle(self, receiver, message, stored: Stored) -> None:
        from azure.servicebus.exceptions import MessageLockLostError

        where = stored.where
        if stored.action == "lock-lost":
            self.stats.lock_lost += 1
            log.warning("%s; lock lost: the broker redelivers the message", stored.detail)
            return
        if stored.action == "abandon":  # only on stop: the write still fails and the client is leaving
            log.warning("%s; stopping: giving the message back", stored.detail)
            receiver.abandon_message(message)
            self.stats.abandoned += 1
            return
        if stored.action == "dead-letter":
            receiver.dead_letter_message(message, reason=stored.reason, error_description=stored.detail[:1000])
            self.stats.dead_lettered += 1
            log.error("dead-lettered %s/%s: %s: %s", where.dataset, where.file_name, stored.reason, stored.detail)
            return
        if stored.written:
            self.stats.written += 1
        else:
            self.stats.duplicates += 1
        try:
            receiver.complete_message(message)
            self.stats.completed += 1
        except MessageLockLostError:
            self.stats.lock_lost += 1
            log.warning("lock lost before completing %s/%s: it will be redelivered and skipped",
                        where.dataset, where.file_name)

    @staticmethod
    def _decode(body: bytes) -> tuple[list[dict] | None, str | None]:
        try:
            return decode_body(body), None
        except DecodeError as exc:
            return None, str(exc)

    def _quarantine(self, message, body: bytes, where: Route, reason: str, detail: str) -> None:
        dataset = where.dataset or "_invalid"
        file_name = where.file_name or f"message_{message.sequence_number or int(time.time() * 1e6)}.json"
        self.spool.quarantine_bytes(dataset, file_name, body, f"{reason}: {detail}")

    def _crash_hook(self) -> None:
        if self._crash_after and next(self._writes) >= self._crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    # -- state and status file ---------------------------------------------------------------
    def _connected_now(self) -> None:
        self._connected = True
        self._disconnected_since = None
        self.stats.connections += 1
        if self.stats.connections == 1 and self._last_message_at is None:
            self._idle_since = time.monotonic()  # the idle clock starts once the client can receive
        log.info("connected to IRIS queue %s", self.settings.queue_name)
        self._write_status(force=True)

    def _disconnected(self, exc: BaseException) -> None:
        if self._connected or self._disconnected_since is None:
            self._disconnected_since = self.clock()
        self._connected = False
        self._last_error = self.redactor.redact(f"{type(exc).__name__}: {exc}")[:500]
        self._write_status(force=True)

    def status(self) -> dict:
        s, drained = self.stats, self._dead_letters
        with self._failing_lock:
            failing = list(self._failing.values())
        return {
            "pid": os.getpid(),
            "started_at": _iso(self._started_at),
            "connected": self._connected,
            "disconnected_since": _iso(self._disconnected_since),
            "queue": self.settings.queue_name,
            "last_message_at": _iso(self._last_message_at),
            "received": s.received,
            "completed": s.completed,
            "written": s.written,
            "duplicates": s.duplicates,
            "dead_lettered": s.dead_lettered,
            "abandoned": s.abandoned,
            "lock_lost": s.lock_lost,
            "write_failures": s.write_failures,
            "writes_failing": len(failing),
            "write_failing_since": _iso(min(failing)) if failing else None,
            "last_write_error": self._last_write_error,
            "dead_letters_quarantined": drained.quarantined if drained else 0,
            "dead_letters_already_kept": drained.already_kept if drained else 0,
            "dead_letter_error": drained.last_error if drained else None,
            "last_error": self._last_error,
            "updated_at": _iso(self.clock()),
            "secret_expires": self.settings.secret_expires.isoformat() if self.settings.secret_expires else None,
        }

    def _write_status(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._status_written < self.status_interval_s:
            return
        self._status_written = time.monotonic()
        target = self.spool.root / STATUS_FILE
        tmp = target.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(orjson.dumps(self.status(), option=orjson.OPT_INDENT_2))
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("cannot write %s: %s", target, exc)


# --- command line ----------------------------------------------------------------------------
def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-idle", type=float, default=None, metavar="SECONDS",
                        help="exit (status 0) after this long without a message (counted from the first "
                             "connection, or from start-up while none succeeds)")
    parser.add_argument("--settings", default=None, metavar="FILE",
                        help="Elexon client settings JSON (ClientId, QueueName, ServiceBusNamespace, Secret)")
    parser.add_argument("--spool-dir", default=None, help="spool root (default: $IRIS_SPOOL_DIR or data/spool)")
    parser.add_argument("--prefetch", type=int, default=None, help="messages the receiver holds ahead")
    parser.add_argument("--batch-size", type=int, default=None, help="max messages per receive call")
    parser.add_argument("--writers", type=int, default=None, help="threads writing to the spool (default 4)")
    parser.add_argument("--log-level", default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING, ERROR")


def _configure_logging(level_name: str) -> None:
    level = getattr(logging, str(level_name).upper(), logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    logging.getLogger("azure").setLevel(level if level <= logging.DEBUG else logging.WARNING)


def main_client(args: argparse.Namespace) -> int:
    _configure_logging(getattr(args, "log_level", "INFO"))
    overrides = {k: getattr(args, k, None) for k in ("prefetch", "batch_size", "writers")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        if getattr(args, "settings", None):
            settings = ClientSettings.from_settings_file(args.settings, **overrides)
        else:
            settings = ClientSettings.from_env(**overrides)
    except ConfigError as exc:
        log.error("IRIS client configuration: %s", exc)
        return 1
    redactor = Redactor(settings.secrets)
    install_redactor(redactor)
    spool = Spool(getattr(args, "spool_dir", None) or os.environ.get("IRIS_SPOOL_DIR") or "data/spool")
    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        stats = IrisClient(settings, spool).run(max_idle=getattr(args, "max_idle", None), stop_event=stop)
    except ClientAlreadyRunning as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:  # noqa: BLE001 - report without a traceback that might hold a secret
        log.error("IRIS client failed: %s", redactor.redact(f"{type(exc).__name__}: {exc}"))
        return 1
    print(json.dumps({"client": asdict(stats)}), flush=True)
    return 0


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, _frame):
        log.info("received %s: finishing the messages in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="iris_client")
    add_client_arguments(_parser)
    sys.exit(main_client(_parser.parse_args()))
