"""Records of the BM-unit datasets: BOD, PN/QPN, MELS/MILS (with redeclarations) and BOALF (with amendments)."""

from __future__ import annotations

import datetime as dt
import itertools
from random import Random
from typing import Any, Callable

from iris_pipeline.registry import Dataset
from iris_pipeline.simulate.hashing import (
    TWO_63,
    epoch_seconds,
    seeded_rng,
    stable_hash,
    text_hash,
    unit_interval,
)
from iris_pipeline.simulate.messages import (
    AMENDMENT_FRACTION,
    LARGE_MESSAGE_FRACTION,
    MAX_BM_MESSAGES,
    REDECLARATION_FRACTION,
    SEQUENCE_EPOCH,
    Records,
)
from iris_pipeline.simulate.settlement_time import HALF_HOUR, MINUTE, floor_time, settlement_period
from iris_pipeline.simulate.system_model import BM_UNITS, BmUnit, clamp


class BmUnitRecords:
    """Builders of the BM-unit datasets' records, mixed into `Simulator` (which gives them `seed`, the
    `SystemModel` values, `_message_rng`, `_unit_for`, `_count`, `_base_count` and the `_memos` cache)."""

    @staticmethod
    def _bm_fields(time_from: dt.datetime, time_to: dt.datetime) -> dict[str, Any]:
        day, period = settlement_period(time_from)
        return {"settlementDate": day, "settlementPeriod": period, "timeFrom": time_from, "timeTo": time_to}

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
        rng = seeded_rng(self.seed, "BOD", unit.bm_unit, epoch_seconds(start))
        pairs = 1 + stable_hash(self.seed, "pairs", unit.bm_unit) % 5
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
        rng = seeded_rng(self.seed, code, unit.bm_unit, epoch_seconds(start))
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
        minutes = (epoch_seconds(published) - epoch_seconds(SEQUENCE_EPOCH)) // 60
        return 50_000_000 + minutes * (MAX_BM_MESSAGES + 1) + index + (text_hash(code) % 7) * 1000

    def _is_redeclaration(self, code: str, published: dt.datetime, index: int) -> bool:
        return unit_interval(self.seed, code, "redeclare", epoch_seconds(published), index) < REDECLARATION_FRACTION

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
        minutes = (epoch_seconds(published) - epoch_seconds(SEQUENCE_EPOCH)) // 60
        return 10_000 + (minutes * (MAX_BM_MESSAGES + 1) + index) % 990_000

    def _amendments_due(self, published: dt.datetime) -> list[tuple[dt.datetime, int]]:
        """(publication, index) of the acceptances amended at `published`: each original is amended at
        most once, 1–10 minutes after it was sent."""
        due = []
        for minutes in range(1, 11):
            earlier = published - minutes * MINUTE
            for index in range(self._base_count("BOALF", earlier)):
                h = stable_hash(self.seed, "BOALF-amend", epoch_seconds(earlier), index)
                if h / (2 * TWO_63) < AMENDMENT_FRACTION and 1 + (h & 0xFF) % 10 == minutes:
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
            r["levelFrom"] = round(clamp(r["levelFrom"] * 0.9, low, unit.capacity))
            r["levelTo"] = round(clamp(r["levelTo"] * 0.9, low, unit.capacity))
        return records
