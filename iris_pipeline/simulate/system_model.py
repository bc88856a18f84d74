"""The GB system as smooth functions of time: demand, fuel mix, prices, frequency and BM-unit levels,
plus the BM units and fuel types they are drawn from."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from iris_pipeline.simulate.hashing import TWO_63, epoch_seconds, stable_hash, unit_interval
from iris_pipeline.simulate.settlement_time import LONDON


def local_hour(t: dt.datetime) -> float:
    local = t.astimezone(LONDON)
    return local.hour + local.minute / 60


def winter_factor(t: dt.datetime) -> float:
    """1 in mid-January, 0 in mid-July."""
    return 0.5 + 0.5 * math.cos(2 * math.pi * (t.timetuple().tm_yday - 15) / 365.25)


def load_shape(hour: float) -> float:
    """Daily demand shape in [0, 1]: trough around 04:30, morning rise, peak around 17:45 local."""
    base = 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4.5) / 24)
    evening = math.exp(-(((hour - 17.75) / 2.0) ** 2))
    return min(1.0, 0.7 * base + 0.35 * evening)


def solar_shape(hour: float) -> float:
    return max(0.0, math.cos(math.pi * (hour - 13) / 14)) ** 2


def clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


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


class SystemModel:
    """Demand, fuel mix, prices, frequency and unit levels at any instant, a pure function of (seed, time)."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._prices: dict[int, float] = {}  # market_price by instant: a cache, not state
        self._knots: dict[tuple[str, int, int], float] = {}  # _noise's hashed knots: a cache, not state

    def _knot(self, name: str, scale: int, knot: int) -> float:
        key = (name, scale, knot)
        if (value := self._knots.get(key)) is None:
            if len(self._knots) > 100_000:
                self._knots.clear()
            value = self._knots[key] = stable_hash(self.seed, name, scale, knot) / TWO_63 - 1
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

    def national_demand(self, t: dt.datetime) -> int:
        """National demand (MW), 20–45 GW: daily shape, winter higher, weather noise."""
        winter = winter_factor(t)
        shape = load_shape(local_hour(t))
        mw = 21000 + 5000 * winter + (9000 + 9000 * winter) * shape
        mw += 1200 * self._wander("demand", t.timestamp(), 43200, 7200)
        return round(clamp(mw, 20000, 45000))

    def _fraction(self, name: str, t: dt.datetime, *scales: int) -> float:
        """Smooth noise in [0, 1]."""
        return (self._wander(name, t.timestamp(), *scales) + 1) / 2

    def fuel_mix(self, t: dt.datetime) -> dict[str, int]:
        """FUELINST generation (MW) by fuel type at `t`; interconnectors positive when GB imports."""
        s = t.timestamp()
        hour = local_hour(t)
        winter = winter_factor(t)
        shape = load_shape(hour)
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
        import_bias = 0.45 + 0.35 * night + 0.2 * winter - 0.5 * (1 - winter) * solar_shape(hour)
        for fuel, (_, high) in FUEL_RANGES.items():
            if fuel.startswith("INT"):
                bias = -0.4 + 0.2 * shape if fuel in IRISH_INTERCONNECTORS else import_bias
                mw[fuel] = high * clamp(bias + 0.35 * self._wander(fuel, s, 21600, 3600), -1, 1)
        others = sum(mw.values())
        mw["CCGT"] = clamp(self.national_demand(t) - others, *FUEL_RANGES["CCGT"])
        return {fuel: round(mw[fuel]) for fuel in FUEL_RANGES}

    def market_price(self, t: dt.datetime) -> float:
        """Day-ahead-ish £/MWh with a daily shape: cheap nights, evening peak, dear winters."""
        key = epoch_seconds(t)
        if (price := self._prices.get(key)) is None:
            price = self._prices[key] = self._market_price(t)
            if len(self._prices) > 4096:
                self._prices.clear()
        return price

    def _market_price(self, t: dt.datetime) -> float:
        shape = load_shape(local_hour(t))
        price = 40 + 25 * winter_factor(t) + 60 * shape ** 2 + 18 * self._wander("price", t.timestamp(), 43200, 7200)
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
            level = unit.capacity * clamp(0.4 + 0.9 * u, 0, 1)
        return round(level)

    def frequency(self, t: dt.datetime) -> float:
        s = t.timestamp()
        hz = 50 + 0.09 * self._wander("FREQ", s, 900, 180, 45) + 0.004 * (2 * unit_interval(self.seed, "Hz", int(s)) - 1)
        return round(clamp(hz, 49.8, 50.2), 3)
