"""A realistic synthetic IRIS feed: every registered dataset at its real cadence, shape and size.

Framework-free. `Simulator` produces the messages that fall due in a time window; `mixed_backlog`
streams a fixed, reproducible mix for benchmarks; `run` writes into a spool in (sped-up) real time and
backs `iris-pipeline simulate`.

Every message is a pure function of (seed, dataset, publication time, index within the publication):
values come from smooth functions of time (demand, fuel mix, prices, frequency, unit levels) plus noise
hashed from what they describe, never from state that evolves message by message. A restart therefore
regenerates its backfill with the same names and bytes (a redelivery the warehouse ledger ignores), and
revisions (DISEBSP and settlement re-runs, MID re-sends, REMIT revisions, MELS/MILS redeclarations, BOALF
amendments) are separate, later messages, as on IRIS.

Records hold datetime/date objects until encoding, where each message picks one of the timestamp
precisions Elexon emits. Bodies are double-encoded (a JSON string holding the array) like real IRIS,
except for a configurable fraction of plain arrays.
"""

from iris_pipeline.simulate.generic_records import (
    DAILY_DEMAND_DATASETS,
    PSR_TYPES,
    PUBLICATION_COLUMNS,
    TEXT_CHOICES,
)
from iris_pipeline.simulate.live_feed import POLL_SECONDS, add_simulate_arguments, main_simulate, run
from iris_pipeline.simulate.messages import (
    AMENDMENT_FRACTION,
    BM_DATASETS,
    BM_MESSAGES_PER_MINUTE,
    EVENT_INTERVAL_SECONDS,
    EXTRA_FIELDS,
    LARGE_MESSAGE_FRACTION,
    MAX_BM_MESSAGES,
    MESSAGES_PER_DUE,
    MID_RESEND_FRACTION,
    PRECISE_TIMESTAMP_FRACTION,
    PUBLICATION_MINUTE,
    REDECLARATION_FRACTION,
    SEQUENCE_EPOCH,
    SETTLEMENT_RUN_DATASETS,
    Message,
    Records,
    publication_interval,
)
from iris_pipeline.simulate.settlement_time import (
    HALF_HOUR,
    LONDON,
    MINUTE,
    UTC,
    floor_time,
    period_start,
    periods_in_day,
    settlement_day_start,
    settlement_period,
)
from iris_pipeline.simulate.simulator import BACKLOG_START, Simulator, mixed_backlog
from iris_pipeline.simulate.system_model import (
    BM_UNITS,
    FUEL_RANGES,
    IRISH_INTERCONNECTORS,
    BmUnit,
    SystemModel,
)
from iris_pipeline.simulate.system_records import SYS_WARNINGS

__all__ = [
    "AMENDMENT_FRACTION", "BACKLOG_START", "BM_DATASETS", "BM_MESSAGES_PER_MINUTE", "BM_UNITS",
    "DAILY_DEMAND_DATASETS", "EVENT_INTERVAL_SECONDS", "EXTRA_FIELDS", "FUEL_RANGES", "HALF_HOUR",
    "IRISH_INTERCONNECTORS", "LARGE_MESSAGE_FRACTION", "LONDON", "MAX_BM_MESSAGES", "MESSAGES_PER_DUE",
    "MID_RESEND_FRACTION", "MINUTE", "POLL_SECONDS", "PRECISE_TIMESTAMP_FRACTION", "PSR_TYPES",
    "PUBLICATION_COLUMNS", "PUBLICATION_MINUTE", "REDECLARATION_FRACTION", "SEQUENCE_EPOCH",
    "SETTLEMENT_RUN_DATASETS", "SYS_WARNINGS", "TEXT_CHOICES", "UTC", "BmUnit", "Message", "Records",
    "Simulator", "SystemModel", "add_simulate_arguments", "floor_time", "main_simulate", "mixed_backlog",
    "period_start", "periods_in_day", "publication_interval", "run", "settlement_day_start",
    "settlement_period",
]
