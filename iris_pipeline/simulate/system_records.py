"""Records of the system-wide datasets: FREQ, FUELINST/FUELHH, MID, DISEBSP, the settlement runs
(BOAV, EBOCF, DISPTAV, ISPSTACK) and SYS_WARN."""

from __future__ import annotations

import datetime as dt

from iris_pipeline.registry import Dataset
from iris_pipeline.simulate.hashing import epoch_seconds, seeded_rng, stable_hash
from iris_pipeline.simulate.messages import MID_RESEND_FRACTION, SEQUENCE_EPOCH, Records, iso_z
from iris_pipeline.simulate.settlement_time import HALF_HOUR, LONDON, floor_time, settlement_period
from iris_pipeline.simulate.system_model import BM_UNITS, BmUnit, load_shape, local_hour

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


class SystemRecords:
    """Builders of the system-wide datasets' records, mixed into `Simulator` (which gives them `seed`, the
    `SystemModel` values, `_message_rng` and `acceptance_number`)."""

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
        return (epoch_seconds(published) - epoch_seconds(SEQUENCE_EPOCH)) // 60

    def _mid_period(self, start: dt.datetime, published: dt.datetime, corrected: bool) -> Records:
        day, period = settlement_period(start)
        rng = seeded_rng(self.seed, "MID", epoch_seconds(start))
        price = self.market_price(start) + rng.uniform(-3, 3)
        if corrected:
            price += rng.choice((-1, 1)) * rng.uniform(0.5, 4)
        volume = 300 + 2500 * load_shape(local_hour(start)) * rng.uniform(0.6, 1.2)
        # N2EX almost always sends price 0 with volume 0: "no trades", not a £0 price.
        n2ex_traded = rng.random() < 0.03
        source = {"sourceFileDateTime": iso_z(published), "sourceFileSerialNumber": self.mid_serial(published)}
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
        rng = seeded_rng(self.seed, "DISEBSP", epoch_seconds(start))
        run = seeded_rng(self.seed, "DISEBSP-run", epoch_seconds(start), index)
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
        rng = seeded_rng(self.seed, "accepted", side, epoch_seconds(start))
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
        run = seeded_rng(self.seed, dataset.code, "run", epoch_seconds(start), index)
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
                    tlm = 1 + (stable_hash(self.seed, "tlm", unit.bm_unit) % 400 - 200) / 10000
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

    def _system_warning(self, dataset: Dataset, published: dt.datetime, index: int) -> Records:
        rng = self._message_rng(dataset.code, published, index)
        warning_type, template = rng.choice(SYS_WARNINGS)
        start = (floor_time(published, 1800) + HALF_HOUR).astimezone(LONDON)
        end = start + rng.randint(2, 8) * HALF_HOUR
        text = template.format(start=f"{start:%H:%M}", end=f"{end:%H:%M}", day=f"{start:%d/%m/%Y}",
                               mw=rng.randrange(300, 1500, 50))
        return [{"publishTime": published, "warningType": warning_type, "warningText": text}]
