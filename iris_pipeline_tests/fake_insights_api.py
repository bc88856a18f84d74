"""A local HTTP server that answers like the Insights API, for tests of the API client.

Real HTTP (ThreadingHTTPServer on a free port, in a thread). Records are generated deterministically
from time, shaped like the spec's rows:
  /datasets/FREQ, /datasets/FREQ/stream       every 15 s, filtered by measurementTime (FREQ: 24 h max)
  /datasets/FUELINST/stream                   every 5 min per fuel type, filtered by publishTime
  /datasets/BOD                                every 30 min per unit and pair, filtered by timeFrom (1 h max)
  /balancing/settlement/system-prices/{date}   one record per settlement period (46/48/50)
Stream endpoints answer with a bare array, the others with {"data": [...]}. `to` is inclusive, as the
API documents for BOD. A window wider than an endpoint's maximum gets a 400 with a ProblemDetails body,
as the API's validation errors do. `faults` is a queue of scripted responses served before the normal
ones; `always_status` answers every request with one status; `empty_days` are UTC days with no data.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
UTC = dt.timezone.utc
FUEL_TYPES = ("CCGT", "NUCLEAR", "WIND")
BM_UNITS = ("T_DRAXX-1", "E_HLOND-1")
PAIR_IDS = (-1, 1)


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: int | None = None
    body: str = '{"status": 500, "title": "Server error - please try again later"}'


@dataclass
class LoggedRequest:
    method: str
    path: str
    params: dict[str, str]
    status: int
    started: float  # time.monotonic()
    finished: float


@dataclass
class _QueryEndpoint:
    from_param: str
    to_param: str
    max_window: dt.timedelta | None
    stream: bool
    generate: object  # (from, to) -> records with filter instant in [from, to]


@dataclass
class FakeInsightsApi:
    latency: float = 0.0  # seconds each answer takes, to make concurrency observable
    empty_days: set[dt.date] = field(default_factory=set)
    always_status: int | None = None
    faults: deque = field(default_factory=deque)
    log: list[LoggedRequest] = field(default_factory=list)
    max_concurrent: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        freq = lambda a, b: _every(a, b, 15, self._freq)  # noqa: E731
        self._endpoints = {
            "/datasets/FREQ": _QueryEndpoint("measurementDateTimeFrom", "measurementDateTimeTo", dt.timedelta(hours=24), False, freq),
            "/datasets/FREQ/stream": _QueryEndpoint("measurementDateTimeFrom", "measurementDateTimeTo", None, True, freq),
            "/datasets/FUELINST/stream": _QueryEndpoint(
                "publishDateTimeFrom", "publishDateTimeTo", None, True, lambda a, b: _every(a, b, 300, self._fuelinst)),
            "/datasets/BOD": _QueryEndpoint("from", "to", dt.timedelta(hours=1), False, lambda a, b: _every(a, b, 1800, self._bod)),
            # BOD's stream keeps the one-hour window (production's limit: a looser one would hide the bug)
            "/datasets/BOD/stream": _QueryEndpoint("from", "to", dt.timedelta(hours=1), True, lambda a, b: _every(a, b, 1800, self._bod)),
            "/datasets/MID/stream": _QueryEndpoint("from", "to", dt.timedelta(days=7), True, lambda a, b: _every(a, b, 1800, self._mid)),
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "FakeInsightsApi":
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/bmrs/api/v1"

    def requests_to(self, path: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if r.path == path]

    # -- records -----------------------------------------------------------------------------------
    def _empty(self, t: dt.datetime) -> bool:
        return t.date() in self.empty_days

    def _freq(self, t: dt.datetime) -> list[dict]:
        return [{"measurementTime": _iso(t), "frequency": round(50 + ((t.timestamp() // 15) % 40 - 20) / 1000, 3)}]

    def _fuelinst(self, publish: dt.datetime) -> list[dict]:
        start = publish - dt.timedelta(minutes=5)
        day, period = settlement_period_of(start)
        return [{"dataset": "FUELINST", "publishTime": _iso(publish), "startTime": _iso(start), "settlementDate": day.isoformat(),
                 "settlementPeriod": period, "fuelType": fuel, "generation": 1000 * (i + 1) + int(start.timestamp() // 300) % 97}
                for i, fuel in enumerate(FUEL_TYPES)]

    def _bod(self, start: dt.datetime) -> list[dict]:
        day, period = settlement_period_of(start)
        return [{"settlementDate": day.isoformat(), "settlementPeriod": period, "timeFrom": _iso(start),
                 "timeTo": _iso(start + dt.timedelta(minutes=30)), "levelFrom": 100, "levelTo": 100, "pairId": pair,
                 "offer": 80.0 + pair, "bid": 40.0 + pair, "bmUnit": unit, "nationalGridBmUnit": unit.split("_")[1]}
                for unit in BM_UNITS for pair in PAIR_IDS]

    def _mid(self, start: dt.datetime) -> list[dict]:
        day, period = settlement_period_of(start)
        return [{"dataset": "MID", "startTime": _iso(start), "dataProvider": provider, "settlementDate": day.isoformat(),
                 "settlementPeriod": period, "price": 70.0 + period, "volume": 0.0 if provider == "N2EXMIDP" else 500.0}
                for provider in ("APXMIDP", "N2EXMIDP")]

    def system_prices(self, day: dt.date) -> list[dict]:
        start = dt.datetime.combine(day, dt.time(), LONDON).astimezone(UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), LONDON).astimezone(UTC)
        periods = int((end - start) / dt.timedelta(minutes=30))
        return [{"settlementDate": day.isoformat(), "settlementPeriod": sp, "startTime": _iso(start + (sp - 1) * dt.timedelta(minutes=30)),
                 "createdDateTime": _iso(end + dt.timedelta(hours=2)), "systemSellPrice": 50.0 + sp, "systemBuyPrice": 50.0 + sp,
                 "netImbalanceVolume": -sp * 1.5} for sp in range(1, periods + 1)]

    # -- answering ---------------------------------------------------------------------------------
    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], str]:
        with self._lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is None and self.always_status is not None:
            fault = Fault(self.always_status)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, headers, fault.body
        prefix = "/bmrs/api/v1"
        if not path.startswith(prefix):
            return _problem(404, "Not Found", {})
        path = path[len(prefix):]
        if m := re.fullmatch(r"/balancing/settlement/system-prices/([^/]+)", path):
            try:
                day = dt.date.fromisoformat(m.group(1)) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", m.group(1)) else None
            except ValueError:
                day = None
            if day is None:
                return _problem(400, "One or more validation errors occurred.",
                                {"settlementDate": ["The settlement date must be in the format yyyy-MM-dd."]})
            records = [] if day in self.empty_days else self.system_prices(day)
            return 200, {}, json.dumps({"metadata": {"datasets": ["DISEBSP"]}, "data": records})
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            return _problem(404, "Not Found", {})
        try:
            start, end = (_parse_instant(params[endpoint.from_param]), _parse_instant(params[endpoint.to_param]))
        except (KeyError, ValueError) as e:
            return _problem(400, "One or more validation errors occurred.", {str(e): ["A valid date-time is required."]})
        if end < start:
            return _problem(400, "One or more validation errors occurred.", {endpoint.to_param: ["'to' must be after 'from'."]})
        if endpoint.max_window is not None and end - start > endpoint.max_window:
            hours = endpoint.max_window / dt.timedelta(hours=1)
            return _problem(400, "One or more validation errors occurred.",
                            {endpoint.to_param: [f"The date range must be at most {hours:g} hour(s)."]})
        records = [r for t, rs in endpoint.generate(start, end) if not self._empty(t) for r in rs]
        return 200, {}, json.dumps(records if endpoint.stream else {"data": records})

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)

    def _leave(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._in_flight -= 1
            self.log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    api: FakeInsightsApi
    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection frees its thread

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        started = time.monotonic()
        self.api._enter()
        status, headers, body, params = 500, {}, '{"status": 500}', {}
        try:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if self.api.latency:
                time.sleep(self.api.latency)
            status, headers, body = self.api.answer(url.path, params)
        finally:
            # Logged (and out of flight) before the answer goes out: once a client has its answer, the
            # request is in the log, and its next request can never be counted as concurrent with it.
            self.api._leave(LoggedRequest("GET", urlsplit(self.path).path, params, status, started, time.monotonic()))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def settlement_period_of(instant: dt.datetime) -> tuple[dt.date, int]:
    """The settlement date and period an instant falls in, by the Europe/London calendar."""
    day = instant.astimezone(LONDON).date()
    day_start = dt.datetime.combine(day, dt.time(), LONDON).astimezone(UTC)
    return day, int((instant - day_start) / dt.timedelta(minutes=30)) + 1


def _every(start: dt.datetime, end: dt.datetime, seconds: int, make) -> list[tuple[dt.datetime, list[dict]]]:
    """Records at every multiple of `seconds` in [start, end] (inclusive: the API's `to` is)."""
    first = -(-int(start.timestamp()) // seconds) * seconds
    return [(t, make(t)) for ts in range(first, int(end.timestamp()) + 1, seconds) for t in [dt.datetime.fromtimestamp(ts, UTC)]]


def _parse_instant(text: str) -> dt.datetime:
    instant = dt.datetime.fromisoformat(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(status: int, title: str, errors: dict) -> tuple[int, dict[str, str], str]:
    body = {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": title, "status": status,
            "traceId": "00-fake-trace-00", "errors": errors}
    return status, {}, json.dumps(body)
