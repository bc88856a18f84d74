"""What the feed looks like: the `Message` type, how often and how many messages each dataset publishes,
the fractions of special messages, and how records are encoded into a body."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from iris_pipeline.registry import Dataset
from iris_pipeline.simulate.settlement_time import UTC


@dataclass(frozen=True)
class Message:
    dataset: str
    file_name: str
    body: bytes


Records = list[dict[str, Any]]

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


def iso_z(value: dt.date) -> str:
    if type(value) is dt.datetime:
        return value.isoformat()[:19] + "Z"
    return value.isoformat()


def _iso_precise(value: dt.date) -> str:
    if type(value) is dt.datetime:
        return value.isoformat()[:19] + ".0000000+00:00"
    return value.isoformat()


def encode_records(records: Records, precise: bool) -> bytes:
    if precise:
        return orjson.dumps(records, default=_iso_precise, option=orjson.OPT_PASSTHROUGH_DATETIME)
    # orjson writes whole-second UTC datetimes as 2025-01-15T10:00:00Z itself (what iso_z would)
    return orjson.dumps(records, option=orjson.OPT_UTC_Z)
