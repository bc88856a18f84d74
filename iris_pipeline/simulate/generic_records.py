"""Records of every other dataset, built from its registry columns with plausible values by column name."""

from __future__ import annotations

import datetime as dt
from random import Random
from typing import Any

from iris_pipeline.registry import Dataset
from iris_pipeline.simulate.hashing import epoch_seconds, seeded_rng
from iris_pipeline.simulate.messages import SEQUENCE_EPOCH, Records
from iris_pipeline.simulate.settlement_time import HALF_HOUR, LONDON, floor_time, settlement_period
from iris_pipeline.simulate.system_model import FUEL_RANGES, BmUnit, clamp, winter_factor

PSR_TYPES = ("Generation", "Wind Offshore", "Wind Onshore", "Solar", "Biomass", "Nuclear", "Fossil Gas")

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


class GenericRecords:
    """The builder of every dataset without its own, mixed into `Simulator` (which gives it `seed`, the
    `SystemModel` values, `_message_rng`, `_unit_for` and `_intervals`)."""

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
            record_rng = seeded_rng(self.seed, dataset.code, epoch_seconds(target), unit.bm_unit if per_unit else "",
                                    epoch_seconds(published) if versioned else 0)
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
            return (epoch_seconds(target) - epoch_seconds(SEQUENCE_EPOCH)) // 1800 * 10 + rng.randint(0, 9)
        return rng.randint(0, 500)

    def _generic_number(self, code: str, name: str, target: dt.datetime, unit: BmUnit, rng: Random) -> float:
        if name == "temperature":  # °C, daily average for GB: 0-25 by season
            mean = 17 - 12 * winter_factor(target)
            return round(clamp(mean + rng.uniform(-3, 3), 0, 25), 1)
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
