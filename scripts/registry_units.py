"""Units and descriptions of the registry's columns. Stdlib only; read by generate_registry.py.

The Insights API spec describes no row property (not one of its row schemas' properties has a
`description`), but each dataset endpoint's description says what its values are ("average MW values
over 5 minutes", "Adjustment volumes are shown in MWh", "(MW/minute)"). So a column's description is
its unit, from the rules below, with the sentence of the endpoint's description that states it; a
column no rule matches keeps an empty description rather than a guess.
"""
from __future__ import annotations

import re

# (column name pattern, unit, what the unit means). First match wins; names are the spec's camelCase.
# Prices and costs before volumes: "netBuyPriceCostAdjustmentEnergy" is money, "…VolumeAdjustment…" is energy.
COLUMN_UNITS: list[tuple[str, str, str]] = [
    (r"^(price|.*Price|.*PriceAdjustment|tradePrice|energyPrice|procurementPrice)$", "£/MWh", "price"),
    (r"^(cost|.*Cost.*|totalCashflow|amount)$", "£", "money"),
    (r"^frequency$", "Hz", "system frequency"),
    (r"^temperature$", "°C", "temperature"),
    (r"^lossOfLoadProbability$", "probability 0..1", "loss-of-load probability"),
    (r"^transmissionLossMultiplier$", "ratio", "transmission loss multiplier"),
    (r"^(rate[0-9]|.*Rate)$", "MW/min", "rate of change of output"),
    (r"^(volume|.*Volume.*|totalVolumeAccepted|quantity|tradeQuantity|secondaryQuantity|volumeMax)$", "MWh", "energy"),
    (r"^(levelFrom|levelTo|level|generation|demand|margin|deratedMargin|surplus|imbalance|outputUsable|"
     r"minimumPossible|maximumAvailable|.*Capacity|elbow[0-9]|offer|bid)$", "MW", "power"),
]
# Columns that look like quantities but are not (bid and offer in BOD are prices).
NOT_QUANTITIES = {("BOD", "offer"): ("£/MWh", "offer price"), ("BOD", "bid"): ("£/MWh", "bid price")}
# The units an endpoint's description may state, most specific first.
UNIT_WORDS = (("MW/minute", "MW/min"), ("MWh", "MWh"), ("MW", "MW"))


def endpoint_unit(description: str) -> tuple[str, str] | None:
    """The unit an endpoint's description states for its values, and the sentence that states it."""
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", description or ""):
        for word, unit in UNIT_WORDS:
            if re.search(rf"\b{re.escape(word)}\b" if word[-1].isalnum() else re.escape(word), sentence):
                return unit, " ".join(sentence.split())[:200]
    return None


def column_description(code: str, column: str, column_type: str, stated: tuple[str, str] | None) -> str:
    if column_type not in ("INT64", "FLOAT64"):
        return ""
    if (code, column) in NOT_QUANTITIES:
        unit, meaning = NOT_QUANTITIES[(code, column)]
        return f"{unit}: {meaning}."
    for pattern, unit, meaning in COLUMN_UNITS:
        if re.match(pattern, column):
            if stated and stated[0] == "MWh" and meaning == "power":
                unit, meaning = "MWh", "energy"  # e.g. INDOD's demand: the endpoint says its values are MWh
            source = f' (API: "{stated[1]}")' if stated and unit == stated[0] else ""
            return f"{unit}: {meaning}{source}."
    return ""
