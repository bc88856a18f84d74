"""A realistic synthetic IRIS feed: every registered dataset at its real cadence, shape and size.

Framework-free. `Simulator` produces the messages that fall due in a time window; `mixed_backlog`
streams a fixed, reproducible mix for benchmarks; `run` writes into a spool in (sped-up) real time and
backs `iris-pipeline simulate`.

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
import secrets
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


def _bm_units() -> list[BmUnit]:
    families = [  # (id prefix, unit numbers, capacity MW, storage)
        ("T_DRAXX-", range(1, 7), 645, False), ("T_PEMB-", (11, 21, 31, 41, 51), 460, False),
        ("T_TORN-", (1, 2), 640, False), ("T_HEYM2", (7, 8), 610, False), ("T_WBURB-", (1, 2, 3), 450, False),
        ("T_GRAI-", (6, 7, 8), 455, False), ("T_SCCL-", (1, 2, 3), 400, False), ("T_SGRWO-", range(1, 7), 120, False),
        ("T_HOWAO-", (1, 2, 3), 400, False), ("T_MOWEO-", (1, 2, 3), 285, False), ("T_DINO-", range(1, 7), 300, True),
        ("T_CRUA-", range(1, 5), 110, True), ("E_BATT-", range(1, 61), 50, True), ("E_PILLB-", (1, 2), 49, True),
        ("2__HFLEX00", range(1, 10), 20, True),
    ]
    units = []
    for prefix, numbers, capacity, storage in families:
        for n in numbers:
            bm_unit = f"{prefix}{n}"
            units.append(BmUnit(bm_unit, bm_unit.removeprefix("T_").removeprefix("E_"), capacity, storage))
    return units


BM_UNITS = _bm_units()

# Fuel type → (low, high) MW in FUELINST/FUELHH; negative interconnector flow is export.
FUEL_RANGES = {
    "CCGT": (3000, 16000), "WIND": (1500, 16000), "NUCLEAR": (3800, 5600), "BIOMASS": (600, 2600),
    "NPSHYD": (100, 700), "PS": (-1500, 1800), "OCGT": (0, 150), "COAL": (0, 0), "OIL": (0, 0),
    "OTHER": (200, 700), "INTFR": (-2000, 2000), "INTIRL": (-500, 500), "INTNED": (-1000, 1000),
    "INTEW": (-500, 500), "INTNEM": (-1000, 1000), "INTELEC": (-1000, 1000), "INTIFA2": (-1000, 1000),
    "INTNSL": (-1400, 1400), "INTVKL": (-1400, 1400), "INTGRNL": (-500, 500),
}
PSR_TYPES = ("Generation", "Wind Offshore", "Wind Onshore", "Solar", "Biomass", "Nuclear", "Fossil Gas")

# Messages per minute for the BM-unit datasets (one BM unit per message), doubled for five minutes
# after each half hour when submissions for the next periods bunch up.
BM_MESSAGES_PER_MINUTE = {"BOD": 35, "PN": 30, "QPN": 15, "MELS": 10, "MILS": 10, "BOALF": 8}
BM_DATASETS = frozenset(BM_MESSAGES_PER_MINUTE)
MESSAGES_PER_DUE = {"REMIT": 2}

PRECISE_TIMESTAMP_FRACTION = 0.3
LARGE_MESSAGE_FRACTION = 0.01

DATE_LIKE_WARNING = "2024-01-01T00:00:00Z"
SYS_WARNINGS = (
    ("SO-SO TRADES", "NATIONAL GRID NOTIFICATION of excess energy prices used for settlement outside of BALIT"
                     " for SO to SO Transactions"),
    ("ELECTRICITY MARGIN NOTICE", "NATIONAL GRID NOTIFICATION of Electricity Margin Notice from {start} to {end}"),
    ("IT SYSTEMS OUTAGE", "Planned outage of BMRA systems starting {start}"),
    # Free text that is shaped exactly like a timestamp: it must be stored as the string it is.
    ("IT SYSTEMS OUTAGE", DATE_LIKE_WARNING),
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
    return orjson.dumps(records, default=_iso_precise if precise else _iso_z, option=orjson.OPT_PASSTHROUGH_DATETIME)


# --- the simulator -------------------------------------------------------------------------------


class Simulator:
    """Messages of every registered dataset at its cadence, from `start` on, reproducible per seed.

    Publication times are multiples of the dataset's cadence (seconds since the epoch) plus a small
    per-dataset offset, so half-hourly datasets bunch in the minutes after each half hour, as on IRIS.
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
        self.rng = Random(seed)
        self.start = floor_time(start or dt.datetime.now(UTC), 1)
        self.run_token = run_token or f"s{seed}{secrets.token_hex(3)}"
        self.plain_fraction = plain_fraction
        self._seq = itertools.count(1)
        self._next_due = {d.code: self._first_due(d, self.start) for d in self.registry}
        self._frequency = 50.0
        self._fuel_mw = {fuel: (lo + hi) / 2 for fuel, (lo, hi) in FUEL_RANGES.items()}
        self._acceptance_number = 100000
        self._notification_sequence: dict[str, int] = {}
        self._remit_revisions: dict[str, int] = {}
        self._builders: dict[str, Callable[[Dataset, dt.datetime], Records]] = {
            "BOD": self._bod, "PN": self._physical_notification, "QPN": self._physical_notification,
            "MELS": self._export_import_limits, "MILS": self._export_import_limits, "BOALF": self._acceptances,
            "FREQ": self._frequency_readings, "FUELINST": self._fuel_generation, "FUELHH": self._fuel_generation,
            "MID": self._market_index, "mibm_mid": self._market_index, "DISEBSP": self._system_prices,
            "REMIT": self._remit, "SYS_WARN": self._system_warning,
        }

    # public ------------------------------------------------------------------------------------
    def messages_due(self, until: dt.datetime) -> list[Message]:
        """Messages published after the previous call's `until` (or from `start`) up to `until`."""
        due: list[tuple[dt.datetime, int, Message]] = []
        for dataset in self.registry:
            cadence = dt.timedelta(seconds=dataset.cadence_seconds)
            published = self._next_due[dataset.code]
            while published <= until:
                for message in self.messages_at(dataset.code, published):
                    due.append((published, len(due), message))
                published += cadence
            self._next_due[dataset.code] = published
        due.sort(key=lambda item: item[:2])
        return [message for _, _, message in due]

    def messages_at(self, code: str, published: dt.datetime) -> list[Message]:
        """The messages one publication of `code` at `published` consists of."""
        dataset = self.registry[code]
        published = published.astimezone(UTC)
        if code in BM_DATASETS:
            base = BM_MESSAGES_PER_MINUTE[code] * dataset.cadence_seconds / 60
            burst = 2 if published.minute % 30 < 5 else 1
            count = max(1, round(base * burst * self.rng.uniform(0.7, 1.3)))
        else:
            count = MESSAGES_PER_DUE.get(code, 1)
        build = self._builders.get(code, self._generic)
        return [self._message(dataset, published, build(dataset, published)) for _ in range(count)]

    # plumbing ----------------------------------------------------------------------------------
    @staticmethod
    def _first_due(dataset: Dataset, start: dt.datetime) -> dt.datetime:
        cadence = dataset.cadence_seconds
        offset = zlib.crc32(dataset.code.encode()) % min(cadence, 180)
        k = math.ceil((start.timestamp() - offset) / cadence)
        return dt.datetime.fromtimestamp(k * cadence + offset, UTC)

    def _message(self, dataset: Dataset, published: dt.datetime, records: Records) -> Message:
        if "dataset" in dataset.column_names:
            records = [{"dataset": dataset.code, **r} for r in records]
        array = _encode_records(records, precise=self.rng.random() < PRECISE_TIMESTAMP_FRACTION)
        body = array if self.rng.random() < self.plain_fraction else orjson.dumps(array.decode())
        name = f"{dataset.code}_{published:%Y%m%d%H%M}_{self.run_token}-{next(self._seq):07d}.json"
        return Message(dataset.code, name, body)

    def _unit(self) -> BmUnit:
        return self.rng.choice(BM_UNITS)

    def _level(self, unit: BmUnit) -> int:
        return self.rng.randint(-unit.capacity if unit.can_import else 0, unit.capacity)

    @staticmethod
    def _bm_fields(time_from: dt.datetime, time_to: dt.datetime) -> dict[str, Any]:
        day, period = settlement_period(time_from)
        return {"settlementDate": day, "settlementPeriod": period, "timeFrom": time_from, "timeTo": time_to}

    # BM-unit datasets --------------------------------------------------------------------------
    def _bod(self, dataset: Dataset, published: dt.datetime) -> Records:
        large = self.rng.random() < LARGE_MESSAGE_FRACTION
        units = self.rng.sample(BM_UNITS, 40) if large else [self._unit()]
        first = floor_time(published + dt.timedelta(hours=1), 1800)  # submitted ahead of gate closure
        records = []
        for unit in units:
            pairs = self.rng.randint(1, 5)
            price = self.rng.uniform(40, 120)
            for start in (first + p * HALF_HOUR for p in range(self.rng.randint(1, 4))):
                for pair_id in [*range(-pairs, 0), *range(1, pairs + 1)]:
                    level = round(unit.capacity * pair_id / pairs)
                    placeholder = self.rng.random() < 0.1
                    records.append({
                        **self._bm_fields(start, start + HALF_HOUR),
                        "levelFrom": level, "levelTo": level, "pairId": pair_id,
                        "offer": 9999.0 if placeholder else round(price + 8 * pair_id + 15, 2),
                        "bid": -9999.0 if placeholder else round(price + 8 * pair_id - 15, 2),
                        "nationalGridBmUnit": unit.national_grid_bm_unit, "bmUnit": unit.bm_unit,
                    })
        return records

    def _segments(self, unit: BmUnit, start: dt.datetime, end: dt.datetime) -> Records:
        """A level profile from start to end in 1–5 contiguous segments on minute boundaries."""
        minutes = int((end - start) / MINUTE)
        cuts = sorted(self.rng.sample(range(1, minutes), self.rng.randint(0, 4)))
        bounds = [start, *(start + c * MINUTE for c in cuts), end]
        levels = [self._level(unit) for _ in bounds]
        return [
            {**self._bm_fields(a, b), "levelFrom": levels[i], "levelTo": levels[i + 1],
             "nationalGridBmUnit": unit.national_grid_bm_unit, "bmUnit": unit.bm_unit}
            for i, (a, b) in enumerate(itertools.pairwise(bounds))
        ]

    def _physical_notification(self, dataset: Dataset, published: dt.datetime) -> Records:
        unit = self._unit()
        start = floor_time(published + dt.timedelta(hours=1), 1800)
        return [r for p in range(self.rng.randint(1, 4)) for r in self._segments(
            unit, start + p * HALF_HOUR, start + (p + 1) * HALF_HOUR)]

    def _export_import_limits(self, dataset: Dataset, published: dt.datetime) -> Records:
        unit = self._unit()
        sequence = self._notification_sequence[unit.bm_unit] = self._notification_sequence.get(unit.bm_unit, 0) + 1
        start = floor_time(published, 60) + self.rng.randint(5, 60) * MINUTE
        records = self._segments(unit, start, start + self.rng.randint(30, 240) * MINUTE)
        for r in records:
            r["levelFrom"], r["levelTo"] = abs(r["levelFrom"]), abs(r["levelTo"])
            if dataset.code == "MILS":
                r["levelFrom"], r["levelTo"] = -r["levelFrom"], -r["levelTo"]
            r["notificationTime"] = published
            r["notificationSequence"] = sequence
        return records

    def _acceptances(self, dataset: Dataset, published: dt.datetime) -> Records:
        unit = self._unit()
        self._acceptance_number += self.rng.randint(1, 3)
        start = floor_time(published, 60) + self.rng.randint(2, 10) * MINUTE
        end = start + self.rng.randint(5, 40) * MINUTE
        records = self._segments(unit, start, end)
        to_period = settlement_period(end)[1]
        for r in records:
            r.pop("settlementPeriod")
            r.update(
                settlementPeriodFrom=settlement_period(start)[1], settlementPeriodTo=to_period,
                acceptanceNumber=self._acceptance_number, acceptanceTime=published,
                deemedBoFlag=False, soFlag=self.rng.random() < 0.3, amendmentFlag="ORI",
                storFlag=False, rrFlag=False,
            )
        return records

    # system-wide datasets ----------------------------------------------------------------------
    def _frequency_readings(self, dataset: Dataset, published: dt.datetime) -> Records:
        last = floor_time(published, 15)
        records = []
        for i in range(8):
            # mean-reverting random walk around 50 Hz, within the ±0.2 Hz operational limits
            self._frequency = 50 + (self._frequency - 50) * 0.97 + self.rng.gauss(0, 0.012)
            self._frequency = min(50.2, max(49.8, self._frequency))
            records.append({"measurementTime": last - (7 - i) * dt.timedelta(seconds=15),
                            "frequency": round(self._frequency, 3)})
        return records

    def _fuel_generation(self, dataset: Dataset, published: dt.datetime) -> Records:
        step = 300 if dataset.code == "FUELINST" else 1800
        start = floor_time(published, step) - dt.timedelta(seconds=step)
        day, period = settlement_period(start)
        records = []
        for fuel, (low, high) in FUEL_RANGES.items():
            mw = self._fuel_mw[fuel] + self.rng.gauss(0, (high - low) * 0.01)
            self._fuel_mw[fuel] = mw = min(high, max(low, mw))
            records.append({"publishTime": published, "startTime": start, "settlementDate": day,
                            "settlementPeriod": period, "fuelType": fuel, "generation": round(mw)})
        return records

    def _market_index(self, dataset: Dataset, published: dt.datetime) -> Records:
        start = floor_time(published, 1800) - HALF_HOUR
        day, period = settlement_period(start)
        price = self.rng.uniform(30, 150)
        n2ex_missing = self.rng.random() < 0.6  # N2EX price 0 and volume 0 means "no data", not £0
        return [
            {"startTime": start, "dataProvider": "APXMIDP", "settlementDate": day, "settlementPeriod": period,
             "price": round(price, 2), "volume": round(self.rng.uniform(300, 3000), 3)},
            {"startTime": start, "dataProvider": "N2EXMIDP", "settlementDate": day, "settlementPeriod": period,
             "price": 0.0 if n2ex_missing else round(price + self.rng.uniform(-5, 5), 2),
             "volume": 0.0 if n2ex_missing else round(self.rng.uniform(50, 500), 3)},
        ]

    def _system_prices(self, dataset: Dataset, published: dt.datetime) -> Records:
        start = floor_time(published, 1800) - HALF_HOUR
        day, period = settlement_period(start)
        price = round(self.rng.uniform(20, 180), 2)
        niv = round(self.rng.uniform(-600, 600), 3)
        volumes = {name: round(self.rng.uniform(0, 1500), 3) for name in (
            "totalAcceptedOfferVolume", "totalAcceptedBidVolume", "totalAdjustmentSellVolume",
            "totalAdjustmentBuyVolume", "totalSystemTaggedAcceptedOfferVolume",
            "totalSystemTaggedAcceptedBidVolume", "totalSystemTaggedAdjustmentSellVolume",
            "totalSystemTaggedAdjustmentBuyVolume")}
        return [{
            "settlementDate": day, "settlementPeriod": period, "startTime": start, "createdDateTime": published,
            "systemSellPrice": price, "systemBuyPrice": price, "bsadDefaulted": False,
            "priceDerivationCode": self.rng.choice("NAP"), "reserveScarcityPrice": 0.0, "netImbalanceVolume": niv,
            "sellPriceAdjustment": 0.0, "buyPriceAdjustment": 0.0, "replacementPrice": None,
            "replacementPriceReferenceVolume": None, **volumes,
        }]

    def _remit(self, dataset: Dataset, published: dt.datetime) -> Records:
        unit = self._unit()
        mrid = f"48X000000000{self.rng.randint(1000, 1049)}-NGET-RMT-{self.rng.randint(1, 60):08d}"
        revision = self._remit_revisions[mrid] = self._remit_revisions.get(mrid, 0) + 1
        hour = dt.timedelta(hours=1)
        start = floor_time(published, 3600) + self.rng.randint(1, 240) * hour
        if self.rng.random() < LARGE_MESSAGE_FRACTION:  # a long outage with an hourly profile
            hours, step = self.rng.randint(500, 2000), 1
        else:
            hours = self.rng.randint(2, 96)
            step = max(1, hours // self.rng.randint(1, 4))
        end = start + hours * hour
        available = self.rng.randint(0, unit.capacity)
        profile = [
            {"startTime": start + h * hour, "endTime": min(end, start + (h + step) * hour),
             "capacity": float(available + self.rng.randint(0, unit.capacity - available))}
            for h in range(0, hours, step)
        ]
        planned = self.rng.random() < 0.7
        return [{
            "mrid": mrid, "revisionNumber": revision, "publishTime": published, "createdTime": published,
            "messageType": "UnavailabilitiesOfElectricityFacilities",
            "messageHeading": "Planned Unavailability of Generation Unit" if planned
            else "Unplanned Unavailability of Generation Unit",
            "eventType": "Production unavailability", "unavailabilityType": "Planned" if planned else "Unplanned",
            "participantId": "48X000000000" + mrid[12:16], "registrationCode": "48X000000000" + mrid[12:16],
            "assetId": unit.bm_unit, "assetType": "Production", "affectedUnit": unit.national_grid_bm_unit,
            "affectedUnitEIC": f"48W00000{unit.national_grid_bm_unit}",
            "affectedArea": "N", "biddingZone": "10YGB----------A", "fuelType": "Fossil Gas",
            "normalCapacity": float(unit.capacity), "availableCapacity": float(available),
            "unavailableCapacity": float(unit.capacity - available), "eventStatus": "Active",
            "eventStartTime": start, "eventEndTime": end, "durationUncertainty": None,
            "cause": "Planned maintenance" if planned else "Plant failure",
            "relatedInformation": None, "outageProfile": profile,
        }]

    def _system_warning(self, dataset: Dataset, published: dt.datetime) -> Records:
        warning_type, template = self.rng.choice(SYS_WARNINGS)
        start = floor_time(published, 1800) + HALF_HOUR
        text = template.format(start=_iso_z(start), end=_iso_z(start + 4 * HALF_HOUR))
        return [{"publishTime": published, "warningType": warning_type, "warningText": text}]

    # every other dataset, from its registry columns --------------------------------------------
    def _generic(self, dataset: Dataset, published: dt.datetime) -> Records:
        step = dt.timedelta(seconds=min(dataset.cadence_seconds, 1800))
        base = floor_time(published, int(step.total_seconds()))
        unit = self._unit()
        return [self._generic_record(dataset, published, base + i * step, unit)
                for i in range(self.rng.randint(1, 12))]

    def _generic_record(self, dataset: Dataset, published: dt.datetime, target: dt.datetime, unit: BmUnit):
        day, period = settlement_period(target)
        rng = self.rng
        record: dict[str, Any] = {}
        for column in dataset.columns:
            name, kind = column.name, column.type
            if kind == "TIMESTAMP":
                if name in ("publishTime", "createdDateTime", "createdTime", "messageReceivedDateTime",
                            "publishingPeriodCommencingTime", "acceptanceTime", "notificationTime"):
                    value = published
                elif name.endswith(("To", "End", "endTime", "EndTime")):
                    value = target + HALF_HOUR
                else:
                    value = target
            elif kind == "DATE":
                value = day if "ettlement" in name else target.astimezone(LONDON).date()
            elif kind == "INT64":
                if "ettlementPeriod" in name:
                    value = period
                elif name in ("year", "forecastYear"):
                    value = target.year
                elif name in ("week", "calendarWeekNumber", "forecastWeek"):
                    value = target.isocalendar().week
                elif "evision" in name:
                    value = rng.randint(1, 5)
                else:
                    value = rng.randint(0, 5000)
            elif kind == "FLOAT64":
                value = round(rng.uniform(-500, 5000), 3)
            elif kind == "BOOL":
                value = rng.random() < 0.2
            elif kind == "JSON":
                value = {"negative1": round(rng.uniform(-200, 0), 3), "positive1": round(rng.uniform(0, 200), 3)}
            elif name == "dataset":
                continue  # added with the code when the message is encoded
            elif name == "bmUnit":
                value = unit.bm_unit
            elif name == "nationalGridBmUnit":
                value = unit.national_grid_bm_unit
            elif name == "fuelType":
                value = rng.choice(tuple(FUEL_RANGES))
            elif name == "psrType":
                value = rng.choice(PSR_TYPES)
            elif name == "boundary":
                value = "N"
            elif name in ("month", "forecastMonth"):
                value = f"{target:%b}".upper()
            elif name == "documentId":
                value = f"NGET-EMFIP-{dataset.code}-{rng.randint(0, 99999999):08d}"
            elif name == "biddingZone":
                value = "10YGB----------A"
            elif name == "flowDirection":
                value = rng.choice(("Up", "Down"))
            else:
                value = f"{name[:4].upper()}{rng.randint(1, 99)}"
            record[name] = value
        return record


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
) -> int:
    """Write the last `backfill_minutes` of messages, then keep writing them as they fall due.

    Stops after `count` messages, `duration` seconds, `stop_event`, SIGINT or SIGTERM. With
    realtime=False the simulated clock advances a minute per step without sleeping. Returns the number
    of messages written.
    """
    spool = spool if isinstance(spool, Spool) else Spool(spool)
    stop = stop_event or threading.Event()
    began = time.monotonic()
    now = floor_time(dt.datetime.now(UTC), 1)
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
    parser.add_argument("--count", type=int, help="write N messages as fast as possible, then exit")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--backfill-minutes", type=float, default=15,
                        help="first write the messages of the last M minutes (default 15)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=0)
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
