"""What the BigQuery backend costs at IRIS rates: storage, load jobs, table writes and query bytes.

    .venv/bin/python benchmarks/bigquery_costs.py [--seed 0] [--top N] [--backlog-days 3] [--backlog-flush-rows 1000000]

Simulates one settlement day of the whole IRIS feed with the project's simulator (all registered
datasets at their registry cadences), decodes and converts every message with the project's codec
(the same Arrow tables the loader builds), measures BigQuery logical bytes per row from those tables,
and replays the BigQuery backend's flush cycle over the day: per flush, one Parquet load job into a
staging table per table with new rows plus one for the staging ledger, then one multi-statement
transaction with one INSERT per table (each probing the ledger) and one INSERT into the ledger.
Deterministic: a fixed seed, a fixed day, no clock and no network. Prints a table per dataset, totals,
and the assumptions below.

Assumptions (printed by the script too):
- Day simulated: 2025-06-02 (a 48-period Monday), UTC midnight to midnight, seed 0. Rates per day are
  the simulator's, which follows domain.md (~100-200 messages/min overall); datasets published less
  often than daily (weekly, monthly, yearly) are measured on one publication and prorated per day.
- Rows per day are the simulator's, except where domain.md gives a figure: BOD 250,000,
  FUELINST 5,760, FREQ 5,760 rows/day (marked "*": the simulator's rows are scaled to it, keeping its
  bytes per row and its message count). Every other rate is an estimate from the simulator's shapes.
- File names as long as real IRIS names (~49 characters, e.g.
  BOALF_202311140741_NGET-EMFIP-ABUC-00689167-1.json): every row stores its file name in _source_file.
- Logical bytes (BigQuery's data size rules): INT64, FLOAT64, DATE, TIMESTAMP 8 bytes; BOOL 1;
  STRING 2 + UTF-8 length; JSON its text length; NULL 0. Rows carry _source_file, _record_index and
  _ingested_at. Partitioning on an existing DATE/TIMESTAMP column adds no column to the data tables.
- Ledger row: dataset, _source_file, rows, ingested_at, sha256 (64 hex characters) and a DATE column
  for the date in the file name (its partitioning column): one row per message.
- Flushes: one per IRIS_BQ_MIN_FLUSH_SECONDS (60) at most; a table is written in a flush only when it
  has new rows; a flush runs whenever any table has new rows. Load jobs per day = DML writes per day
  per table, plus one staging-ledger load per flush.
- Query bytes per flush: each table's INSERT reads its staging table (all columns) and probes the
  ledger (file-date, dataset, _source_file, sha256 of today's partition so far, pruned by clustering to
  that dataset's blocks); the ledger INSERT reads the staging ledger and probes the ledger for every
  dataset in the batch. Each table referenced is billed at least 10 MB (10 x 2^20 bytes), per
  statement (each statement of a transaction is a child job billed on its own). Staging tables are
  dropped after the flush (their storage is negligible), loads and DDL are free. Late files named on
  an earlier day (a second ledger partition) are ignored: the 10 MB minimum covers them.
- Prices: list prices, December 2026, EU multi-region (check the pricing page): active logical storage
  $0.02/GiB/month, long-term (partition unmodified for 90 days) $0.01/GiB/month, first 10 GiB/month
  free (taken off active storage); on-demand queries $6.25/TiB, first 1 TiB/month free. A month is
  365.25/12 days. Analysts' own queries, the historic bmrs_<code> tables and the views are not included.
- Backlog: flushes of at most 1,000,000 rows (the backend's IRIS_BQ_MAX_FLUSH_ROWS default; --backlog-flush-rows),
  one a minute, each assumed to touch every table: an upper bound on its writes and query bytes.
- Partitions stop changing within a day or two of their date (DISEBSP re-runs on D+1), so after
  90 days each day's partition becomes long-term storage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iris_pipeline import codec
from iris_pipeline.registry import Dataset, load_registry
from iris_pipeline.simulate import Simulator

DAY = dt.date(2025, 6, 2)
DAY_START = dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.timezone.utc)
MINUTES_PER_DAY = 1440
SECONDS_PER_DAY = 86400
DAYS_PER_MONTH = 365.25 / 12
# Pads simulated file names to the length of real IRIS names (see the assumptions).
RUN_TOKEN = "NGET-EMFIP-IRIS-0"

DOMAIN_ROWS_PER_DAY = {"BOD": 250_000, "FUELINST": 5_760, "FREQ": 5_760}

MIB, GIB, TIB = 2**20, 2**30, 2**40
MIN_BILLED_PER_TABLE = 10 * MIB
ACTIVE_PER_GIB, LONG_TERM_PER_GIB, FREE_STORAGE_GIB = 0.02, 0.01, 10
QUERY_PER_TIB, FREE_QUERY_TIB = 6.25, 1
LONG_TERM_AFTER_DAYS = 90
TABLE_OPERATIONS_PER_DAY = 1_500
LOAD_JOBS_PER_PROJECT_PER_DAY = 100_000

FIXED_BYTES = {"INT64": 8, "FLOAT64": 8, "DATE": 8, "TIMESTAMP": 8, "BOOL": 1}
SHA256_HEX = 64
CONVERT_BATCH_MESSAGES = 2000


@dataclass
class DatasetDay:
    """One dataset over the simulated day."""

    dataset: Dataset
    messages: int = 0
    body_bytes: int = 0
    rows: int = 0
    logical_bytes: int = 0
    ledger_bytes: int = 0  # its ledger rows
    probe_bytes: int = 0  # its ledger rows' columns the exactly-once probe reads
    rows_by_minute: np.ndarray = field(default_factory=lambda: np.zeros(MINUTES_PER_DAY, np.int64))
    messages_by_minute: np.ndarray = field(default_factory=lambda: np.zeros(MINUTES_PER_DAY, np.int64))
    per_day: float = 1.0  # scale from what was simulated to one day (prorated rare datasets)
    row_scale: float = 1.0  # domain.md calibration of rows per day
    pending: list[tuple[str, list[dict]]] = field(default_factory=list)

    @property
    def writes_per_day(self) -> float:
        return np.count_nonzero(self.messages_by_minute) * self.per_day

    @property
    def bytes_per_row(self) -> float:
        return self.logical_bytes / self.rows if self.rows else 0.0

    @property
    def rows_per_day(self) -> float:
        return self.rows * self.per_day * self.row_scale

    @property
    def logical_bytes_per_day(self) -> float:
        return self.logical_bytes * self.per_day * self.row_scale

    @property
    def messages_per_day(self) -> float:
        return self.messages * self.per_day


def logical_bytes(table: pa.Table, column_types: dict[str, str]) -> int:
    """BigQuery logical size of an Arrow table from the codec, by BigQuery's data size rules."""
    types = {**column_types, **codec.META_COLUMNS}
    total = 0
    for name in table.column_names:
        column = table.column(name)
        present = len(column) - column.null_count
        kind = types[name]
        if kind in FIXED_BYTES:
            total += FIXED_BYTES[kind] * present
        else:
            text = pc.sum(pc.binary_length(column)).as_py() or 0
            total += text + (2 * present if kind == "STRING" else 0)
    return total


def ledger_row_bytes(code: str, file_name: str) -> tuple[int, int]:
    """(logical bytes of one ledger row, bytes of it the probe reads)."""
    probed = 8 + (2 + len(code)) + (2 + len(file_name)) + (2 + SHA256_HEX)  # file date, dataset, name, hash
    return probed + 8 + 8, probed  # + rows, ingested_at


def add_message(day: DatasetDay, file_name: str, body: bytes, minute: int) -> None:
    records = codec.decode_body(body)
    day.messages += 1
    day.body_bytes += len(body)
    day.rows += len(records)
    day.rows_by_minute[minute] += len(records)
    day.messages_by_minute[minute] += 1
    stored, probed = ledger_row_bytes(day.dataset.code, file_name)
    day.ledger_bytes += stored
    day.probe_bytes += probed
    day.pending.append((file_name, records))
    if len(day.pending) >= CONVERT_BATCH_MESSAGES:
        convert_pending(day)


def convert_pending(day: DatasetDay) -> None:
    """Convert the buffered messages with the codec, as the loader would, and count their bytes."""
    if not day.pending:
        return
    names = [name for name, records in day.pending for _ in records]
    indexes = [i for _, records in day.pending for i in range(len(records))]
    records = [r for _, recs in day.pending for r in recs]
    declared = {c.name: c.type for c in day.dataset.columns}
    converted = codec.to_records_table(
        records, declared, pa.array(names, pa.string()), pa.array(indexes, pa.int64()),
        pa.scalar(DAY_START, codec.ARROW_TYPES["TIMESTAMP"]),
    )
    day.logical_bytes += logical_bytes(converted.table, converted.column_types)
    day.pending.clear()


def simulate_day(seed: int) -> dict[str, DatasetDay]:
    registry = load_registry()
    days = {d.code: DatasetDay(d) for d in registry}
    simulator = Simulator(registry, seed=seed, start=DAY_START, run_token=RUN_TOKEN, plain_fraction=0.1)
    for minute in range(MINUTES_PER_DAY):
        # The publications of the minute ending at `until`: exactly what one 60 s flush finds waiting.
        until = DAY_START + dt.timedelta(minutes=minute + 1) - dt.timedelta(microseconds=1)
        for message in simulator.messages_due(until):
            if registry[message.dataset].cadence_seconds <= SECONDS_PER_DAY:
                add_message(days[message.dataset], message.file_name, message.body, minute)
    for day in days.values():
        cadence = day.dataset.cadence_seconds
        if cadence > SECONDS_PER_DAY:  # weekly, monthly, yearly: one publication, prorated per day
            for message in simulator.messages_at(day.dataset.code, DAY_START + dt.timedelta(hours=12)):
                add_message(day, message.file_name, message.body, MINUTES_PER_DAY // 2)
            day.per_day = SECONDS_PER_DAY / cadence
        convert_pending(day)
        if day.dataset.code in DOMAIN_ROWS_PER_DAY and day.rows:
            day.row_scale = DOMAIN_ROWS_PER_DAY[day.dataset.code] / day.rows
    return days


@dataclass
class QueryDay:
    flushes: float
    load_jobs: float
    statements: float
    billed_bytes: float
    scanned_bytes: float  # what the same statements would bill without the 10 MB minimum
    max_staging_bytes: float


def query_day(days: dict[str, DatasetDay], flush_minutes: int = 1, probe_once: bool = False) -> QueryDay:
    """Query bytes of the pipeline's own flush transactions over the day.

    probe_once: the variant where the transaction probes the ledger once (new file names into a script
    variable) and each table's INSERT filters on that variable, referencing only its staging table.
    """
    windows = MINUTES_PER_DAY // flush_minutes
    flushes_with_data = np.zeros(windows, bool)
    batch_probe = np.zeros(windows)  # ledger bytes of every dataset in the batch, today so far
    ledger_staging = np.zeros(windows)
    billed = scanned = statements = load_jobs = 0.0
    max_staging = 0.0
    for day in days.values():
        rows = day.rows_by_minute.reshape(windows, flush_minutes).sum(axis=1) * day.row_scale
        messages = day.messages_by_minute.reshape(windows, flush_minutes).sum(axis=1)
        has_data = messages > 0
        staging = rows * day.bytes_per_row
        per_message_probe = day.probe_bytes / day.messages if day.messages else 0.0
        # The probe reads this dataset's blocks of today's partition as committed before this flush.
        probe_so_far = (np.cumsum(messages) - messages) * per_message_probe
        n = np.count_nonzero(has_data) * day.per_day
        load_jobs += n
        statements += n
        tables_billed = np.maximum(staging[has_data], MIN_BILLED_PER_TABLE)
        if not probe_once:
            tables_billed = tables_billed + np.maximum(probe_so_far[has_data], MIN_BILLED_PER_TABLE)
            scanned += (staging[has_data] + probe_so_far[has_data]).sum() * day.per_day
        else:
            scanned += staging[has_data].sum() * day.per_day
        billed += tables_billed.sum() * day.per_day
        max_staging = max(max_staging, staging.max(initial=0.0))
        flushes_with_data |= has_data if day.per_day >= 1 else False
        batch_probe += np.where(has_data, probe_so_far, 0.0) * min(1.0, day.per_day)
        ledger_staging += messages * (day.ledger_bytes / day.messages if day.messages else 0.0) * min(1.0, day.per_day)
    flushes = float(np.count_nonzero(flushes_with_data))
    staging_reads = np.maximum(ledger_staging[flushes_with_data], MIN_BILLED_PER_TABLE)
    probe_reads = np.maximum(batch_probe[flushes_with_data], MIN_BILLED_PER_TABLE)
    # The ledger INSERT reads the staging ledger and probes the ledger; with probe_once the probe is a
    # statement of its own (into a script variable) and the ledger INSERT filters on that variable.
    ledger_statements = 2 if probe_once else 1
    billed += (2 * staging_reads + probe_reads).sum() if probe_once else (staging_reads + probe_reads).sum()
    scanned += ((1 + probe_once) * ledger_staging + batch_probe)[flushes_with_data].sum()
    statements += flushes * ledger_statements
    load_jobs += flushes
    return QueryDay(flushes, load_jobs, statements, billed, scanned, max_staging)


def query_cost_per_month(billed_bytes_per_day: float) -> float:
    tib = billed_bytes_per_day * DAYS_PER_MONTH / TIB
    return max(0.0, tib - FREE_QUERY_TIB) * QUERY_PER_TIB


def storage_bill(bytes_per_day: float, months: float) -> tuple[float, float, float]:
    """(active GiB, long-term GiB, monthly bill in $) after `months` of steady ingest."""
    stored_days = months * DAYS_PER_MONTH
    active = min(stored_days, LONG_TERM_AFTER_DAYS) * bytes_per_day / GIB
    long_term = max(0.0, stored_days - LONG_TERM_AFTER_DAYS) * bytes_per_day / GIB
    bill = max(0.0, active - FREE_STORAGE_GIB) * ACTIVE_PER_GIB + long_term * LONG_TERM_PER_GIB
    return active, long_term, bill


def backlog(days: dict[str, DatasetDay], backlog_days: int, flush_rows: int) -> None:
    """A client outage of `backlog_days` (IRIS keeps messages 3 days), drained in flushes of at most
    `flush_rows` rows each: an upper bound that assumes every flush touches every table with data."""
    rows = sum(d.rows_per_day for d in days.values()) * backlog_days
    stored = sum(d.logical_bytes_per_day + d.ledger_bytes * d.per_day for d in days.values()) * backlog_days
    tables = sum(1 for d in days.values() if d.messages_per_day * backlog_days >= 1)
    flushes = math.ceil(rows / flush_rows)
    # Per flush, each touched table and the ledger: staging (10 MB minimum) + a probe of at most
    # `backlog_days` + 1 date partitions of the ledger (each dataset's blocks well under 10 MB).
    billed = flushes * (tables + 1) * 2 * MIN_BILLED_PER_TABLE + stored
    messages = sum(d.messages_per_day for d in days.values()) * backlog_days
    print(f"\nA {backlog_days}-day backlog: {messages:,.0f} messages, {rows:,.0f} rows, {stored / MIB:,.0f} MiB;"
          f" in flushes of <= {flush_rows:,} rows: {flushes} flushes (one a minute: {flushes} min),"
          f" each writing <= {tables} tables + the ledger (a transaction may write 100 tables);"
          f" <= {billed / GIB:,.0f} GiB billed (${billed / TIB * QUERY_PER_TIB:,.2f} at list price)")


def assumptions() -> str:
    return __doc__[__doc__.index("Assumptions"):].rstrip()


def report(days: dict[str, DatasetDay], top: int, backlog_days: int = 3, backlog_flush_rows: int = 1_000_000) -> None:
    ordered = sorted(days.values(), key=lambda d: -d.logical_bytes_per_day)
    shown = ordered[:top] if top else ordered
    print(f"BigQuery backend at IRIS rates: one simulated day ({DAY}), flush every 60 s\n")
    header = f"{'table':<26}{'msgs/day':>10}{'rows/day':>12}{'B/row':>7}{'MiB/day':>9}{'loads/day':>10}{'DML/day':>9}"
    print(header)
    print("-" * len(header))
    for d in shown:
        mark = "*" if d.row_scale != 1.0 else " "
        print(f"{d.dataset.table_name:<26}{d.messages_per_day:>10,.0f}{d.rows_per_day:>11,.0f}{mark}"
              f"{d.bytes_per_row:>7.0f}{d.logical_bytes_per_day / MIB:>9.2f}"
              f"{d.writes_per_day:>10,.1f}{d.writes_per_day:>9,.1f}")
    if top and len(ordered) > top:
        rest = ordered[top:]
        print(f"{f'{len(rest)} other tables':<26}{sum(d.messages_per_day for d in rest):>10,.0f}"
              f"{sum(d.rows_per_day for d in rest):>12,.0f}{'':>7}"
              f"{sum(d.logical_bytes_per_day for d in rest) / MIB:>9.2f}"
              f"{sum(d.writes_per_day for d in rest):>10,.1f}{sum(d.writes_per_day for d in rest):>9,.1f}")

    q = query_day(days)
    messages = sum(d.messages_per_day for d in days.values())
    ledger_per_day = sum(d.ledger_bytes * d.per_day for d in days.values())
    print(f"{'iris_ingest_log (ledger)':<26}{'':>10}{messages:>12,.0f}{ledger_per_day / messages:>7.0f}"
          f"{ledger_per_day / MIB:>9.2f}{q.flushes:>10,.0f}{q.flushes:>9,.0f}")
    data_per_day = sum(d.logical_bytes_per_day for d in days.values())
    stored_per_day = data_per_day + ledger_per_day
    busiest = max(days.values(), key=lambda d: d.writes_per_day)

    print("\nTotals per day")
    print(f"  messages            {messages:>12,.0f}  ({messages / MINUTES_PER_DAY:,.0f}/min on average;"
          f" {sum(d.body_bytes * d.per_day for d in days.values()) / MIB:,.0f} MiB of message bodies)")
    print(f"  rows                {sum(d.rows_per_day for d in days.values()):>12,.0f}")
    print(f"  logical bytes       {stored_per_day / MIB:>12,.1f} MiB  (tables {data_per_day / MIB:,.1f} + ledger"
          f" {ledger_per_day / MIB:,.1f})")
    print(f"  flushes             {q.flushes:>12,.0f}  (transactions; largest staging table"
          f" {q.max_staging_bytes / MIB:,.2f} MiB)")
    print(f"  load jobs           {q.load_jobs:>12,.0f}  ({q.load_jobs / LOAD_JOBS_PER_PROJECT_PER_DAY:.0%} of"
          f" {LOAD_JOBS_PER_PROJECT_PER_DAY:,}/project/day)")
    at_most = sum(1 for d in days.values() if d.writes_per_day == busiest.writes_per_day)
    print(f"  DML statements      {q.statements:>12,.0f}  (most per table: {busiest.writes_per_day:,.0f}, in"
          f" {at_most} tables and the ledger; limit {TABLE_OPERATIONS_PER_DAY:,} table operations/table/day)")
    print(f"  query bytes billed  {q.billed_bytes / GIB:>12,.1f} GiB  (would be {q.scanned_bytes / GIB:,.2f} GiB"
          f" without the 10 MB minimum per table referenced)")

    growth = stored_per_day * DAYS_PER_MONTH / GIB
    print(f"\nStorage: grows {growth:,.2f} GiB/month (logical)")
    print(f"  {'after':>9}{'active GiB':>12}{'long-term GiB':>15}{'$/month':>10}")
    for months in (1, 3, 6, 12, 24, 36):
        active, long_term, bill = storage_bill(stored_per_day, months)
        print(f"  {months:>3} months{active:>12,.1f}{long_term:>15,.1f}{bill:>10,.2f}")

    print("\nQueries (the pipeline's own flush transactions, on-demand):")
    print(f"  {'variant':<64}{'TiB/month':>10}{'$/month':>9}")
    for label, flush_minutes, probe_once in (
        ("as designed: flush every 60 s, every INSERT probes the ledger", 1, False),
        ("flush every 60 s, ledger probed once per transaction", 1, True),
        ("flush every 120 s, every INSERT probes the ledger", 2, False),
        ("flush every 300 s, every INSERT probes the ledger", 5, False),
        ("flush every 300 s, ledger probed once per transaction", 5, True),
    ):
        v = query_day(days, flush_minutes, probe_once)
        tib = v.billed_bytes * DAYS_PER_MONTH / TIB
        print(f"  {label:<64}{tib:>10,.1f}{query_cost_per_month(v.billed_bytes):>9,.2f}")
    backlog(days, backlog_days, backlog_flush_rows)
    total = storage_bill(stored_per_day, 12)[2] + query_cost_per_month(q.billed_bytes)
    print(f"\nAs designed, after a year: storage ${storage_bill(stored_per_day, 12)[2]:,.2f}"
          f" + queries ${query_cost_per_month(q.billed_bytes):,.2f} = ${total:,.2f} per month (list prices)")
    print("\n* rows/day set to the figure in domain.md (bytes per row and messages from the simulator)\n")
    print(assumptions())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=0, help="list only the N largest tables (0: all)")
    parser.add_argument("--backlog-days", type=int, default=3)
    parser.add_argument("--backlog-flush-rows", type=int, default=1_000_000,
                        help="rows per flush when draining a backlog (default 1,000,000: IRIS_BQ_MAX_FLUSH_ROWS)")
    args = parser.parse_args()
    report(simulate_day(args.seed), args.top, args.backlog_days, args.backlog_flush_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
