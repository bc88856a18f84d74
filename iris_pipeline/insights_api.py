"""The Insights REST API client (historic data): a range cut into windows the API accepts, fetched
concurrently, politely and with retries.

Framework-free. An `ApiEndpoint` (registry) says how an endpoint serves history; `InsightsClient.fetch`
returns every record of a half-open range [start, end):

- query_range endpoints: the range is cut into windows of at most `max_window_seconds`, asked for
  with `from_param`/`to_param` as ISO 8601 UTC instants (`2025-01-01T00:00:00Z`). Windows filtered by
  settlement date are whole settlement days, asked for with inclusive dates (`YYYY-MM-DD`).
- path_date endpoints: one request per settlement date (Europe/London) that [start, end) touches.

Boundaries: the API's `to` is inclusive (documented for BOD: "the from and to parameters filter the
data inclusively"), so a record stamped exactly at a window's end comes back from that window and from
the next. Each window keeps [from, to): a record whose filter instant equals the window's end is left to
the next window (or, for the last window, lies outside the range). When the record field the API
filters by is not known, exact duplicates of the previous window's records are dropped instead.

Errors: 429 and 5xx are retried with exponential backoff and jitter, honouring Retry-After, a bounded
number of times; a final failure or any other 4xx raises `InsightsApiError` naming the request.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from zoneinfo import ZoneInfo

# requests + urllib3's Retry: the well-kept standard for HTTP in Python (already locked); Retry gives
# backoff with jitter, Retry-After and bounded retries without our own retry loop.
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from iris_pipeline.config import Settings
from iris_pipeline.registry import ApiEndpoint

LONDON = ZoneInfo("Europe/London")
UTC = dt.timezone.utc
RETRY_STATUSES = (429, 500, 502, 503, 504)

# The record field holding the instant a window filters by. Only used to give a record at a window's
# end to the next window; a field missing here falls back to exact-duplicate removal.
FILTER_FIELDS = {
    "measurement_time": "measurementTime",
    "publish_time": "publishTime",
    "start_time": "startTime",
    "time_from": "timeFrom",
    "event_time": "eventTime",
}


class InsightsApiError(RuntimeError):
    """A request the API refused (4xx other than 429) or that failed after every retry."""


class Window(NamedTuple):
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive


def settlement_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants [start, end) of a settlement day: its Europe/London midnight to the next one
    (23 hours on the last Sunday of March, 25 on the last Sunday of October)."""
    start = dt.datetime.combine(day, dt.time(), LONDON).astimezone(UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), LONDON).astimezone(UTC)
    return start, end


def settlement_date_of(instant: dt.datetime) -> dt.date:
    return _utc(instant).astimezone(LONDON).date()


def windows(endpoint: ApiEndpoint, start: dt.datetime, end: dt.datetime) -> list[Window]:
    """[start, end) cut into the windows `fetch` asks for, in order, contiguous and non-overlapping.

    Time-filtered query_range endpoints: pieces of at most `max_window_seconds`. Settlement-date
    filters (query or path): whole settlement days (the days [start, end) touches), in runs of at most
    `max_window_seconds // 86400` days (one day per request for path_date endpoints)."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        return []
    if endpoint.window_kind == "path_date" or endpoint.window_filter == "settlement_date":
        days_per_window = 1 if endpoint.window_kind == "path_date" else max(1, endpoint.max_window_seconds // 86400)
        first, last = settlement_date_of(start), settlement_date_of(end - dt.timedelta(microseconds=1))
        result = []
        day = first
        while day <= last:
            run_last = min(last, day + dt.timedelta(days=days_per_window - 1))
            result.append(Window(settlement_day_bounds(day)[0], settlement_day_bounds(run_last)[1]))
            day = run_last + dt.timedelta(days=1)
        return result
    if endpoint.max_window_seconds <= 0:
        raise ValueError(f"{endpoint.path}: max_window_seconds must be positive")
    step = dt.timedelta(seconds=endpoint.max_window_seconds)
    result = []
    piece_start = start
    while piece_start < end:
        piece_end = min(end, piece_start + step)
        result.append(Window(piece_start, piece_end))
        piece_start = piece_end
    return result


class _RateLimiter:
    """Minimum spacing between request starts, shared by every thread of a client."""

    def __init__(self, requests_per_second: float) -> None:
        self._interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._lock = threading.Lock()
        self._next_start = 0.0

    def wait(self) -> None:
        with self._lock:  # reserve a slot under the lock, sleep outside it
            now = time.monotonic()
            slot = max(now, self._next_start)
            self._next_start = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class InsightsClient:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        max_in_flight: int = 4,
        requests_per_second: float = 5.0,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        max_retries: int = 5,
        backoff_factor: float = 1.0,
        backoff_jitter: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_max: int = 120,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.base_url = (base_url or Settings.from_env().elexon_api_base_url).rstrip("/")
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._rate_limiter = _RateLimiter(requests_per_second)
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            backoff_factor=backoff_factor,
            backoff_jitter=backoff_jitter,
            backoff_max=backoff_max,
            respect_retry_after_header=True,
            retry_after_max=retry_after_max,  # a huge Retry-After must not stall a run for hours
            raise_on_status=True,
        )
        # One session for all threads: urllib3's pool is thread-safe and sized to the requests in flight.
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=max_in_flight)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "InsightsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fetch(self, endpoint: ApiEndpoint, start: dt.datetime, end: dt.datetime) -> list[dict]:
        """Every record of [start, end), in window order (see the module docstring for boundaries)."""
        pieces = windows(endpoint, start, end)
        if not pieces:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(pieces)), thread_name_prefix="insights")
        try:
            futures = [pool.submit(self.fetch_window, endpoint, w) for w in pieces]
            per_window = [f.result() for f in futures]
        finally:
            # On a failure, the windows not yet started are not asked for: the run fails either way.
            pool.shutdown(wait=True, cancel_futures=True)
        return _join_windows(endpoint, pieces, per_window)

    def fetch_window(self, endpoint: ApiEndpoint, window: Window) -> list[dict]:
        """The records the API returns for one window, as it returns them."""
        path, params = request_for(endpoint, window)
        body = self._get(path, params)
        if endpoint.stream:
            if not isinstance(body, list):
                raise InsightsApiError(
                    f"{_describe('GET', path, params)}: a stream endpoint returned {type(body).__name__}, not a JSON array")
            return body
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise InsightsApiError(f"{_describe('GET', path, params)}: expected {{\"data\": [...]}}, got {str(body)[:300]}")
        return body["data"]

    def _get(self, path: str, params: list[tuple[str, str]]):
        request = _describe("GET", path, params)
        with self._in_flight:
            self._rate_limiter.wait()
            try:
                response = self._session.get(self.base_url + path, params=params, timeout=self.timeout)
            except requests.exceptions.RetryError as e:  # raise_on_status: retries exhausted on 429/5xx
                raise InsightsApiError(f"{request}: gave up after retries: {_reason(e)}") from e
            except requests.exceptions.RequestException as e:
                raise InsightsApiError(f"{request}: {type(e).__name__}: {_reason(e)}") from e
        if response.status_code >= 400:
            raise InsightsApiError(f"{request}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as e:
            raise InsightsApiError(f"{request}: response is not JSON: {response.text[:300]}") from e


def request_for(endpoint: ApiEndpoint, window: Window) -> tuple[str, list[tuple[str, str]]]:
    """The path and query parameters asking for one window."""
    extra = dict(endpoint.extra_params)
    params: list[tuple[str, str]] = []
    path = endpoint.path
    if endpoint.window_kind == "path_date":
        if not endpoint.path_param:
            raise ValueError(f"{endpoint.path}: a path_date endpoint needs path_param")
        path = path.replace("{" + endpoint.path_param + "}", settlement_date_of(window.start).isoformat())
    elif endpoint.window_filter == "settlement_date":
        # Dates are inclusive on both ends: the window's last day is the day before its end.
        params += [(endpoint.from_param, settlement_date_of(window.start).isoformat()),
                   (endpoint.to_param, settlement_date_of(window.end - dt.timedelta(microseconds=1)).isoformat())]
    else:
        params += [(endpoint.from_param, format_instant(window.start)), (endpoint.to_param, format_instant(window.end))]
    # Other placeholders in the path (e.g. {bidOffer}) take their value from extra_params.
    for name in [n for n in extra if "{" + n + "}" in path]:
        path = path.replace("{" + name + "}", extra.pop(name))
    if "{" in path:
        raise ValueError(f"{endpoint.path}: no value for a path parameter in {path}")
    return path, params + list(extra.items())


def format_instant(instant: dt.datetime) -> str:
    return _utc(instant).strftime("%Y-%m-%dT%H:%M:%SZ")


def _join_windows(endpoint: ApiEndpoint, pieces: list[Window], per_window: list[list[dict]]) -> list[dict]:
    if endpoint.window_kind == "path_date" or endpoint.window_filter == "settlement_date":
        return [r for records in per_window for r in records]  # whole days: windows cannot overlap
    field = FILTER_FIELDS.get(endpoint.window_filter)
    result: list[dict] = []
    previous_unplaced: set[str] = set()
    for window, records in zip(pieces, per_window):
        unplaced: set[str] = set()
        for record in records:
            instant = _instant(record, field)
            if instant is not None:
                if instant != window.end:  # the end belongs to the next window
                    result.append(record)
                continue
            # No filter instant to place it by: drop exact duplicates of the previous window's records.
            canonical = _canonical(record)
            unplaced.add(canonical)
            if canonical not in previous_unplaced:
                result.append(record)
        previous_unplaced = unplaced
    return result


def _instant(record: dict, field: str | None) -> dt.datetime | None:
    value = record.get(field) if field else None
    if not isinstance(value, str):
        return None
    try:
        return _utc(dt.datetime.fromisoformat(value))
    except ValueError:
        return None


def _canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _utc(instant: dt.datetime) -> dt.datetime:
    if instant.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give a timezone: {instant!r}")
    return instant.astimezone(UTC)


def _describe(method: str, path: str, params: list[tuple[str, str]]) -> str:
    query = "&".join(f"{k}={v}" for k, v in params)
    return f"{method} {path}" + (f"?{query}" if query else "")


def _reason(e: Exception) -> str:
    # RetryError wraps urllib3's MaxRetryError, whose `reason` says what the last attempt got.
    inner = e.args[0] if e.args else e
    return str(getattr(inner, "reason", None) or inner)[:300]
