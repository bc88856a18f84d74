"""Natural keys, version order, IRIS-only columns and cadence kinds: the registry's "one row per fact" rules.

Stdlib only; read by generate_registry.py. Each rule says where it comes from. Reviewed against Elexon's
documentation (the Insights API spec, `elexon-data/insights-docs`: mil_mel_resolution.md and the
dataset/timestamp references) and ../shared/docs/domain.md §5. Where a key rests on an assumption nobody
could check on real messages here, KEY_ASSUMPTIONS says so and the project's `key_conflicts` check warns
when two rows share the key but differ in values.

The order that decides "latest" is the dataset's version terms (largest wins; a ranked term orders its
values by the list), then, for every dataset alike, the message order (registry.MESSAGE_ORDER: the
later observation wins, on a tie the historic row), then version columns only IRIS carries. It lives
in the registry, not in each SQL file.
"""
from __future__ import annotations

# code -> (key_kind, natural_key, version terms). A version term is a column (larger wins) or
# (column, [values from oldest to newest]). Datasets not listed are "record".
KEYS: dict[str, tuple[str, list[str], list]] = {
    "FUELINST": ("natural", ["startTime", "fuelType"], ["publishTime"]),
    "FUELHH": ("natural", ["settlementDate", "settlementPeriod", "fuelType"], ["publishTime"]),
    # IRIS MID rows carry the source file's time and serial number (EXTRA_COLUMNS); the API's rows do not,
    # and there the message order decides.
    "MID": ("natural", ["settlementDate", "settlementPeriod", "dataProvider"],
            ["sourceFileDateTime", "sourceFileSerialNumber"]),
    "mibm_mid": ("natural", ["settlementDate", "settlementPeriod", "dataProvider"],
                 ["sourceFileDateTime", "sourceFileSerialNumber"]),
    "BOD": ("natural", ["bmUnit", "settlementDate", "settlementPeriod", "pairId", "timeFrom"], []),
    # acceptanceTime is the same on every row of an acceptance, so it cannot order versions: an
    # amendment ("AMD") wins over the original ("ORI"), then the later message.
    "BOALF": ("natural", ["bmUnit", "acceptanceNumber", "timeFrom"], [("amendmentFlag", ["ORI", "AMD"])]),
    "PN": ("natural", ["bmUnit", "settlementDate", "settlementPeriod", "timeFrom"], []),
    "QPN": ("natural", ["bmUnit", "settlementDate", "settlementPeriod", "timeFrom"], []),
    "FREQ": ("natural", ["measurementTime"], []),
    # Balancing services adjustments carry no version: a re-sent action replaces the earlier message's.
    "DISBSAD": ("natural", ["settlementDate", "settlementPeriod", "id"], []),
    "NETBSAD": ("natural", ["settlementDate", "settlementPeriod"], []),
    "QAS": ("natural", ["settlementDate", "settlementPeriod", "bmUnit"], []),
    # Settlement runs (~14 minutes after the period, again on D+1, ...): every run is kept; the
    # `bmrs_<code>_latest` view has the latest run per period.
    "DISEBSP": ("vintage", ["settlementDate", "settlementPeriod", "createdDateTime"], ["createdDateTime"]),
    "BOAV": ("vintage", ["settlementDate", "settlementPeriod", "bmUnit", "bidOffer", "acceptanceId",
                         "acceptanceDuration", "createdDateTime"], ["createdDateTime"]),
    "EBOCF": ("vintage", ["settlementDate", "settlementPeriod", "bmUnit", "bidOffer", "createdDateTime"],
              ["createdDateTime"]),
    "DISPTAV": ("vintage", ["settlementDate", "settlementPeriod", "bmUnit", "bidOffer", "dataType",
                            "createdDateTime"], ["createdDateTime"]),
    "ISPSTACK": ("vintage", ["settlementDate", "settlementPeriod", "bidOffer", "sequenceNumber",
                             "createdDateTime"], ["createdDateTime"]),
    # Raw redeclarations, every one kept. timeTo belongs to the key: the gate-closure file can repeat a
    # redeclaration's (bmUnit, timeFrom, sequence, time) with another timeTo/levelTo. The resolved
    # position is Elexon's interval rule (bmrs_mels_resolved / bmrs_mils_resolved), not "latest per key".
    # nationalGridBmUnit too: a row with no Elexon id (bmUnit NULL) must not share another unit's key.
    "MELS": ("vintage", ["bmUnit", "nationalGridBmUnit", "timeFrom", "timeTo", "notificationSequence",
                         "notificationTime"], ["notificationSequence", "notificationTime"]),
    "MILS": ("vintage", ["bmUnit", "nationalGridBmUnit", "timeFrom", "timeTo", "notificationSequence",
                         "notificationTime"], ["notificationSequence", "notificationTime"]),
    "REMIT": ("vintage", ["mrid", "revisionNumber"], ["revisionNumber"]),
}

# Forecasts and revised outturns: code -> target time (+ dimension) columns; publishTime is appended.
# Every vintage is kept; "latest" is only a view.
VINTAGE_TARGETS: dict[str, list[str]] = {
    "WINDFOR": ["startTime"],
    "INDGEN": ["startTime", "boundary"],
    "INDDEM": ["startTime", "boundary"],
    "IMBALNGC": ["startTime", "boundary"],
    "MELNGC": ["startTime", "boundary"],
    "NDF": ["startTime", "boundary"],
    "TSDF": ["startTime", "boundary"],
    "NDFD": ["forecastDate"],
    "TSDFD": ["forecastDate"],
    "OCNMFD": ["forecastDate"],
    "OCNMFD2": ["forecastDate"],
    "NDFW": ["year", "week"],
    "TSDFW": ["year", "week"],
    "OCNMF3Y": ["year", "week"],
    "OCNMF3Y2": ["year", "week"],
    "NOU2T14D": ["forecastDate", "systemZone"],
    "NOU2T3YW": ["year", "calendarWeekNumber", "systemZone"],
    "UOU2T14D": ["forecastDate", "bmUnit"],
    "UOU2T3YW": ["year", "week", "bmUnit"],
    "LOLPDM": ["startTime"],
    "DATL": ["startTime"],
    "WATL": ["forecastDate"],
    "MATL": ["forecastWeekCommencingDate"],
    "YATL": ["forecastYear", "forecastWeek"],
    "DAG": ["startTime"],
    "DGWS": ["startTime", "processType", "psrType"],
    "AGPT": ["startTime", "psrType"],
    "AGWS": ["startTime", "psrType"],
    "ATL": ["startTime"],
    "INDO": ["startTime"],
    "ITSDO": ["startTime"],
    "INDOD": ["settlementDate"],
    "NONBM": ["startTime"],
    "TEMP": ["measurementDate"],
}
for _code, _target in VINTAGE_TARGETS.items():
    KEYS[_code] = ("vintage", _target + ["publishTime"], ["publishTime"])

_SIDE = {"name": "bidOffer", "type": "STRING", "iris_only": True,
         "description": "Bid or offer side (bid|offer). IRIS only: the API puts the side in the URL path."}
_MID_SOURCE = [
    {"name": "sourceFileDateTime", "type": "TIMESTAMP", "iris_only": True,
     "description": "When the market index source file was created. IRIS only; orders re-sent copies."},
    {"name": "sourceFileSerialNumber", "type": "INT64", "iris_only": True,
     "description": "Serial number of the market index source file. IRIS only; orders re-sent copies."},
]
# Fields IRIS records carry that the API's row schemas do not: declared so that they are typed.
EXTRA_COLUMNS: dict[str, list[dict]] = {
    "MID": _MID_SOURCE, "mibm_mid": _MID_SOURCE,
    "BOAV": [_SIDE], "EBOCF": [_SIDE], "DISPTAV": [_SIDE], "ISPSTACK": [_SIDE],
}

_SIDE_ASSUMED = ("Assumed, not confirmed on real IRIS messages: records carry their side as `bidOffer`"
                 " (the API has it only in the URL path) and the key identifies one settlement-run row.")
# Keys that rest on an assumption: the key_conflicts check warns when two rows share one but differ.
KEY_ASSUMPTIONS: dict[str, str] = {
    "BOAV": _SIDE_ASSUMED, "EBOCF": _SIDE_ASSUMED, "DISPTAV": _SIDE_ASSUMED, "ISPSTACK": _SIDE_ASSUMED,
    "MID": "sourceFileDateTime/sourceFileSerialNumber come from third-party reports of IRIS MID rows.",
    "mibm_mid": "Assumed to share MID's format and key; unverified.",
    "DISBSAD": "A re-sent action is assumed to keep its id.",
}

# Sent when something happens, not on a clock: no expected cadence, so "the feed is quiet" never fires.
EVENT_DRIVEN = {"SYS_WARN", "DCI", "IGCPU", "E0361",
                # BM unit dynamic data: sent when a unit redeclares
                "SEL", "SIL", "MDP", "MDV", "MNZT", "MZT", "NDZ", "NTB", "NTO", "RDRE", "RDRI", "RURE", "RURI"}
