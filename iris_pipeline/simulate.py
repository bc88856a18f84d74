"""A realistic synthetic IRIS feed: every registered dataset at its real cadence, shape and size.

Framework-free. `Simulator` produces the messages that fall due in a time window; `mixed_backlog`
streams a fixed, reproducible mix for benchmarks; `run` writes into a spool in (sped-up) real time and
backs `iris-pipeline simulate`.

Every message is a pure function of (seed, dataset, publication time, index within the publication):
values come from smooth functions of time (demand, fuel mix, prices, frequency, unit levels) plus noise
hashed from what they describe, never from state that evolves message by message. A restart therefore
regenerates its backfill with the same names and bytes (a redelivery the warehouse ledger ignores), and
revisions (DISEBSP and settlement re-runs, MID re-sends, REMIT revisions, MELS/MILS redeclarations, BOALF
amendments) are separate, later messages, as on IRIS.

Records hold datetime/date objects until encoding, where each message picks one of the timestamp
precisions Elexon emits. Bodies are double-encoded (a JSON string holding the array) like real IRIS,
except for a configurable fraction of plain arrays.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import logging
import math
import os
import signal
import threading
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from random import Random
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import orjson

from iris_pipeline.registry import Dataset, Registry, load_registry
from iris_pipeline.spool import Spool

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
LONDON = ZoneInfo("Europe/London")
HALF_HOUR = dt.timedelta(minutes=30)
MINUTE = dt.timedelta(minutes=1)
BACKLOG_START = dt.datetime(2025, 6, 2, tzinfo=UTC)
POLL_SECONDS = 1.0


# --- GB settlement time -------------------------------------------------------------------------

def settlement_day_start(day: dt.date) -> dt.datetime:
    """UTC instant at which settlement day `day` (a Europe/London calendar day) begins."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=LONDON).astimezone(UTC)


def periods_in_day(day: dt.date) -> int:
    """48, or 46 on the spring-forward Sunday, or 50 on the fall-back Sunday."""
    return (settlement_day_start(day + dt.timedelta(days=1)) - settlement_day_start(day)) // HALF_HOUR


@lru_cache(maxsize=8192)
def settlement_period(instant_utc: dt.datetime) -> tuple[dt.date, int]:
    """(settlementDate, settlementPeriod) of an aware instant."""
    if instant_utc.tzinfo is None:
        raise ValueError("settlement_period needs an aware datetime")
    instant = instant_utc.astimezone(UTC)  # aware arithmetic in one zone would be wall-clock arithmetic
    day = instant.astimezone(LONDON).date()
    return day, (instant - settlement_day_start(day)) // HALF_HOUR + 1


def period_start(day: dt.date, period: int) -> dt.datetime:
    """UTC start of a settlement period, counted in UTC from the day's real start."""
    if not 1 <= period <= periods_in_day(day):
        raise ValueError(f"{day} has no settlement period {period}")
    return settlement_day_start(day) + (period - 1) * HALF_HOUR


def floor_time(t: dt.datetime, seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(t.timestamp()) // seconds * seconds, UTC)


# --- deterministic randomness --------------------------------------------------------------------
# Every value is a pure function of (seed, what it describes, time): no state evolves from message to
# message, so a restarted simulator regenerates the same messages under the same names, byte for byte.

_MASK64 = (1 << 64) - 1
_TWO_63 = float(1 << 63)


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash step."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@lru_cache(maxsize=4096)
def _text_hash(text: str) -> int:
    return _mix64(zlib.crc32(text.encode()) | len(text) << 32)


def _hash(*parts: int | str) -> int:
    # The tuple hash of ints is the same in every process (unlike str hashes, which PYTHONHASHSEED salts,
    # hence _text_hash); one mixing step spreads it.
    return _mix64(hash(tuple(p if p.__class__ is int else _text_hash(p) for p in parts)) & _MASK64)


def _unit_interval(*parts: int | str) -> float:
    """Uniform in [0, 1), a function of `parts`."""
    return _hash(*parts) / (2 * _TWO_63)


def _rng(*parts: int | str) -> Random:
    return Random(_hash(*parts))


def _epoch(t: dt.datetime) -> int:
    return int(t.timestamp())


# --- shapes of the GB system over time ----------------------------------------------------------

def _local_hour(t: dt.datetime) -> float:
    local = t.astimezone(LONDON)
    return local.hour + local.minute / 60


def _winter(t: dt.datetime) -> float:
    """1 in mid-January, 0 in mid-July."""
    return 0.5 + 0.5 * math.cos(2 * math.pi * (t.timetuple().tm_yday - 15) / 365.25)


def _load_shape(hour: float) -> float:
    """Daily demand shape in [0, 1]: trough around 04:30, morning rise, peak around 17:45 local."""
    base = 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4.5) / 24)
    evening = math.exp(-(((hour - 17.75) / 2.0) ** 2))
    return min(1.0, 0.7 * base + 0.35 * evening)


def _solar_shape(hour: float) -> float:
    return max(0.0, math.cos(math.pi * (hour - 13) / 14)) ** 2


# --- what the feed looks like --------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    dataset: str
    file_name: str
    body: bytes


Records = list[dict[str, Any]]


@dataclass(frozen=True)
class BmUnit:
    bm_unit: str
    national_grid_bm_unit: str
    capacity: int
    can_import: bool  # storage: levels go negative
    fuel: str  # FUELINST fuel type
    remit_fuel: str  # REMIT fuelType
    lead_party: str

    @property
    def bm_unit_type(self) -> str:
        return self.bm_unit[0] if self.bm_unit[1] == "_" else "S"


def _bm_units() -> list[BmUnit]:
    families = [  # (id prefix, unit numbers, capacity MW, storage, FUELINST fuel, REMIT fuel, lead party)
        ("T_DRAXX-", range(1, 5), 645, False, "BIOMASS", "Biomass", "Drax Power Ltd"),
        ("T_PEMB-", (11, 21, 31, 41, 51), 460, False, "CCGT", "Fossil Gas", "RWE Generation UK plc"),
        ("T_TORN-", (1, 2), 640, False, "NUCLEAR", "Nuclear", "EDF Energy Nuclear Generation Ltd"),
        ("T_HEYM2", (7, 8), 610, False, "NUCLEAR", "Nuclear", "EDF Energy Nuclear Generation Ltd"),
        ("T_WBURB-", (1, 2, 3), 450, False, "CCGT", "Fossil Gas", "West Burton Energy Ltd"),
        ("T_GRAI-", (6, 7, 8), 455, False, "CCGT", "Fossil Gas", "Uniper UK Ltd"),
        ("T_SCCL-", (1, 2, 3), 400, False, "CCGT", "Fossil Gas", "Saltend Cogeneration Company Ltd"),
        ("T_SGRWO-", range(1, 7), 120, False, "WIND", "Wind Offshore", "Seagreen Wind Energy Ltd"),
        ("T_HOWAO-", (1, 2, 3), 400, False, "WIND", "Wind Offshore", "Orsted Hornsea Project One Ltd"),
        ("T_MOWEO-", (1, 2, 3), 285, False, "WIND", "Wind Offshore", "Moray Offshore Windfarm (East) Ltd"),
        ("T_DINO-", range(1, 7), 300, True, "PS", "Hydro Pumped Storage", "First Hydro Company"),
        ("T_CRUA-", range(1, 5), 110, True, "PS", "Hydro Pumped Storage", "SSE Generation Ltd"),
        ("E_BATT-", range(1, 61), 50, True, "OTHER", "Other", "Battery Storage Trading Ltd"),
        ("E_PILLB-", (1, 2), 49, True, "OTHER", "Other", "Pillswood Storage Ltd"),
        ("2__HFLEX00", range(1, 10), 20, True, "OTHER", "Other", "Flexitricity Ltd"),
    ]
    units = []
    for prefix, numbers, capacity, storage, fuel, remit_fuel, party in families:
        for n in numbers:
            bm_unit = f"{prefix}{n}"
            ng_unit = bm_unit.removeprefix("T_").removeprefix("E_")
            units.append(BmUnit(bm_unit, ng_unit, capacity, storage, fuel, remit_fuel, party))
    return units


BM_UNITS = _bm_units()

# Fuel type → (low, high) MW in FUELINST/FUELHH; negative interconnector flow is export.
FUEL_RANGES = {
    "CCGT": (1200, 22000), "WIND": (500, 17000), "NUCLEAR": (3800, 5600), "BIOMASS": (600, 2600),
    "NPSHYD": (100, 700), "PS": (0, 1800), "OCGT": (0, 150), "COAL": (0, 0), "OIL": (0, 0),
    "OTHER": (200, 700), "INTFR": (-2000, 2000), "INTIRL": (-500, 500), "INTNED": (-1000, 1000),
    "INTEW": (-500, 500), "INTNEM": (-1000, 1000), "INTELEC": (-1000, 1000), "INTIFA2": (-1000, 1000),
    "INTNSL": (-1400, 1400), "INTVKL": (-1400, 1400), "INTGRNL": (-500, 500),
}
# GB usually imports from the continent and Norway and exports to Ireland.
IRISH_INTERCONNECTORS = frozenset({"INTIRL", "INTEW", "INTGRNL"})
PSR_TYPES = ("Generation", "Wind Offshore", "Wind Onshore", "Solar", "Biomass", "Nuclear", "Fossil Gas")

# Messages per minute for the BM-unit datasets (one BM unit per message), doubled for five minutes
# after each half hour when submissions for the next periods bunch up.
BM_MESSAGES_PER_MINUTE = {"BOD": 35, "PN": 30, "QPN": 15, "MELS": 10, "MILS": 10, "BOALF": 8}
BM_DATASETS = frozenset(BM_MESSAGES_PER_MINUTE)
MESSAGES_PER_DUE = {"REMIT": 2}
# Publication minute within the cadence, where IRIS has a known one: settlement runs ~14 min after
# the period. Other datasets publish 0–2 minutes into their cadence.
PUBLICATION_MINUTE = {"BOAV": 14, "EBOCF": 14, "DISPTAV": 14, "ISPSTACK": 14}
SETTLEMENT_RUN_DATASETS = frozenset(PUBLICATION_MINUTE)
# Fields the simulator sends that the registry may not declare yet (loaded as extra columns).
EXTRA_FIELDS = {"MID": ("sourceFileDateTime", "sourceFileSerialNumber"),
                "mibm_mid": ("sourceFileDateTime", "sourceFileSerialNumber"),
                **{code: ("bidOffer",) for code in SETTLEMENT_RUN_DATASETS}}

# Publication interval of the event-driven datasets, for a registry that gives them no cadence.
EVENT_INTERVAL_SECONDS = {
    **dict.fromkeys(("SYS_WARN", "DCI", "IGCPU", "E0361"), 3600),
    **dict.fromkeys(("SEL", "SIL", "MDP", "MDV", "MNZT", "MZT", "NDZ", "NTB", "NTO", "RDRE", "RDRI", "RURE", "RURI"), 60),
}


def publication_interval(dataset: Dataset) -> int:
    """Seconds between the simulator's publications of `dataset`."""
    return dataset.cadence_seconds or EVENT_INTERVAL_SECONDS.get(dataset.code, 3600)


PRECISE_TIMESTAMP_FRACTION = 0.3
LARGE_MESSAGE_FRACTION = 0.01
REDECLARATION_FRACTION = 0.3  # MELS/MILS messages that redeclare a unit's earlier declaration
AMENDMENT_FRACTION = 0.05  # BOALF messages that amend an earlier acceptance
MID_RESEND_FRACTION = 0.3  # MID files that also re-send the previous period
SEQUENCE_EPOCH = dt.datetime(2024, 1, 1, tzinfo=UTC)  # MELS/MILS sequences and acceptance numbers grow from here
MAX_BM_MESSAGES = 99  # per publication: room left in sequence numbers, which count 100 per minute

SYS_WARNINGS = (
    ("ELECTRICITY MARGIN NOTICE",
     "NATIONAL GRID ESO NOTIFICATION of Electricity Margin Notice for the period {start} to {end} on {day}. "
     "The margin shortfall is {mw} MW. Generators are requested to maximise output."),
    ("CAPACITY MARKET NOTICE",
     "NATIONAL GRID ESO NOTIFICATION: a Capacity Market Notice has been issued for {day} from {start} to {end}, "
     "with an expected system margin of {mw} MW."),
    ("NEGATIVE RESERVE ACTIVE POWER MARGIN",
     "NATIONAL GRID ESO NOTIFICATION of Negative Reserve Active Power Margin for {day} from {start} to {end}. "
     "Anticipated shortfall {mw} MW."),
    ("SO-SO TRADES",
     "NATIONAL GRID ESO NOTIFICATION of excess energy prices used for settlement outside of BALIT for SO to SO "
     "Transactions in period {start} to {end} on {day}."),
    ("IT SYSTEMS OUTAGE",
     "Elexon Insights Solution: planned maintenance of the BMRS systems on {day} from {start} to {end}. "
     "Data may be delayed during this time."),
)


def _iso_z(value: dt.date) -> str:
    if type(value) is dt.datetime:
        return value.isoformat()[:19] + "Z"
    return value.isoformat()


def _iso_precise(value: dt.date) -> str:
    if type(value) is dt.datetime:
        return value.isoformat()[:19] + ".0000000+00:00"
    return value.isoformat()


def _encode_records(records: Records, precise: bool) -> bytes:
    if precise:
        return orjson.dumps(records, default=_iso_precise, option=orjson.OPT_PASSTHROUGH_DATETIME)
    # orjson writes whole-second UTC datetimes as 2025-01-15T10:00:00Z itself (what _iso_z would)
    return orjson.dumps(records, option=orjson.OPT_UTC_Z)


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


# --- the simulator -------------------------------------------------------------------------------


class Simulator:
    """Messages of every registered dataset at its cadence, from `start` on.

    A message is a pure function of (seed, dataset, publication time, index within the publication):
    regenerated after a restart it has the same name and the same bytes, so the warehouse's ledger sees a
    redelivery. Publication times are whole minutes: multiples of the dataset's cadence (since the epoch)
    plus a small per-dataset offset, so half-hourly datasets bunch in the minutes after each half hour.
    Revisions (DISEBSP and settlement re-runs, MID re-sends, REMIT revisions, MELS/MILS redeclarations,
    BOALF amendments) are separate messages with their own, later publication times.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        seed: int = 0,
        start: dt.datetime | None = None,
        *,
        run_token: str | None = None,
        plain_fraction: float = 0.1,
    ):
        self.registry = registry or load_registry()
        self.seed = seed
        self.start = floor_time(start or dt.datetime.now(UTC), 1)
        self.run_token = run_token or f"SIM{seed}"
        self.plain_fraction = plain_fraction
        self._intervals = {d.code: publication_interval(d) for d in self.registry}
        self._next_due = {d.code: self._first_due(d, self.start) for d in self.registry}
        self._prices: dict[int, float] = {}  # market_price by instant: a cache, not state
        self._knots: dict[tuple[str, int, int], float] = {}  # _noise's hashed knots: a cache, not state
        self._memos: dict[tuple, Records] = {}  # see _memo
        self._builders: dict[str, Callable[[Dataset, dt.datetime, int], Records]] = {
            "BOD": self._bod, "PN": self._physical_notification, "QPN": self._physical_notification,
            "MELS": self._export_import_limits, "MILS": self._export_import_limits, "BOALF": self._acceptances,
            "FREQ": self._frequency_readings, "FUELINST": self._fuel_generation, "FUELHH": self._fuel_generation,
            "MID": self._market_index, "mibm_mid": self._market_index, "DISEBSP": self._system_prices,
            "REMIT": self._remit, "SYS_WARN": self._system_warning,
            "BOAV": self._settlement_run, "EBOCF": self._settlement_run, "DISPTAV": self._settlement_run,
            "ISPSTACK": self._settlement_run,
        }

    # public ------------------------------------------------------------------------------------
    def messages_due(self, until: dt.datetime) -> list[Message]:
        """Messages published after the previous call's `until` (or from `start`) up to `until`."""
        due: list[tuple[dt.datetime, int, Message]] = []
        for dataset in self.registry:
            cadence = dt.timedelta(seconds=self._intervals[dataset.code])
            published = self._next_due[dataset.code]
            while published <= until:
                for message in self.messages_at(dataset.code, published):
                    due.append((published, len(due), message))
                published += cadence
            self._next_due[dataset.code] = published
        due.sort(key=lambda item: item[:2])
        return [message for _, _, message in due]

    def messages_at(self, code: str, published: dt.datetime) -> list[Message]:
        """The messages one publication of `code` at `published` consists of (the same on every call)."""
        dataset = self.registry[code]
        published = floor_time(published.astimezone(UTC), 60)
        build = self._builders.get(code, self._generic)
        return [self._message(dataset, published, index, build(dataset, published, index))
                for index in range(self._count(code, published))]

    # plumbing ----------------------------------------------------------------------------------
    @staticmethod
    def _first_due(dataset: Dataset, start: dt.datetime) -> dt.datetime:
        cadence = publication_interval(dataset)
        minute = PUBLICATION_MINUTE.get(dataset.code)
        if minute is None:
            minute = zlib.crc32(dataset.code.encode()) % min(cadence // 60, 3)
        offset = minute * 60
        k = math.ceil((start.timestamp() - offset) / cadence)
        return dt.datetime.fromtimestamp(k * cadence + offset, UTC)

    def _count(self, code: str, published: dt.datetime) -> int:
        if code == "BOALF":
            return self._base_count(code, published) + len(self._amendments_due(published))
        if code in BM_DATASETS:
            return self._base_count(code, published)
        if code == "DISEBSP":
            return 2  # this period's first run, and yesterday's same period re-run
        if code in SETTLEMENT_RUN_DATASETS:
            return 4  # (offer, bid) × (first run ~14 min after the period, next-day re-run)
        if code == "REMIT":
            return MESSAGES_PER_DUE["REMIT"] + len(self._remit_revisions_due(published))
        return MESSAGES_PER_DUE.get(code, 1)

    def _base_count(self, code: str, published: dt.datetime) -> int:
        """Messages of a BM-unit dataset at `published`, before any amendments."""
        base = BM_MESSAGES_PER_MINUTE[code] * self._intervals[code] / 60
        burst = 2 if published.minute % 30 < 5 else 1
        jitter = 0.7 + 0.6 * _unit_interval(self.seed, code, "count", _epoch(published))
        count = max(1, round(base * burst * jitter))
        # numbered datasets: index + amendments must stay below the 100 numbers each minute has
        return min(MAX_BM_MESSAGES // 2, count) if code in ("MELS", "MILS", "BOALF") else count

    def _message_rng(self, code: str, published: dt.datetime, index: int) -> Random:
        return _rng(self.seed, code, _epoch(published), index)

    def _message(self, dataset: Dataset, published: dt.datetime, index: int, records: Records) -> Message:
        if "dataset" in dataset.column_names:
            records = [{"dataset": dataset.code, **r} for r in records]
        style = _hash(self.seed, dataset.code, "style", _epoch(published), index)
        precise = (style & 0xFFFF) / 0x10000 < PRECISE_TIMESTAMP_FRACTION
        array = _encode_records(records, precise=precise)
        plain = (style >> 16 & 0xFFFF) / 0x10000 < self.plain_fraction
        body = array if plain else orjson.dumps(array.decode())
        name = f"{dataset.code}_{published:%Y%m%d%H%M}_{self.run_token}-{index + 1:07d}.json"
        return Message(dataset.code, name, body)

    def _knot(self, name: str, scale: int, knot: int) -> float:
        key = (name, scale, knot)
        if (value := self._knots.get(key)) is None:
            if len(self._knots) > 100_000:
                self._knots.clear()
            value = self._knots[key] = _hash(self.seed, name, scale, knot) / _TWO_63 - 1
        return value

    def _noise(self, name: str, seconds: float, scale: int) -> float:
        """Smooth noise in [-1, 1]: hashed knots every `scale` seconds, cosine-interpolated."""
        position = seconds / scale
        knot = math.floor(position)
        a = self._knot(name, scale, knot)
        b = self._knot(name, scale, knot + 1)
        w = (1 - math.cos(math.pi * (position - knot))) / 2
        return a + (b - a) * w

    def _wander(self, name: str, seconds: float, *scales: int) -> float:
        """Smooth noise in [-1, 1] over several time scales, the slowest weighing most."""
        total = weight = 0.0
        w = 1.0
        for scale in scales:
            total += w * self._noise(name, seconds, scale)
            weight += w
            w /= 2
        return total / weight

    def _unit_for(self, rng: Random) -> BmUnit:
        return rng.choice(BM_UNITS)

    @staticmethod
    def _bm_fields(time_from: dt.datetime, time_to: dt.datetime) -> dict[str, Any]:
        day, period = settlement_period(time_from)
        return {"settlementDate": day, "settlementPeriod": period, "timeFrom": time_from, "timeTo": time_to}

    # the GB system as functions of time -----------------------------------------------------------
    def national_demand(self, t: dt.datetime) -> int:
        """National demand (MW), 20–45 GW: daily shape, winter higher, weather noise."""
        winter = _winter(t)
        shape = _load_shape(_local_hour(t))
        mw = 21000 + 5000 * winter + (9000 + 9000 * winter) * shape
        mw += 1200 * self._wander("demand", t.timestamp(), 43200, 7200)
        return round(_clamp(mw, 20000, 45000))

    def _fraction(self, name: str, t: dt.datetime, *scales: int) -> float:
        """Smooth noise in [0, 1]."""
        return (self._wander(name, t.timestamp(), *scales) + 1) / 2

    def fuel_mix(self, t: dt.datetime) -> dict[str, int]:
        """FUELINST generation (MW) by fuel type at `t`; interconnectors positive when GB imports."""
        s = t.timestamp()
        hour = _local_hour(t)
        winter = _winter(t)
        shape = _load_shape(hour)
        night = 1.0 if hour < 6 or hour >= 23 else 0.0
        mw: dict[str, float] = {
            "WIND": 500 + (8000 + 8000 * winter) * self._fraction("WIND", t, 86400, 21600, 3600) ** 1.3,
            "NUCLEAR": 3900 + 1600 * self._fraction("NUCLEAR", t, 7 * 86400, 86400),
            "BIOMASS": 700 + 1800 * shape * self._fraction("BIOMASS", t, 21600, 3600),
            "NPSHYD": 100 + 550 * winter * self._fraction("NPSHYD", t, 86400, 10800),
            "OCGT": 0.0, "COAL": 0.0, "OIL": 0.0,  # GB's last coal plant closed in 2024
            "OTHER": 250 + 400 * self._fraction("OTHER", t, 43200),
        }
        peak = 7 <= hour < 9.5 or 16 <= hour < 20
        # Pumped storage generates at the peaks and pumps at night, which FUELINST shows as 0.
        if peak:
            mw["PS"] = 300 + 1500 * self._fraction("PS", t, 3600, 900)
        elif hour < 7 or hour >= 23:
            mw["PS"] = 0.0
        else:
            mw["PS"] = 200 * max(0.0, self._wander("PS", s, 3600))
        if peak and winter > 0.6 and shape > 0.85:
            mw["OCGT"] = 150 * self._fraction("OCGT", t, 1800)
        import_bias = 0.45 + 0.35 * night + 0.2 * winter - 0.5 * (1 - winter) * _solar_shape(hour)
        for fuel, (_, high) in FUEL_RANGES.items():
            if fuel.startswith("INT"):
                bias = -0.4 + 0.2 * shape if fuel in IRISH_INTERCONNECTORS else import_bias
                mw[fuel] = high * _clamp(bias + 0.35 * self._wander(fuel, s, 21600, 3600), -1, 1)
        others = sum(mw.values())
        mw["CCGT"] = _clamp(self.national_demand(t) - others, *FUEL_RANGES["CCGT"])
        return {fuel: round(mw[fuel]) for fuel in FUEL_RANGES}

    def market_price(self, t: dt.datetime) -> float:
        """Day-ahead-ish £/MWh with a daily shape: cheap nights, evening peak, dear winters."""
        key = _epoch(t)
        if (price := self._prices.get(key)) is None:
            price = self._prices[key] = self._market_price(t)
            if len(self._prices) > 4096:
                self._prices.clear()
        return price

    def _market_price(self, t: dt.datetime) -> float:
        shape = _load_shape(_local_hour(t))
        price = 40 + 25 * _winter(t) + 60 * shape ** 2 + 18 * self._wander("price", t.timestamp(), 43200, 7200)
        return round(max(-5.0, price), 2)

    def unit_level(self, unit: BmUnit, t: dt.datetime) -> int:
        """A unit's physical notification (MW) at `t`: within its capacity, negative only for storage."""
        u = self._wander(unit.bm_unit, t.timestamp(), 14400, 3600, 1200)
        if unit.can_import:
            level = unit.capacity * u
        elif unit.fuel == "WIND":
            level = unit.capacity * (u + 1) / 2
        elif unit.fuel == "NUCLEAR":
            level = unit.capacity * (0.9 + 0.1 * u)
        else:
            level = unit.capacity * _clamp(0.4 + 0.9 * u, 0, 1)
        return round(level)

    # BM-unit datasets --------------------------------------------------------------------------
    def _bod(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        rng = self._message_rng(dataset.code, published, index)
        large = rng.random() < LARGE_MESSAGE_FRACTION
        units = rng.sample(BM_UNITS, 40) if large else [self._unit_for(rng)]
        first = floor_time(published + dt.timedelta(hours=1), 1800)  # submitted ahead of gate closure
        periods = rng.randint(1, 4)
        return [r for unit in units for p in range(periods) for r in self._bid_offer_pairs(unit, first + p * HALF_HOUR)]

    def _memo(self, key: tuple, build: Callable[[], Records]) -> Records:
        """Records that several messages repeat, built once (a cache, not state: never mutate them)."""
        if (records := self._memos.get(key)) is None:
            if len(self._memos) > 20_000:
                self._memos.clear()
            records = self._memos[key] = build()
        return records

    def _bid_offer_pairs(self, unit: BmUnit, start: dt.datetime) -> Records:
        """A unit's bid-offer pairs for the period starting at `start` (the same in every message)."""
        return self._memo(("BOD", unit.bm_unit, start), lambda: self._build_bid_offer_pairs(unit, start))

    def _build_bid_offer_pairs(self, unit: BmUnit, start: dt.datetime) -> Records:
        rng = _rng(self.seed, "BOD", unit.bm_unit, _epoch(start))
        pairs = 1 + _hash(self.seed, "pairs", unit.bm_unit) % 5
        price = self.market_price(start) + rng.uniform(-10, 25)
        # Wind units pay to be turned down (negative bids); storage and thermal units bid below their offers.
        bid_base = -abs(rng.uniform(20, 80)) if unit.fuel == "WIND" else price - rng.uniform(15, 40)
        records = []
        for pair_id in [*range(-pairs, 0), *range(1, pairs + 1)]:
            level = round(unit.capacity * pair_id / pairs)  # bid pairs (negative ids) have negative levels
            placeholder = rng.random() < 0.1
            records.append({
                **self._bm_fields(start, start + HALF_HOUR),
                "levelFrom": level, "levelTo": level, "pairId": pair_id,
                "offer": 9999.0 if placeholder else round(price + 6 * pair_id + 12, 2),
                "bid": -9999.0 if placeholder else round(bid_base + 6 * pair_id, 2),
                "nationalGridBmUnit": unit.national_grid_bm_unit, "bmUnit": unit.bm_unit,
            })
        return records

    def _segments(self, unit: BmUnit, bounds: list[dt.datetime], levels: list[int]) -> Records:
        """Contiguous segments: each one starts at the level the previous one ended at."""
        return [
            {**self._bm_fields(a, b), "levelFrom": levels[i], "levelTo": levels[i + 1],
             "nationalGridBmUnit": unit.national_grid_bm_unit, "bmUnit": unit.bm_unit}
            for i, (a, b) in enumerate(itertools.pairwise(bounds))
        ]

    def _period_segments(self, code: str, unit: BmUnit, start: dt.datetime) -> Records:
        """A unit's PN for one period: its level path, cut at 0–2 minutes, the same in every message;
        the level at the period boundary is shared with the neighbouring periods (no jumps)."""
        return self._memo((code, unit.bm_unit, start), lambda: self._build_period_segments(code, unit, start))

    def _build_period_segments(self, code: str, unit: BmUnit, start: dt.datetime) -> Records:
        rng = _rng(self.seed, code, unit.bm_unit, _epoch(start))
        cuts = sorted(rng.sample(range(1, 30), rng.randint(0, 2)))
        bounds = [start, *(start + c * MINUTE for c in cuts), start + HALF_HOUR]
        return self._segments(unit, bounds, [self.unit_level(unit, b) for b in bounds])

    def _physical_notification(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        rng = self._message_rng(dataset.code, published, index)
        unit = self._unit_for(rng)
        start = floor_time(published + dt.timedelta(hours=1), 1800)
        return [r for p in range(rng.randint(1, 4))
                for r in self._period_segments("PN", unit, start + p * HALF_HOUR)]

    def notification_sequence(self, code: str, published: dt.datetime, index: int) -> int:
        """Large and increasing over time, like real MELS/MILS sequences (~1e8)."""
        minutes = (_epoch(published) - _epoch(SEQUENCE_EPOCH)) // 60
        return 50_000_000 + minutes * (MAX_BM_MESSAGES + 1) + index + (_text_hash(code) % 7) * 1000

    def _is_redeclaration(self, code: str, published: dt.datetime, index: int) -> bool:
        return _unit_interval(self.seed, code, "redeclare", _epoch(published), index) < REDECLARATION_FRACTION

    def _limit_levels(self, code: str, unit: BmUnit, rng: Random, n: int) -> list[int]:
        if code == "MILS":  # import limits: negative for storage, 0 for generators
            return [-round(unit.capacity * rng.choice((1, 1, 0.8, 0.5))) if unit.can_import else 0
                    for _ in range(n)]
        return [round(unit.capacity * rng.choice((1, 1, 1, 0.9, 0.75, 0.5, 0))) for _ in range(n)]

    def _declaration(self, code: str, published: dt.datetime, index: int) -> tuple[BmUnit, Records]:
        """A first declaration: a unit's limits from 5–60 minutes ahead for 30–240 minutes."""
        rng = self._message_rng(code, published, index)
        unit = self._unit_for(rng)
        start = published + rng.randint(5, 60) * MINUTE
        minutes = rng.randint(30, 240)
        cuts = sorted(rng.sample(range(1, minutes), rng.randint(0, 2)))
        bounds = [start, *(start + c * MINUTE for c in cuts), start + minutes * MINUTE]
        return unit, self._segments(unit, bounds, self._limit_levels(code, unit, rng, len(bounds)))

    def _export_import_limits(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        code = dataset.code
        rng = self._message_rng(code, published, index)
        if self._is_redeclaration(code, published, index):
            # Redeclare an earlier first declaration: same unit, a later sequence, an interval that
            # overlaps it with boundaries not aligned to it (e.g. 11:09–11:21 inside 11:00–12:00).
            earlier = published - rng.randint(1, 20) * MINUTE
            original = rng.randrange(self._count(code, earlier))
            if not self._is_redeclaration(code, earlier, original):
                unit, declared = self._declaration(code, earlier, original)
                first, last = declared[0]["timeFrom"], declared[-1]["timeTo"]
                span = int((last - first) / MINUTE)
                start = max(first + rng.randint(1, span - 1) * MINUTE, published + MINUTE)
                end = start + rng.randint(5, 45) * MINUTE
                records = self._segments(unit, [start, end], self._limit_levels(code, unit, rng, 2))
                return self._notified(records, code, published, index)
        unit, records = self._declaration(code, published, index)
        return self._notified(records, code, published, index)

    def _notified(self, records: Records, code: str, published: dt.datetime, index: int) -> Records:
        sequence = self.notification_sequence(code, published, index)
        for r in records:
            r["notificationTime"] = published
            r["notificationSequence"] = sequence
        return records

    def acceptance_number(self, published: dt.datetime, index: int) -> int:
        """Five- or six-digit, growing with time (wrapping weekly: the key also holds bmUnit and timeFrom)."""
        minutes = (_epoch(published) - _epoch(SEQUENCE_EPOCH)) // 60
        return 10_000 + (minutes * (MAX_BM_MESSAGES + 1) + index) % 990_000

    def _amendments_due(self, published: dt.datetime) -> list[tuple[dt.datetime, int]]:
        """(publication, index) of the acceptances amended at `published`: each original is amended at
        most once, 1–10 minutes after it was sent."""
        due = []
        for minutes in range(1, 11):
            earlier = published - minutes * MINUTE
            for index in range(self._base_count("BOALF", earlier)):
                h = _hash(self.seed, "BOALF-amend", _epoch(earlier), index)
                if h / (2 * _TWO_63) < AMENDMENT_FRACTION and 1 + (h & 0xFF) % 10 == minutes:
                    due.append((earlier, index))
        return due

    def _acceptance(self, published: dt.datetime, index: int) -> Records:
        rng = self._message_rng("BOALF", published, index)
        unit = self._unit_for(rng)
        start = published + rng.randint(2, 10) * MINUTE
        end = start + rng.randint(5, 40) * MINUTE
        cuts = sorted(rng.sample(range(1, int((end - start) / MINUTE)), rng.randint(0, 3)))
        bounds = [start, *(start + c * MINUTE for c in cuts), end]
        low = -unit.capacity if unit.can_import else 0
        levels = [rng.randint(low, unit.capacity) for _ in bounds]
        to_period = settlement_period(end)[1]
        records = self._segments(unit, bounds, levels)
        for r in records:
            r.pop("settlementPeriod")
            r.update(
                settlementPeriodFrom=settlement_period(start)[1], settlementPeriodTo=to_period,
                acceptanceNumber=self.acceptance_number(published, index), acceptanceTime=published,
                deemedBoFlag=False, soFlag=rng.random() < 0.3, amendmentFlag="ORI",
                storFlag=False, rrFlag=False,
            )
        return records

    def _acceptances(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        base = self._base_count("BOALF", published)
        if index < base:
            return self._acceptance(published, index)
        # The same acceptance (unit, number, times) re-sent as an amendment with corrected levels.
        records = self._acceptance(*self._amendments_due(published)[index - base])
        unit = next(u for u in BM_UNITS if u.bm_unit == records[0]["bmUnit"])
        low = -unit.capacity if unit.can_import else 0
        for r in records:
            r["amendmentFlag"] = "AMD"
            r["levelFrom"] = round(_clamp(r["levelFrom"] * 0.9, low, unit.capacity))
            r["levelTo"] = round(_clamp(r["levelTo"] * 0.9, low, unit.capacity))
        return records

    # system-wide datasets ----------------------------------------------------------------------
    def frequency(self, t: dt.datetime) -> float:
        s = t.timestamp()
        hz = 50 + 0.09 * self._wander("FREQ", s, 900, 180, 45) + 0.004 * (2 * _unit_interval(self.seed, "Hz", int(s)) - 1)
        return round(_clamp(hz, 49.8, 50.2), 3)

    def _frequency_readings(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        # eight readings, the last one 15 s before publication: consecutive files never overlap
        step = dt.timedelta(seconds=15)
        return [{"measurementTime": t, "frequency": self.frequency(t)}
                for t in (published - (8 - i) * step for i in range(8))]

    def _fuel_generation(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        step = 300 if dataset.code == "FUELINST" else 1800
        start = floor_time(published, step) - dt.timedelta(seconds=step)
        day, period = settlement_period(start)
        mix = self.fuel_mix(start + dt.timedelta(seconds=step // 2))
        return [{"publishTime": published, "startTime": start, "settlementDate": day, "settlementPeriod": period,
                 "fuelType": fuel, "generation": mw} for fuel, mw in mix.items()]

    def mid_serial(self, published: dt.datetime) -> int:
        return (_epoch(published) - _epoch(SEQUENCE_EPOCH)) // 60

    def _mid_period(self, start: dt.datetime, published: dt.datetime, corrected: bool) -> Records:
        day, period = settlement_period(start)
        rng = _rng(self.seed, "MID", _epoch(start))
        price = self.market_price(start) + rng.uniform(-3, 3)
        if corrected:
            price += rng.choice((-1, 1)) * rng.uniform(0.5, 4)
        volume = 300 + 2500 * _load_shape(_local_hour(start)) * rng.uniform(0.6, 1.2)
        # N2EX almost always sends price 0 with volume 0: "no trades", not a £0 price.
        n2ex_traded = rng.random() < 0.03
        source = {"sourceFileDateTime": _iso_z(published), "sourceFileSerialNumber": self.mid_serial(published)}
        common = {"startTime": start, "settlementDate": day, "settlementPeriod": period}
        return [
            {**common, "dataProvider": "APXMIDP", "price": round(price, 2), "volume": round(volume, 3), **source},
            {**common, "dataProvider": "N2EXMIDP",
             "price": round(price + rng.uniform(-2, 2), 2) if n2ex_traded else 0.0,
             "volume": round(rng.uniform(5, 60), 3) if n2ex_traded else 0.0, **source},
        ]

    def _market_index(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        start = floor_time(published, 1800) - HALF_HOUR
        records = self._mid_period(start, published, corrected=False)
        rng = self._message_rng(dataset.code, published, index)
        if rng.random() < MID_RESEND_FRACTION:  # the previous period again, sometimes with a corrected price
            records += self._mid_period(start - HALF_HOUR, published, corrected=rng.random() < 0.3)
        return records

    def _system_prices(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        # index 0: the period that just ended; index 1: the same period yesterday, re-run on D+1
        start = floor_time(published, 1800) - HALF_HOUR - index * dt.timedelta(days=1)
        day, period = settlement_period(start)
        rng = _rng(self.seed, "DISEBSP", _epoch(start))
        run = _rng(self.seed, "DISEBSP-run", _epoch(start), index)
        niv = 700 * self._wander("NIV", start.timestamp(), 10800, 1800)
        price = self.market_price(start) + (0.08 * niv) + rng.uniform(-10, 10)
        if index:
            price += run.uniform(-3, 3)
            niv += run.uniform(-40, 40)
        offers = max(0.0, niv) + rng.uniform(50, 900)
        bids = -(max(0.0, -niv) + rng.uniform(50, 900))
        volumes = {
            "totalAcceptedOfferVolume": offers, "totalAcceptedBidVolume": bids,
            "totalAdjustmentSellVolume": -rng.uniform(0, 300), "totalAdjustmentBuyVolume": rng.uniform(0, 300),
            "totalSystemTaggedAcceptedOfferVolume": offers * rng.uniform(0.5, 1),
            "totalSystemTaggedAcceptedBidVolume": bids * rng.uniform(0.5, 1),
            "totalSystemTaggedAdjustmentSellVolume": -rng.uniform(0, 100),
            "totalSystemTaggedAdjustmentBuyVolume": rng.uniform(0, 100),
        }
        return [{
            "settlementDate": day, "settlementPeriod": period, "startTime": start, "createdDateTime": published,
            "systemSellPrice": round(price, 2), "systemBuyPrice": round(price, 2), "bsadDefaulted": False,
            "priceDerivationCode": rng.choice("NAP"), "reserveScarcityPrice": 0.0, "netImbalanceVolume": round(niv, 3),
            "sellPriceAdjustment": 0.0, "buyPriceAdjustment": 0.0, "replacementPrice": None,
            "replacementPriceReferenceVolume": None, **{k: round(v, 3) for k, v in volumes.items()},
        }]

    # settlement runs (BOAV, EBOCF, DISPTAV, ISPSTACK) ------------------------------------------
    def _accepted_units(self, start: dt.datetime, side: str) -> list[tuple[BmUnit, list[float]]]:
        """Units with accepted volume on `side` in the period, with their pair volumes (MWh; bids negative)."""
        rng = _rng(self.seed, "accepted", side, _epoch(start))
        units = rng.sample(BM_UNITS, rng.randint(3, 10))
        sign = 1 if side == "offer" else -1
        return [(u, [sign * round(rng.uniform(0.05, 0.25) * u.capacity, 3) for _ in range(rng.randint(1, 3))])
                for u in units]

    def _settlement_run(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        """Index 0/1: offer/bid side of the period that ended ~14 minutes ago; 2/3: the same sides of that
        period yesterday, re-run on D+1 (a new createdDateTime, slightly different volumes)."""
        side = ("offer", "bid")[index % 2]
        start = floor_time(published, 1800) - HALF_HOUR - (index // 2) * dt.timedelta(days=1)
        day, period = settlement_period(start)
        run = _rng(self.seed, dataset.code, "run", _epoch(start), index)
        head = {"settlementDate": day, "settlementPeriod": period, "startTime": start, "createdDateTime": published}
        records = []
        for position, (unit, volumes) in enumerate(self._accepted_units(start, side)):
            if index // 2:
                volumes = [round(v * run.uniform(0.97, 1.03), 3) for v in volumes]
            key = "positive" if side == "offer" else "negative"
            acceptance_id = self.acceptance_number(start, position)
            price = self.market_price(start) + (12 if side == "offer" else -25)
            unit_fields = {"bmUnit": unit.bm_unit, "bmUnitType": unit.bm_unit_type, "leadPartyName": unit.lead_party,
                           "nationalGridBmUnit": unit.national_grid_bm_unit}
            if dataset.code == "BOAV":
                records.append({**head, **unit_fields, "acceptanceId": acceptance_id,
                                "acceptanceDuration": "L" if position % 3 else "S",
                                "totalVolumeAccepted": round(sum(volumes), 3),
                                "pairVolumes": {f"{key}{i + 1}": v for i, v in enumerate(volumes)}, "bidOffer": side})
            elif dataset.code == "DISPTAV":
                records.append({**head, **unit_fields, "dataType": "Original",
                                "totalVolumeAccepted": round(sum(volumes), 3),
                                "pairVolumes": {f"{key}{i + 1}": v for i, v in enumerate(volumes)}, "bidOffer": side})
            elif dataset.code == "EBOCF":
                cashflows = {f"{key}{i + 1}": round(v * (price + 3 * i), 2) for i, v in enumerate(volumes)}
                records.append({**head, **unit_fields, "bidOfferPairCashflows": cashflows,
                                "totalCashflow": round(sum(cashflows.values()), 2), "bidOffer": side})
            else:  # ISPSTACK: one stack entry per pair
                for i, volume in enumerate(volumes):
                    tlm = 1 + (_hash(self.seed, "tlm", unit.bm_unit) % 400 - 200) / 10000
                    final = round(price + 3 * i, 2)
                    records.append({
                        **head, "sequenceNumber": len(records) + 1, "id": unit.bm_unit, "acceptanceId": acceptance_id,
                        "bidOfferPairId": (i + 1) if side == "offer" else -(i + 1), "cadlFlag": False,
                        "soFlag": position % 4 == 0, "storProviderFlag": False, "repricedIndicator": False,
                        "reserveScarcityPrice": None, "originalPrice": final, "volume": volume,
                        "dmatAdjustedVolume": volume, "arbitrageAdjustedVolume": volume,
                        "nivAdjustedVolume": volume, "parAdjustedVolume": volume, "finalPrice": final,
                        "transmissionLossMultiplier": round(tlm, 4), "tlmAdjustedVolume": round(volume * tlm, 3),
                        "tlmAdjustedCost": round(volume * tlm * final, 2), "bidOffer": side,
                    })
        return records

    # REMIT --------------------------------------------------------------------------------------
    def _remit_plan(self, created: dt.datetime) -> tuple[int, int]:
        """(revisions after the first, hours between them) of the event first published at `created`."""
        h = _hash(self.seed, "REMIT-plan", _epoch(created))
        return h % 3, 1 + (h >> 8) % 8

    def _remit_revisions_due(self, published: dt.datetime) -> list[tuple[dt.datetime, int]]:
        """(first publication, revisionNumber) of the events revised at `published`."""
        due = []
        for hours in range(1, 3 * 8 + 1):
            created = published - hours * dt.timedelta(hours=1)
            revisions, gap = self._remit_plan(created)
            if hours % gap == 0 and hours // gap <= revisions:
                due.append((created, hours // gap + 1))
        return due

    def _remit(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        if index < MESSAGES_PER_DUE["REMIT"]:
            return self._remit_event(published, index, published, 1)
        created, revision = self._remit_revisions_due(published)[index - MESSAGES_PER_DUE["REMIT"]]
        return self._remit_event(created, 0, published, revision)

    def _remit_event(self, created: dt.datetime, index: int, published: dt.datetime, revision: int) -> Records:
        rng = _rng(self.seed, "REMIT", _epoch(created), index)
        unit = self._unit_for(rng)
        participant = 1000 + BM_UNITS.index(unit) % 50
        serial = (_epoch(created) - _epoch(SEQUENCE_EPOCH)) // 3600 * 4 + index
        mrid = f"48X000000000{participant}-NGET-RMT-{serial:08d}"
        hour = dt.timedelta(hours=1)
        start = floor_time(created, 3600) + rng.randint(1, 240) * hour
        if rng.random() < LARGE_MESSAGE_FRACTION:  # a long outage with an hourly profile
            hours, step = rng.randint(500, 2000), 1
        else:
            hours = rng.randint(2, 96)
            step = max(1, hours // rng.randint(1, 4))
        available = rng.randint(0, unit.capacity)
        if revision > 1:  # revisions move the return date and the available capacity
            change = _rng(self.seed, "REMIT-revision", _epoch(created), index, revision)
            hours += change.randint(-hours // 2, 48)
            hours = max(1, hours)
            available = change.randint(0, unit.capacity)
        end = start + hours * hour
        profile = [
            {"startTime": start + h * hour, "endTime": min(end, start + (h + step) * hour),
             "capacity": float(available + rng.randint(0, unit.capacity - available))}
            for h in range(0, hours, step)
        ]
        planned = rng.random() < 0.7
        return [{
            "mrid": mrid, "revisionNumber": revision, "publishTime": published, "createdTime": published,
            "messageType": "UnavailabilitiesOfElectricityFacilities",
            "messageHeading": "Planned Unavailability of Generation Unit" if planned
            else "Unplanned Unavailability of Generation Unit",
            "eventType": "Production unavailability", "unavailabilityType": "Planned" if planned else "Unplanned",
            "participantId": f"48X000000000{participant}", "registrationCode": f"48X000000000{participant}",
            "assetId": unit.bm_unit, "assetType": "Production", "affectedUnit": unit.national_grid_bm_unit,
            "affectedUnitEIC": f"48W00000{unit.national_grid_bm_unit}",
            "affectedArea": "N", "biddingZone": "10YGB----------A", "fuelType": unit.remit_fuel,
            "normalCapacity": float(unit.capacity), "availableCapacity": float(available),
            "unavailableCapacity": float(unit.capacity - available), "eventStatus": "Active",
            "eventStartTime": start, "eventEndTime": end, "durationUncertainty": None,
            "cause": "Planned maintenance" if planned else "Plant failure",
            "relatedInformation": None, "outageProfile": profile,
        }]

    def _system_warning(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        rng = self._message_rng(dataset.code, published, index)
        warning_type, template = rng.choice(SYS_WARNINGS)
        start = (floor_time(published, 1800) + HALF_HOUR).astimezone(LONDON)
        end = start + rng.randint(2, 8) * HALF_HOUR
        text = template.format(start=f"{start:%H:%M}", end=f"{end:%H:%M}", day=f"{start:%d/%m/%Y}",
                               mw=rng.randrange(300, 1500, 50))
        return [{"publishTime": published, "warningType": warning_type, "warningText": text}]

    # every other dataset, from its registry columns --------------------------------------------
    def _generic(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        rng = self._message_rng(dataset.code, published, index)
        # daily and longer datasets: one record per day (week, month...), never two for the same date
        cadence = self._intervals[dataset.code]
        step = dt.timedelta(seconds=cadence if cadence >= 86400 else min(cadence, 1800))
        base = floor_time(published, min(cadence, 1800))
        unit = self._unit_for(rng)
        # A record is a fact of what identifies it: its target time, its unit (for per-unit datasets) and,
        # for forecasts and other datasets with a publication time, that time. Any message that carries
        # it again carries the same values (e.g. NETBSAD for a period, QAS for a unit and period).
        versioned = any(c in dataset.column_names for c in PUBLICATION_COLUMNS)
        per_unit = "bmUnit" in dataset.column_names
        records = []
        for i in range(rng.randint(1, 12)):
            target = base + i * step
            record_rng = _rng(self.seed, dataset.code, _epoch(target), unit.bm_unit if per_unit else "",
                              _epoch(published) if versioned else 0)
            record_unit = unit if per_unit else self._unit_for(record_rng)
            records.append(self._generic_record(dataset, published, target, record_unit, record_rng))
        return records

    def _generic_record(self, dataset: Dataset, published: dt.datetime, target: dt.datetime, unit: BmUnit,
                        rng: Random) -> dict[str, Any]:
        day, period = settlement_period(target)
        record: dict[str, Any] = {}
        for column in dataset.columns:
            name, kind = column.name, column.type
            if name == "dataset":
                continue  # added with the code when the message is encoded
            if kind == "TIMESTAMP":
                if name in PUBLICATION_COLUMNS:
                    value = published
                elif name.endswith(("To", "End", "endTime", "EndTime")):
                    value = target + HALF_HOUR
                else:
                    value = target
            elif kind == "DATE":
                value = day if "ettlement" in name else target.astimezone(LONDON).date()
            elif kind == "INT64":
                value = self._generic_integer(dataset.code, name, target, period, unit, rng)
            elif kind == "FLOAT64":
                value = self._generic_number(dataset.code, name, target, unit, rng)
            elif kind == "BOOL":
                value = rng.random() < 0.2
            elif kind == "JSON":
                value = {"negative1": -round(rng.uniform(0, unit.capacity / 4), 3),
                         "positive1": round(rng.uniform(0, unit.capacity / 4), 3)}
            else:
                value = self._generic_text(dataset.code, name, target, unit, rng)
            record[name] = value
        if "cost" in record and "volume" in record:  # DISBSAD: the cost of the action's volume
            record["cost"] = round(record["volume"] * (self.market_price(target) + rng.uniform(-15, 40)), 2)
        if "interconnector" in record:  # FOU2T14D/FOU2T3YW: interconnector rows name theirs
            record["interconnector"] = record["fuelType"].startswith("INT")
            record["interconnectorName"] = record["fuelType"] if record["interconnector"] else None
            record["outputUsable"] = round(FUEL_RANGES[record["fuelType"]][1] * rng.uniform(0.6, 1))
        for low, high in (("minimumPossible", "maximumAvailable"), ("elbow2", "elbow3")):
            if low in record and high in record and record[low] > record[high]:
                record[low], record[high] = record[high], record[low]
        return record

    def _generic_integer(self, code: str, name: str, target: dt.datetime, period: int, unit: BmUnit,
                         rng: Random) -> int:
        if "ettlementPeriod" in name:
            return period
        if name in ("year", "forecastYear"):
            return target.year
        if name in ("week", "calendarWeekNumber", "forecastWeek"):
            return target.isocalendar().week
        if "evision" in name:
            return rng.randint(1, 3)
        if name == "demand" and code == "INDOD":  # the day's energy, MWh
            return round(self.national_demand(target.replace(hour=12, minute=0)) * 24 * rng.uniform(0.8, 0.9))
        if name == "demand":  # national / transmission demand, MW (daily datasets: the day's peak)
            at = target.replace(hour=17, minute=30) if code in DAILY_DEMAND_DATASETS else target
            extra = 2500 if code in ("ITSDO", "TSDF", "TSDFD", "TSDFW") else 0
            return self.national_demand(at) + extra + round(rng.uniform(-500, 500))
        if name == "generation":
            if code == "WINDFOR":
                return self.fuel_mix(target)["WIND"] + round(rng.uniform(-800, 800))
            if code == "NONBM":
                return round(rng.uniform(100, 2500))
            return self.national_demand(target) - round(rng.uniform(0, 3000))  # INDGEN
        if name == "imbalance":
            return round(rng.uniform(-1500, 1500))
        if name in ("margin", "surplus"):
            return round(rng.uniform(2000, 14000) if name == "margin" else rng.uniform(-1000, 10000))
        if name == "outputUsable":
            if code.startswith("UOU"):
                return round(unit.capacity * rng.choice((1, 1, 0.8, 0.5, 0)))
            return round(rng.uniform(40000, 60000))  # national (NOU)
        if name in ("periodMax", "periodMin", "notice"):  # minutes
            return rng.choice((0, 5, 15, 30, 60, 120, 240))
        if name == "volumeMax":  # MWh a storage unit can deliver
            return round(unit.capacity * rng.choice((0.5, 1, 2)))
        if name == "level":  # SEL/SIL, MW
            return round(unit.capacity * rng.uniform(0.1, 0.5))
        if name == "creditDefaultLevel":
            return rng.randint(1, 2)
        if name == "instructionSequence":
            return rng.randint(1, 20)
        if name == "id":  # DISBSAD action id: the same action keeps its id
            return (_epoch(target) - _epoch(SEQUENCE_EPOCH)) // 1800 * 10 + rng.randint(0, 9)
        return rng.randint(0, 500)

    def _generic_number(self, code: str, name: str, target: dt.datetime, unit: BmUnit, rng: Random) -> float:
        if name == "temperature":  # °C, daily average for GB: 0-25 by season
            mean = 17 - 12 * _winter(target)
            return round(_clamp(mean + rng.uniform(-3, 3), 0, 25), 1)
        if name == "lossOfLoadProbability":
            return round(rng.choice((0.0, 0.0, 0.0, rng.uniform(0, 0.02), rng.uniform(0, 0.3))), 4)
        if name == "deratedMargin":
            return round(rng.uniform(3000, 15000), 3)
        if name in ("minimumPossible", "maximumAvailable"):
            return round(rng.uniform(18000, 45000), 3)
        if name == "quantity":
            if code in ("ATL", "DATL", "DAG"):  # totals over GB, MW
                return round(self.national_demand(target) + rng.uniform(-800, 800), 3)
            if code in ("IGCA", "YAFM"):  # installed capacity per production type, MW
                return round(rng.uniform(1000, 30000), 3)
            return round(rng.uniform(0, 3000), 3)
        if name in ("energyPrice", "procurementPrice", "tradePrice", "amount", "cost"):
            price = self.market_price(target) + rng.uniform(-15, 40)
            return round(price * (rng.uniform(5, 300) if name == "cost" else 1), 2)
        if name in ("rate1", "rate2", "rate3"):  # MW/minute
            return round(rng.uniform(1, max(2, unit.capacity / 10)), 1)
        if name in ("elbow2", "elbow3"):
            return float(round(unit.capacity * rng.uniform(0.2, 0.9)))
        if name == "voltageLimit":
            return float(rng.choice((132, 275, 400)))
        if name == "installedCapacity":
            return float(unit.capacity)
        if name == "bmUnitApplicableBalancingServicesVolume":  # MWh in a half hour: within the unit's reach
            return round(rng.uniform(-0.5, 0.5) * unit.capacity, 3)
        if name in ("volume", "tradeQuantity", "secondaryQuantity"):
            return round(rng.uniform(-200, 200), 3)
        if "Volume" in name:  # NETBSAD volumes: buy side positive, sell side negative
            return round(rng.uniform(0, 300) * (-1 if "Sell" in name else 1), 3)
        if "Price" in name or "Cost" in name:
            return round(rng.uniform(-5, 5), 2)
        return round(rng.uniform(0, 1000), 3)

    def _generic_text(self, code: str, name: str, target: dt.datetime, unit: BmUnit, rng: Random) -> str:
        if name == "bmUnit":
            return unit.bm_unit
        if name == "nationalGridBmUnit":
            return unit.national_grid_bm_unit
        if name == "fuelType":
            return unit.fuel if code.startswith("UOU") else rng.choice(
                ("CCGT", "WIND", "NUCLEAR", "BIOMASS", "NPSHYD", "PS", "INTFR", "INTNSL"))
        if name == "psrType":
            return rng.choice(PSR_TYPES)
        if name == "boundary":
            return "N"
        if name in ("month", "forecastMonth"):
            return f"{target:%b}".upper()
        if name == "documentId":
            return f"NGET-EMFIP-{code}-{rng.randint(0, 99999999):08d}"
        if name == "biddingZone":
            return "10YGB----------A"
        if name == "flowDirection":
            return rng.choice(("Up", "Down"))
        if name == "tradeDirection":
            return rng.choice(("A01", "A02"))
        if name == "service":
            return rng.choice(("Energy", "System"))
        if name == "systemZone":
            return rng.choice(("E", "N", "S", "W"))
        if name in TEXT_CHOICES:
            return rng.choice(TEXT_CHOICES[name])
        if name in ("registeredResourceEicCode", "affectedUnitEIC"):
            return f"48W00000{unit.national_grid_bm_unit}"
        if name in ("registeredResourceName", "assetId"):
            return unit.national_grid_bm_unit
        if name in ("partyId", "bscPartyId"):
            return unit.lead_party.split()[0].upper()
        serial = rng.randint(1, 99999)
        return {"timeSeriesId": f"NGET-EMFIP-{code}-TS-{serial:05d}", "bidId": f"NGET-{code}-BID-{serial:05d}",
                "mRID": f"NGET-DCI-{serial:05d}", "demandControlId": f"DC{serial:05d}",
                "contractIdentification": f"SOSO-{target:%Y%m%d}-{serial:05d}"}.get(name, f"{name[:4].upper()}{serial % 100}")


# Plausible values for the generic builder's text columns, by column name.
TEXT_CHOICES = {
    "businessType": ("Frequency containment reserve", "Automatic frequency restoration reserve",
                     "Manual frequency restoration reserve", "Replacement reserve"),
    "marketAgreementType": ("Daily", "Weekly", "Monthly", "Yearly"),
    "processType": ("Day ahead", "Intraday process", "Week ahead"),
    "status": ("Intermediate", "Final"),
    "priceDirection": ("Up", "Down"),
    "forecastDateTimezone": ("Europe/London",),
    "messageSeverity": ("INFORMATION", "WARNING"),
    "messageTypeCode": ("SYSTEM", "SETTLEMENT"),
    "messageType": ("Settlement run notice", "System message"),
    "messageText": ("The Interim Initial settlement run has completed.", "BMRA data for the period has been re-sent."),
    "senderIdentification": ("10X1001A1001A515",), "receiverIdentification": ("10XFR-RTE------Q", "10X1001A1001A361"),
    "resourceProvider": ("10X1001A1001A515",), "traderUnit": ("IFA", "IFA2", "BritNed", "NEMO Link", "ElecLink"),
    "affectedDso": ("UKPN", "NPG", "SSEN", "ENWL", "NGED", "SPEN"),
    "demandControlEventFlag": ("I", "L"), "systemManagementActionFlag": ("F", "T"), "amendmentFlag": ("ORI",),
    "clearedDefaultText": ("Default cleared",),
}


PUBLICATION_COLUMNS = frozenset({"publishTime", "createdDateTime", "createdTime", "messageReceivedDateTime",
                                 "publishingPeriodCommencingTime", "acceptanceTime", "notificationTime"})
DAILY_DEMAND_DATASETS = frozenset({"INDOD", "NDFD", "TSDFD", "NDFW", "TSDFW"})


# --- streams -------------------------------------------------------------------------------------

def mixed_backlog(n: int, seed: int = 0, start: dt.datetime | None = None) -> Iterator[Message]:
    """`n` messages with the real IRIS mix, reproducible per seed (same names, same bodies)."""
    simulator = Simulator(seed=seed, start=start or BACKLOG_START, run_token=f"backlog{seed}")
    clock = simulator.start
    produced = 0
    while produced < n:
        for message in simulator.messages_due(clock):
            yield message
            produced += 1
            if produced >= n:
                return
        clock += MINUTE


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

def _number(kind: Callable[[str], float], text: str, *, minimum: float, inclusive: bool, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _positive_int(text: str) -> int:
    return _number(int, text, minimum=0, inclusive=False, what="a positive whole number")


def _positive_seconds(text: str) -> float:
    return _number(float, text, minimum=0, inclusive=False, what="a positive number")


def _non_negative_minutes(text: str) -> float:
    return _number(float, text, minimum=0, inclusive=True, what="zero or a positive number")


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=_positive_int, metavar="N",
                        help="write N new messages as fast as possible (simulated time, no sleeping), then exit")
    parser.add_argument("--duration", type=_positive_seconds, metavar="S", help="stop after S seconds")
    parser.add_argument("--backfill-minutes", type=_non_negative_minutes, default=15, metavar="M",
                        help="first write the messages of the last M minutes (default 15); messages already "
                             "in the spool are not written again, so a restart resumes the feed")
    parser.add_argument("--speed", type=_positive_seconds, default=1.0, metavar="X",
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
