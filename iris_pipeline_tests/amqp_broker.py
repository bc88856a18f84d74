"""An in-process AMQP 1.0 broker that the real azure-servicebus SDK can talk to.

Built on python-qpid-proton. It speaks just enough of Azure Service Bus for a peek-lock receiver:

* the ``$cbs`` put-token handshake (the request has no reply-to: the answer goes back on the
  receiver link the client attached to ``$cbs``),
* queues with peek-lock semantics: lock tokens are kept here, keyed by the 16-byte delivery tag the
  SDK turns into ``lock_token`` (proton cannot read binary tags back, so the tag is never read),
* dispositions in receiver-settle-mode *second*: every disposition is answered with a settled
  disposition echoing the outcome applied (``accepted``, ``modified``, ``rejected``) or a
  ``rejected`` carrying ``com.microsoft:message-lock-lost`` when the lock had already gone,
* lock expiry, max delivery count and message time-to-live, counted as Service Bus counts: a lock
  that expires and an abandon (``modified``, delivery failed) spend a delivery, a ``released``
  delivery (what the SDK does with its unreturned prefetch when a receiver closes) does not,
* the dead-letter sub-queue ``<queue>/$DeadLetterQueue``: dead-lettered messages (by a client, after
  max delivery count, or on TTL expiry) carry the ``DeadLetterReason`` and
  ``DeadLetterErrorDescription`` application properties there, as Service Bus sets them, and can be
  received (``sub_queue=ServiceBusSubQueue.DEAD_LETTER``); the sub-queue itself never dead-letters,
* ``$management`` requests: ``renew-lock`` and ``update-disposition``,
* messages from SDK senders, single or batched (tests usually call ``broker.send`` instead).

The broker runs its proton Container in a background thread; the public methods are thread-safe.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Data,
    Delivery,
    Described,
    Endpoint,
    Link,
    Message,
    symbol,
    timestamp,
)
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

log = logging.getLogger(__name__)

CBS = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
LOCK_LOST = "com.microsoft:message-lock-lost"
DEAD_LETTER_SUFFIX = "/$DeadLetterQueue"
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
TTL_EXPIRED_REASON = "TTLExpiredException"
DEAD_LETTER = "com.microsoft:dead-letter"
SWEEP_INTERVAL_S = 0.05
DATA_SECTION = 0x75
SECTION_PREFIX = b"\x00\x53"  # an AMQP section descriptor: a data section holding a whole message


@dataclass
class DeadLetter:
    body: bytes
    subject: str | None
    message_id: str | None
    application_properties: dict
    delivery_count: int
    reason: str | None
    description: str | None


@dataclass
class _Entry:
    body: bytes
    subject: str | None
    message_id: str | None
    application_properties: dict
    sequence_number: int
    enqueued_ms: int
    delivery_count: int = 0
    expires_ms: int | None = None  # time-to-live runs out (epoch ms); None: never


@dataclass
class _Lock:
    entry: _Entry
    expires_at: float
    delivery: Any = None


@dataclass
class _Queue:
    name: str
    ready: deque = field(default_factory=deque)
    locks: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    completed: int = 0
    delivery_counts: dict = field(default_factory=dict)  # message id → delivery count when completed

    @property
    def is_dead_letter_queue(self) -> bool:
        return self.name.endswith(DEAD_LETTER_SUFFIX)


def _queue_name(address: str | None) -> str | None:
    if not address:
        return None
    if "://" in address:
        rest = address.split("://", 1)[1]
        address = rest.split("/", 1)[1] if "/" in rest else ""
    address = address.strip("/")
    if address.lower().endswith(DEAD_LETTER_SUFFIX.lower()):  # one spelling for the sub-queue
        address = address[: -len(DEAD_LETTER_SUFFIX)] + DEAD_LETTER_SUFFIX
    return address or None


def _is_node(address: str | None) -> bool:
    """The request/response nodes: $cbs and <entity>/$management."""
    return address == CBS or (address or "").endswith(MANAGEMENT_SUFFIX)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _elements(value: Any) -> list:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _unbatch(raw: bytes) -> list[Message]:
    """A Service Bus batch is one transfer whose data sections each hold an encoded message."""
    data, offset, inner = Data(), 0, []
    while offset < len(raw):
        data.clear()
        offset += data.decode(raw[offset:])
        data.rewind()
        data.next()
        section = data.get_object()
        if isinstance(section, Described) and section.descriptor == DATA_SECTION:
            if not bytes(section.value).startswith(SECTION_PREFIX):
                break
            inner.append(bytes(section.value))
    if not inner:
        message = Message()
        message.decode(raw)
        return [message]
    messages = []
    for encoded in inner:
        messages.append(Message())
        messages[-1].decode(encoded)
    return messages


class _Handler(MessagingHandler):
    def __init__(self, broker: "AmqpTestBroker"):
        super().__init__(prefetch=100, auto_accept=True, auto_settle=False)
        self.broker = broker
        self.connections: set = set()
        self.reply_links: dict = {}
        self.acceptor = None

    # -- links ---------------------------------------------------------------------------------
    def on_connection_opening(self, event):
        self.connections.add(event.connection)

    def on_link_opening(self, event):
        link = event.link
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if link.is_sender:
            address = link.remote_source.address
            if _is_node(address):
                self.reply_links[(event.connection, address)] = link
                return
            name = _queue_name(address)
            if name is None:
                link.close()
                return
            link.queue_name = name
            with self.broker._state:
                self.broker._queue(name).consumers.append(link)

    def on_link_closing(self, event):
        self._forget_link(event.link)

    def on_link_closed(self, event):
        self._forget_link(event.link)

    def _forget_link(self, link):
        name = getattr(link, "queue_name", None) if link.is_sender else None
        if name:
            with self.broker._state:
                queue = self.broker._queue(name)
                if link in queue.consumers:
                    queue.consumers.remove(link)
                self._drop_locks_of(queue, link)
        for key, reply in list(self.reply_links.items()):
            if reply == link:
                del self.reply_links[key]

    def _drop_locks_of(self, queue, link):
        for lock in queue.locks.values():
            if lock.delivery is not None and lock.delivery.link == link:
                lock.delivery = None
                if self.broker.release_on_disconnect:
                    lock.expires_at = 0.0

    def _forget_connection(self, connection):
        self.connections.discard(connection)
        for link_key in [k for k in self.reply_links if k[0] == connection]:
            del self.reply_links[link_key]
        with self.broker._state:
            for queue in self.broker._queues.values():
                for link in [c for c in queue.consumers if c.connection == connection]:
                    queue.consumers.remove(link)
                    self._drop_locks_of(queue, link)

    def on_connection_closing(self, event):
        self._forget_connection(event.connection)

    def on_connection_closed(self, event):
        self._forget_connection(event.connection)

    def on_transport_closed(self, event):
        if event.connection is not None:
            self._forget_connection(event.connection)

    def on_disconnected(self, event):
        if event.connection is not None:
            self._forget_connection(event.connection)

    # -- sending -------------------------------------------------------------------------------
    def on_sendable(self, event):
        name = getattr(event.link, "queue_name", None)
        if name:
            self.pump(name)

    def pump(self, name: str) -> None:
        broker = self.broker
        with broker._state:
            queue = broker._queue(name)
            progress = True
            while queue.ready and progress:
                progress = False
                for link in list(queue.consumers):
                    if not queue.ready:
                        break
                    if link.credit > 0 and link.state & Endpoint.LOCAL_ACTIVE:
                        self._deliver(queue, link, queue.ready.popleft())
                        progress = True

    def _deliver(self, queue: _Queue, link, entry: _Entry) -> None:
        entry.delivery_count += 1
        token = uuid.uuid4()
        locked_until = time.time() + self.broker.lock_duration
        message = Message(body=entry.body, inferred=True)
        message.id = entry.message_id
        message.subject = entry.subject
        message.properties = dict(entry.application_properties) or None
        message.delivery_count = entry.delivery_count
        if entry.expires_ms is not None:
            message.ttl = max(0.001, (entry.expires_ms - entry.enqueued_ms) / 1000)
        message.annotations = {
            symbol("x-opt-sequence-number"): entry.sequence_number,
            symbol("x-opt-enqueued-time"): timestamp(entry.enqueued_ms),
            symbol("x-opt-locked-until"): timestamp(int(locked_until * 1000)),
        }
        delivery = message.send(link, tag=token.bytes_le)
        if link.snd_settle_mode == Link.SND_SETTLED:
            queue.completed += 1
            return
        delivery.lock_token = token
        delivery.handled = False
        queue.locks[token] = _Lock(entry, time.monotonic() + self.broker.lock_duration, delivery)

    # -- dispositions from the client ----------------------------------------------------------
    def on_accepted(self, event):
        self._settle(event.delivery, "complete")

    def on_rejected(self, event):
        condition = event.delivery.remote.condition
        reason = description = None
        if condition is not None:
            info = condition.info or {}
            reason = _text(info.get("DeadLetterReason"))
            description = _text(info.get("DeadLetterErrorDescription")) or _text(condition.description)
        self._settle(event.delivery, "dead-letter", reason, description)

    def on_released(self, event):
        # an abandon is `modified` with delivery-failed; a plain `released` does not count a delivery
        delivery = event.delivery
        failed = delivery.remote_state == Delivery.MODIFIED and delivery.remote.failed
        self._settle(delivery, "abandon" if failed else "release")

    def on_settled(self, event):
        delivery = event.delivery
        if delivery.link.is_sender and not getattr(delivery, "handled", True):
            self._settle(delivery, "abandon")

    def _settle(self, delivery, outcome: str, reason=None, description=None) -> None:
        if getattr(delivery, "handled", True):
            if not delivery.settled:
                delivery.settle()
            return
        delivery.handled = True
        name = delivery.link.queue_name
        with self.broker._state:
            found = self.broker._apply(name, delivery.lock_token, outcome, reason, description)
        if found:
            delivery.update(delivery.remote_state)
        else:
            delivery.local.condition = Condition(LOCK_LOST, "The lock supplied is invalid or has expired.")
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        if outcome != "complete":
            self.pump(name)  # a requeued message may go out again; a completion frees no credit

    # -- requests from the client (CBS, management, plain sends) --------------------------------
    def on_message(self, event):
        address = event.link.remote_target.address
        if address == CBS:
            self._reply(event.connection, CBS, event.message, 202, "Accepted", None)
        elif (address or "").endswith(MANAGEMENT_SUFFIX):
            status, body = self._management(address[: -len(MANAGEMENT_SUFFIX)], event.message)
            self._reply(event.connection, address, event.message, status, "", body)

    def on_delivery(self, event):
        """Messages an SDK sender puts on a queue, single or batched (read raw: proton knows no batches)."""
        delivery, link = event.delivery, event.link
        if not link.is_receiver or _is_node(link.remote_target.address):
            return
        name = _queue_name(link.remote_target.address)
        if not name or not delivery.readable or delivery.partial:
            return
        raw = link.recv(delivery.pending)
        link.advance()
        for message in _unbatch(raw):
            body = message.body
            body = bytes(body) if isinstance(body, (bytes, memoryview)) else str(body).encode()
            self.broker._enqueue(name, body, message.subject, _text(message.id), dict(message.properties or {}),
                                 message.ttl or None)
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self.pump(name)

    def _reply(self, connection, address, request, status, description, body) -> None:
        link = self.reply_links.get((connection, address))
        if link is None:
            log.warning("no reply link for %s", address)
            return
        reply = Message(body=body)
        reply.correlation_id = request.id
        reply.properties = {
            "status-code": status,
            "status-description": description,
            "statusCode": status,
            "statusDescription": description,
        }
        link.send(reply).settle()

    def _management(self, queue_name, request):
        operation = _text((request.properties or {}).get("operation"))
        body = request.body if isinstance(request.body, dict) else {}
        tokens = [_as_uuid(t) for t in _elements(body.get("lock-tokens"))]
        with self.broker._state:
            if operation == "com.microsoft:renew-lock":
                expirations = self.broker._renew(queue_name, tokens)
                if expirations is None:
                    return 410, None
                return 200, {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *expirations)}
            if operation == "com.microsoft:update-disposition":
                outcome = {"completed": "complete", "abandoned": "abandon", "suspended": "dead-letter"}.get(
                    _text(body.get("disposition-status")) or ""
                )
                ok = all(
                    self.broker._apply(
                        queue_name, t, outcome, _text(body.get("deadletter-reason")),
                        _text(body.get("deadletter-description")),
                    )
                    for t in tokens
                )
                return (200, {}) if ok else (410, None)
        return 501, None

    # -- timers and cross-thread events --------------------------------------------------------
    def on_timer_task(self, event):
        with self.broker._state:
            for name in list(self.broker._queues):
                self.broker._expire_locks(name)
                self.broker._expire_messages(name)
        for name in list(self.broker._queues):
            self.pump(name)
        if not self.broker._stopping:
            event.container.schedule(SWEEP_INTERVAL_S, self)

    def on_wake(self, event):
        for name in list(self.broker._queues):
            self.pump(name)

    def on_shutdown(self, event):
        self.broker._stopping = True
        if self.acceptor is not None:
            self.acceptor.close()
        for connection in list(self.connections):
            transport = connection.transport
            if transport is not None:
                selectable = getattr(transport, "_selectable", None)
                if selectable is not None:
                    try:
                        selectable._delegate.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                transport.close_tail()
                transport.close_head()
            self._forget_connection(connection)
        self.broker._injector.close()
        self.broker._container.stop()


class AmqpTestBroker:
    """A tiny Service Bus look-alike. Queues are created on first use.

    lock_duration: seconds a delivered message stays locked (Service Bus: 60).
    max_delivery_count: deliveries before a message is dead-lettered (IRIS: 5).
    message_ttl: the queue's default time-to-live in seconds (None: messages never expire); an
    expired message is dead-lettered with reason TTLExpiredException.
    release_on_disconnect: by default the locks of a dropped connection run until they expire, as
    after a client crash; True frees them at once. stop()/restart() forget every lock (a broker crash).
    """

    def __init__(self, lock_duration: float = 60.0, max_delivery_count: int = 5,
                 release_on_disconnect: bool = False, host: str = "127.0.0.1",
                 message_ttl: float | None = None):
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.message_ttl = message_ttl
        self._any_ttl = False
        self.release_on_disconnect = release_on_disconnect
        self.host = host
        self.port: int | None = None
        self._state = threading.RLock()
        self._queues: dict[str, _Queue] = {}
        self._sequence = 0
        self._thread: threading.Thread | None = None
        self._container: Container | None = None
        self._handler: _Handler | None = None
        self._injector: EventInjector | None = None
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, port: int = 0) -> int:
        if self._thread is not None:
            raise RuntimeError("broker already running")
        self._stopping = False
        self._handler = _Handler(self)
        self._container = Container(self._handler)
        self._injector = EventInjector()
        self._container.selectable(self._injector)
        self._handler.acceptor = self._container.listen(f"{self.host}:{port}")
        self.port = self._handler.acceptor._selectable.getsockname()[1]
        self._container.schedule(SWEEP_INTERVAL_S, self._handler)
        self._thread = threading.Thread(target=self._run, name=f"amqp-broker-{self.port}", daemon=True)
        self._thread.start()
        return self.port

    def _run(self) -> None:
        try:
            self._container.run()
        except Exception:  # pragma: no cover - surfaced through logs in tests
            log.exception("test broker crashed")

    def stop(self, timeout: float = 10.0) -> None:
        """Drop every connection (as a broker crash would) and stop listening.

        Messages under lock go back to the queue: a restarted broker has forgotten the locks."""
        if self._thread is None:
            return
        self._injector.trigger(ApplicationEvent("shutdown"))
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("test broker did not stop")
        self._thread = None
        self._container = self._handler = self._injector = None
        with self._state:
            for queue in self._queues.values():
                queue.consumers.clear()
                for token in list(queue.locks):
                    lock = queue.locks.pop(token)
                    queue.ready.appendleft(lock.entry)

    def restart(self) -> int:
        port = self.port
        self.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start(port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def __enter__(self) -> "AmqpTestBroker":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def connection_string(self, queue: str | None = None) -> str:
        text = (f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
                "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true")
        return text + (f";EntityPath={queue}" if queue else "")

    # -- test API ------------------------------------------------------------------------------
    def send(self, queue: str, body: bytes, subject: str | None = None, message_id: str | None = None,
             application_properties: dict | None = None, time_to_live: float | None = None) -> None:
        self._enqueue(queue, body, subject, message_id, dict(application_properties or {}), time_to_live)
        self._wake()

    def send_many(self, queue: str, messages) -> None:
        """messages: iterable of dicts with the keyword arguments of send()."""
        for m in messages:
            self._enqueue(queue, m["body"], m.get("subject"), m.get("message_id"),
                          dict(m.get("application_properties") or {}), m.get("time_to_live"))
        self._wake()

    def queue_depth(self, queue: str) -> int:
        """Active messages: ready to deliver or delivered and locked (neither completed nor dead)."""
        with self._state:
            q = self._queue(queue)
            return len(q.ready) + len(q.locks)

    def locked_count(self, queue: str) -> int:
        with self._state:
            return len(self._queue(queue).locks)

    def completed_count(self, queue: str) -> int:
        with self._state:
            return self._queue(queue).completed

    def delivery_counts(self, queue: str) -> dict:
        """message id → delivery count of every active message (ready or locked)."""
        with self._state:
            q = self._queue(queue)
            return {e.message_id: e.delivery_count for e in list(q.ready) + [lock.entry for lock in q.locks.values()]}

    def completed_delivery_counts(self, queue: str) -> dict:
        """message id → the delivery count it was completed at (1: nothing spent)."""
        with self._state:
            return dict(self._queue(queue).delivery_counts)

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Every message ever dead-lettered from `queue`, whether or not read off the sub-queue since."""
        with self._state:
            return list(self._queue(queue).dead)

    def dead_letter_depth(self, queue: str) -> int:
        """Messages in `queue`'s dead-letter sub-queue not yet completed there."""
        return self.queue_depth(queue + DEAD_LETTER_SUFFIX)

    def pending_bodies(self, queue: str) -> list[tuple[str | None, bytes]]:
        """(message_id, body) of every active message."""
        with self._state:
            q = self._queue(queue)
            entries = list(q.ready) + [lock.entry for lock in q.locks.values()]
            return [(e.message_id, e.body) for e in entries]

    def consumer_count(self, queue: str) -> int:
        with self._state:
            return len(self._queue(queue).consumers)

    # -- state (call with self._state held) ----------------------------------------------------
    def _wake(self) -> None:
        injector = self._injector
        if injector is not None and not self._stopping:
            injector.trigger(ApplicationEvent("wake"))

    def _queue(self, name: str) -> _Queue:
        with self._state:
            if name not in self._queues:
                self._queues[name] = _Queue(name)
            return self._queues[name]

    def _enqueue(self, name, body, subject, message_id, properties, time_to_live=None) -> None:
        with self._state:
            self._sequence += 1
            now_ms = int(time.time() * 1000)
            ttl = time_to_live or self.message_ttl
            entry = _Entry(bytes(body), subject, message_id, properties, self._sequence, now_ms,
                           expires_ms=now_ms + int(ttl * 1000) if ttl else None)
            self._any_ttl = self._any_ttl or bool(ttl)
            self._queue(name).ready.append(entry)

    def _apply(self, name, token, outcome, reason=None, description=None) -> bool:
        queue = self._queue(name)
        lock = queue.locks.pop(token, None)
        if lock is None:
            return False
        if lock.expires_at < time.monotonic():
            self._requeue(queue, lock.entry)
            return False
        if outcome == "complete":
            queue.completed += 1
            queue.delivery_counts[lock.entry.message_id] = lock.entry.delivery_count
        elif outcome == "dead-letter":
            self._dead_letter(queue, lock.entry, reason, description)
        else:
            self._requeue(queue, lock.entry, counted=outcome != "release")
        return True

    def _requeue(self, queue: _Queue, entry: _Entry, counted: bool = True) -> None:
        if not counted:
            entry.delivery_count -= 1  # a released delivery is given back as if never made
        if queue.is_dead_letter_queue:
            queue.ready.appendleft(entry)
        elif entry.expires_ms is not None and entry.expires_ms <= time.time() * 1000:
            self._dead_letter(queue, entry, TTL_EXPIRED_REASON, "The message expired and was dead lettered.")
        elif counted and entry.delivery_count >= self.max_delivery_count:
            self._dead_letter(queue, entry, MAX_DELIVERY_REASON,
                              f"Message could not be consumed after {entry.delivery_count} delivery attempts.")
        else:
            queue.ready.appendleft(entry)

    def _dead_letter(self, queue: _Queue, entry: _Entry, reason, description) -> None:
        queue.dead.append(DeadLetter(entry.body, entry.subject, entry.message_id, entry.application_properties,
                                     entry.delivery_count, reason, description))
        if queue.is_dead_letter_queue:
            return
        properties = dict(entry.application_properties)
        if reason is not None:
            properties["DeadLetterReason"] = reason
        if description is not None:
            properties["DeadLetterErrorDescription"] = description
        self._queue(queue.name + DEAD_LETTER_SUFFIX).ready.append(
            _Entry(entry.body, entry.subject, entry.message_id, properties, entry.sequence_number,
                   entry.enqueued_ms))
        self._wake()

    def _expire_messages(self, name: str) -> None:
        """Dead-letter the ready messages whose time-to-live has run out (locked ones expire on release)."""
        if not self._any_ttl:
            return  # the sweep runs 20 times a second: no scan of big queues without a time-to-live
        queue = self._queue(name)
        now_ms = time.time() * 1000
        if queue.is_dead_letter_queue or not any(e.expires_ms is not None and e.expires_ms <= now_ms
                                                  for e in queue.ready):
            return
        keep = deque()
        for entry in queue.ready:
            if entry.expires_ms is not None and entry.expires_ms <= now_ms:
                self._dead_letter(queue, entry, TTL_EXPIRED_REASON, "The message expired and was dead lettered.")
            else:
                keep.append(entry)
        queue.ready = keep

    def _expire_locks(self, name: str) -> None:
        queue = self._queue(name)
        now = time.monotonic()
        for token in [t for t, lock in queue.locks.items() if lock.expires_at < now]:
            self._requeue(queue, queue.locks.pop(token).entry)

    def _renew(self, name: str, tokens) -> list | None:
        queue = self._queue(name)
        now = time.monotonic()
        expirations = []
        for token in tokens:
            lock = queue.locks.get(token)
            if lock is None or lock.expires_at < now:
                return None
            lock.expires_at = now + self.lock_duration
            expirations.append(timestamp(int((time.time() + self.lock_duration) * 1000)))
        return expirations


__all__ = ["DEAD_LETTER_SUFFIX", "AmqpTestBroker", "DeadLetter"]
