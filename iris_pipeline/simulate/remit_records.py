"""Records of REMIT: unavailability events and their later revisions."""

from __future__ import annotations

import datetime as dt

from iris_pipeline.registry import Dataset
from iris_pipeline.simulate.hashing import epoch_seconds, seeded_rng, stable_hash
from iris_pipeline.simulate.messages import LARGE_MESSAGE_FRACTION, MESSAGES_PER_DUE, SEQUENCE_EPOCH, Records
from iris_pipeline.simulate.settlement_time import floor_time
from iris_pipeline.simulate.system_model import BM_UNITS


class RemitRecords:
    """Builders of REMIT records, mixed into `Simulator` (which gives them `seed` and `_unit_for`)."""

    def _remit_plan(self, created: dt.datetime) -> tuple[int, int]:
        """(revisions after the first, hours between them) of the event first published at `created`."""
        h = stable_hash(self.seed, "REMIT-plan", epoch_seconds(created))
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
        rng = seeded_rng(self.seed, "REMIT", epoch_seconds(created), index)
        unit = self._unit_for(rng)
        participant = 1000 + BM_UNITS.index(unit) % 50
        serial = (epoch_seconds(created) - epoch_seconds(SEQUENCE_EPOCH)) // 3600 * 4 + index
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
            change = seeded_rng(self.seed, "REMIT-revision", epoch_seconds(created), index, revision)
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
