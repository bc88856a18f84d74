"""`Simulator`, the messages of every registered dataset at its cadence, and `mixed_backlog`, a
reproducible stream of them for benchmarks."""

from __future__ import annotations

import datetime as dt
import math
import zlib
from random import Random
from typing import Callable, Iterator

import orjson

from iris_pipeline.registry import Dataset, Registry, load_registry
from iris_pipeline.simulate.bm_unit_records import BmUnitRecords
from iris_pipeline.simulate.generic_records import GenericRecords
from iris_pipeline.simulate.hashing import epoch_seconds, seeded_rng, stable_hash, unit_interval
from iris_pipeline.simulate.messages import (
    BM_DATASETS,
    BM_MESSAGES_PER_MINUTE,
    MAX_BM_MESSAGES,
    MESSAGES_PER_DUE,
    PRECISE_TIMESTAMP_FRACTION,
    PUBLICATION_MINUTE,
    SETTLEMENT_RUN_DATASETS,
    Message,
    Records,
    encode_records,
    publication_interval,
)
from iris_pipeline.simulate.remit_records import RemitRecords
from iris_pipeline.simulate.settlement_time import MINUTE, UTC, floor_time
from iris_pipeline.simulate.system_model import BM_UNITS, BmUnit, SystemModel
from iris_pipeline.simulate.system_records import SystemRecords

BACKLOG_START = dt.datetime(2025, 6, 2, tzinfo=UTC)


# The record builders are mixins by dataset family; SystemModel gives the values they draw on.
class Simulator(BmUnitRecords, SystemRecords, RemitRecords, GenericRecords, SystemModel):
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
        super().__init__(seed)  # SystemModel: the seed and the value models' caches
        self.registry = registry or load_registry()
        self.start = floor_time(start or dt.datetime.now(UTC), 1)
        self.run_token = run_token or f"SIM{seed}"
        self.plain_fraction = plain_fraction
        self._intervals = {d.code: publication_interval(d) for d in self.registry}
        self._next_due = {d.code: self._first_due(d, self.start) for d in self.registry}
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
        jitter = 0.7 + 0.6 * unit_interval(self.seed, code, "count", epoch_seconds(published))
        count = max(1, round(base * burst * jitter))
        # numbered datasets: index + amendments must stay below the 100 numbers each minute has
        return min(MAX_BM_MESSAGES // 2, count) if code in ("MELS", "MILS", "BOALF") else count

    def _message_rng(self, code: str, published: dt.datetime, index: int) -> Random:
        return seeded_rng(self.seed, code, epoch_seconds(published), index)

    def _message(self, dataset: Dataset, published: dt.datetime, index: int, records: Records) -> Message:
        if "dataset" in dataset.column_names:
            records = [{"dataset": dataset.code, **r} for r in records]
        style = stable_hash(self.seed, dataset.code, "style", epoch_seconds(published), index)
        precise = (style & 0xFFFF) / 0x10000 < PRECISE_TIMESTAMP_FRACTION
        array = encode_records(records, precise=precise)
        plain = (style >> 16 & 0xFFFF) / 0x10000 < self.plain_fraction
        body = array if plain else orjson.dumps(array.decode())
        name = f"{dataset.code}_{published:%Y%m%d%H%M}_{self.run_token}-{index + 1:07d}.json"
        return Message(dataset.code, name, body)

    def _unit_for(self, rng: Random) -> BmUnit:
        return rng.choice(BM_UNITS)


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
