"""BigQuery backend: the production warehouse.

Writes go up as Parquet load jobs into staging tables (never streaming inserts: those cost money and
cannot be merged or deleted for up to 90 minutes), then one multi-statement transaction per flush
inserts the rows of files the ledger does not hold yet, and records them in the ledger. A flush is
therefore idempotent: it is retried whole on 5xx and rate limits, and a crash at any point leaves
either nothing or everything of it. Staging tables are dropped after the flush, expire by themselves
after a day, and any left by a crash are dropped when the warehouse is next opened.

BigQuery allows 1,500 writes per table per day, so flushes are spaced (default one a minute: each
table then gets at most 1,440 writes a day) and a backlog goes up in few, large flushes.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import io
import logging
import re
import time
import uuid
from typing import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import bigquery

from iris_pipeline.registry import is_valid_dataset_code
from iris_pipeline.warehouse.base import (
    LEDGER_TABLE,
    Batch,
    LoadedFile,
    RangeBound,
    TableFreshness,
    TableLayout,
    Warehouse,
    WarehouseError,
    evolved_type,
    rows_outside,
    valid_identifier,
)

log = logging.getLogger(__name__)

STAGING_PREFIX = "_iris_staging_"
STAGING_TTL = dt.timedelta(days=1)  # BigQuery drops a staging table a crash left behind after this
ORPHAN_AGE = dt.timedelta(hours=1)  # older staging tables are a crashed flush's: dropped at open
DEFAULT_MIN_FLUSH_INTERVAL_S = 60.0
# Files whose name carries no date (the client's last-resort names) share one ledger partition.
UNDATED = dt.date(1970, 1, 1)
_NAME_DATE_RE = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})\d{4}(?!\d)")  # BOALF_202311140741_...
PROBE_NAMES_PER_QUERY = 10_000  # query parameters must stay well under BigQuery's 10 MB request limit
JOB_TIMEOUT_S = 900.0
# A transaction may modify at most 100 tables; a flush modifies its data tables, the ledger and the
# staging file list. More tables than this (unregistered codes) go up in further flushes.
MAX_TABLES_PER_FLUSH = 90

SCHEMA_TYPES = {"TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "INT64": "INT64", "FLOAT64": "FLOAT64",
                "BOOL": "BOOL", "STRING": "STRING", "JSON": "JSON"}
_FROM_SCHEMA = {"INTEGER": "INT64", "INT64": "INT64", "FLOAT": "FLOAT64", "FLOAT64": "FLOAT64",
                "NUMERIC": "FLOAT64", "BIGNUMERIC": "FLOAT64", "BOOLEAN": "BOOL", "BOOL": "BOOL",
                "STRING": "STRING", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP", "JSON": "JSON"}
_META = {"_source_file": "STRING", "_record_index": "INT64", "_ingested_at": "TIMESTAMP"}
_LEDGER_SCHEMA = [
    bigquery.SchemaField("dataset", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("_source_file", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("rows", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("ingested_at", "TIMESTAMP", mode="REQUIRED"),
    bigquery.SchemaField("sha256", "STRING"),
    bigquery.SchemaField("file_date", "DATE", mode="REQUIRED"),
]
_STAGED_FILES_SCHEMA = [
    bigquery.SchemaField("dataset", "STRING"),
    bigquery.SchemaField("_source_file", "STRING"),
    bigquery.SchemaField("rows", "INT64"),
    bigquery.SchemaField("sha256", "STRING"),
    bigquery.SchemaField("file_date", "DATE"),
    bigquery.SchemaField("already", "BOOL"),
]
# Reasons BigQuery gives for failures worth retrying (the rest, e.g. invalid SQL, are not).
_TRANSIENT_REASONS = {"backendError", "internalError", "rateLimitExceeded", "jobRateLimitExceeded",
                      "jobBackendError", "jobInternalError"}


def is_transient(exc: BaseException) -> bool:
    """5xx, 429 and BigQuery's rate-limit and backend errors (sent as 400/403), and transactions that a
    concurrent one aborted: a flush that failed so is simply run again (the ledger makes it idempotent)."""
    if isinstance(exc, (gexc.TooManyRequests, gexc.ServerError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        reasons = {e.get("reason") for e in (exc.errors or []) if isinstance(e, dict)}
        return bool(reasons & _TRANSIENT_REASONS) or "concurrent update" in str(exc).lower()
    return False


def file_date(name: str) -> dt.date:
    """The ledger partition of a spool file: the date in its IRIS name (`ABUC_202311140741_...`)."""
    match = _NAME_DATE_RE.search(name)
    if match:
        try:
            return dt.date(*map(int, match.groups()))
        except ValueError:
            pass
    return UNDATED


def seconds_until_flush(last_flush: dt.datetime | None, now: dt.datetime, interval_s: float) -> float:
    """How long to wait before the next flush, given when the last one committed: never negative, and
    never more than the interval (a clock that stepped back must not stall loading)."""
    if last_flush is None:
        return 0.0
    return min(max((last_flush - now).total_seconds() + interval_s, 0.0), interval_s)


class BigQueryWarehouse(Warehouse):
    commit_group_chunks = 1_000_000  # rows decide (max_flush_rows)

    def __init__(
        self,
        client: bigquery.Client,
        dataset: str,
        *,
        location: str = "EU",
        min_flush_interval_s: float = DEFAULT_MIN_FLUSH_INTERVAL_S,
        retry_deadline_s: float = 600.0,
        orphan_age: dt.timedelta = ORPHAN_AGE,
        max_flush_rows: int = 1_000_000,
    ):
        self.client = client
        self.dataset = valid_identifier(dataset)
        self.location = location
        self.min_flush_interval_s = min_flush_interval_s
        self.commit_group_rows = max_flush_rows
        self._retry = Retry(predicate=is_transient, initial=1.0, maximum=60.0, multiplier=2.0, timeout=retry_deadline_s)
        self._usage: collections.Counter[str] = collections.Counter()
        self._columns: dict[str, dict[str, str]] = {}
        self._last_flush: float | None = None  # time.monotonic() of this object's last flush
        ds = bigquery.Dataset(f"{client.project}.{self.dataset}")
        ds.location = location
        self._retry(client.create_dataset)(ds, exists_ok=True)
        self._ensure_ledger()
        self._drop_orphaned_staging(orphan_age)

    # --- naming ---------------------------------------------------------------------------------
    dialect = "bigquery"

    def quote(self, name: str) -> str:
        return f"`{valid_identifier(name)}`"

    def _ref(self, table: str) -> str:
        return f"{self.client.project}.{self.dataset}.{valid_identifier(table)}"

    def qualified_name(self, table: str) -> str:
        return self._ref(table)

    def table_ref(self, table: str) -> str:
        return f"`{self._ref(table)}`"


    def close(self) -> None:
        self.client.close()

    def usage(self) -> dict[str, int]:
        return dict(self._usage)

    # --- tables ---------------------------------------------------------------------------------
    def tables(self) -> set[str]:
        return {t.table_id for t in self._retry(self.client.list_tables)(f"{self.client.project}.{self.dataset}")}

    def table_columns(self, table: str) -> dict[str, str] | None:
        if table not in self._columns:
            try:
                schema = self._retry(self.client.get_table)(self._ref(table)).schema
            except gexc.NotFound:
                return None
            self._columns[table] = {f.name: _FROM_SCHEMA.get(f.field_type, "STRING") for f in schema}
        return dict(self._columns[table])

    def ensure_table(self, table: str, columns: Mapping[str, str], layout: TableLayout | None = None) -> list[str]:
        existing = self.table_columns(table)
        if existing is None:
            return [self._create_table(table, columns, layout or TableLayout())]
        added = {c: t for c, t in columns.items() if c not in existing}
        widen = {c: evolved_type(existing[c], t) for c, t in columns.items() if c in existing}
        widen = {c: t for c, t in widen.items() if t != existing[c]}
        changes = []
        if added:  # NULLABLE columns: metadata only, no rewrite, no bytes billed
            self._run("\n".join(
                f"ALTER TABLE {self.table_ref(table)} ADD COLUMN IF NOT EXISTS {self.quote(c)} {SCHEMA_TYPES[t]};"
                for c, t in added.items()
            ))
            self._columns[table].update(added)
            changes += [f"added {c} {t}" for c, t in added.items()]
        for column, target in widen.items():
            self._widen(table, column, existing[column], target)
            self._columns[table][column] = target
            changes.append(f"widened {column} {existing[column]} -> {target}")
        return changes

    def _create_table(self, table: str, columns: Mapping[str, str], layout: TableLayout) -> str:
        all_columns = dict(columns) | _META
        bq_table = bigquery.Table(self._ref(table), schema=[
            bigquery.SchemaField(valid_identifier(c), SCHEMA_TYPES[t], mode="REQUIRED" if c in _META else "NULLABLE")
            for c, t in all_columns.items()
        ])
        partition = layout.partition_column if all_columns.get(layout.partition_column or "") in ("DATE", "TIMESTAMP") else None
        bq_table.time_partitioning = bigquery.TimePartitioning(type_="DAY", field=partition or "_ingested_at")
        cluster = [c for c in layout.cluster_columns if c in all_columns][:4]
        bq_table.clustering_fields = cluster or None
        self._retry(self.client.create_table)(bq_table, exists_ok=True)
        self._columns.pop(table, None)  # re-read: exists_ok may have found another writer's table
        return f"created {table} with {len(columns)} columns, partitioned by day of {partition or '_ingested_at'}" + (
            f", clustered by {', '.join(cluster)}" if cluster else "")

    def _widen(self, table: str, column: str, current: str, target: str) -> None:
        ref, col = self.table_ref(table), self.quote(column)
        if target == "FLOAT64" and current == "INT64":  # a widening BigQuery does in place
            self._run(f"ALTER TABLE {ref} ALTER COLUMN {col} SET DATA TYPE FLOAT64")
            return
        # Any other type change to JSON is not an ALTER BigQuery allows: the values move to a new JSON
        # column, which then takes the old one's name. Each step can be repeated after a crash.
        temp = valid_identifier(f"{column}__to_json")
        columns = self.table_columns(table) or {}
        if temp not in columns:
            self._run(f"ALTER TABLE {ref} ADD COLUMN IF NOT EXISTS {self.quote(temp)} JSON")
        if column in columns:
            self._run(f"UPDATE {ref} SET {self.quote(temp)} = TO_JSON({col}) WHERE {col} IS NOT NULL")
            self._run(f"ALTER TABLE {ref} DROP COLUMN {col}")
        self._run(f"ALTER TABLE {ref} RENAME COLUMN {self.quote(temp)} TO {col}")

    def _ensure_ledger(self) -> None:
        ledger = bigquery.Table(self._ref(LEDGER_TABLE), schema=_LEDGER_SCHEMA)
        # Partitioned by the date in the file's name and clustered by (dataset, file): the exactly-once
        # probe reads only the partitions of the dates it asks about, however long the history grows.
        ledger.time_partitioning = bigquery.TimePartitioning(type_="DAY", field="file_date")
        ledger.clustering_fields = ["dataset", "_source_file"]
        self._retry(self.client.create_table)(ledger, exists_ok=True)

    def _drop_orphaned_staging(self, orphan_age: dt.timedelta) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        for item in self._retry(self.client.list_tables)(f"{self.client.project}.{self.dataset}"):
            created = item.created or now
            if item.table_id.startswith(STAGING_PREFIX) and now - created >= orphan_age:
                log.info("dropping staging table %s left by an interrupted flush", item.table_id)
                self._retry(self.client.delete_table)(item.reference, not_found_ok=True)

    # --- the ledger -----------------------------------------------------------------------------
    def loaded_files(self, dataset: str, names: Sequence[str]) -> dict[str, str | None]:
        return self.loaded_files_many({dataset: names})[dataset]

    def loaded_files_many(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, str | None]]:
        found: dict[str, dict[str, str | None]] = {dataset: {} for dataset in wanted}
        pairs = sorted({(d, n) for d, names in wanted.items() for n in names}, key=lambda p: p[1])
        for start in range(0, len(pairs), PROBE_NAMES_PER_QUERY):
            part = pairs[start:start + PROBE_NAMES_PER_QUERY]
            dates = sorted({file_date(n) for _, n in part})
            rows = self._run(
                f"SELECT dataset, _source_file, sha256 FROM {self.table_ref(LEDGER_TABLE)}"
                " WHERE file_date IN UNNEST(@dates) AND dataset IN UNNEST(@datasets) AND _source_file IN UNNEST(@names)",
                [bigquery.ArrayQueryParameter("dates", "DATE", dates),
                 bigquery.ArrayQueryParameter("datasets", "STRING", sorted({d for d, _ in part})),
                 bigquery.ArrayQueryParameter("names", "STRING", sorted({n for _, n in part}))],
            )
            wanted_pairs = set(part)
            for dataset, name, digest in rows:
                if (dataset, name) in wanted_pairs:
                    found[dataset][name] = digest
        return found

    def ledger_datasets(self) -> set[str]:
        return {code for (code,) in self._run(f"SELECT DISTINCT dataset FROM {self.table_ref(LEDGER_TABLE)}")}

    # --- writing --------------------------------------------------------------------------------
    def append(self, dataset: str, table: str, rows: pa.Table, files: Sequence[LoadedFile]) -> list[LoadedFile]:
        return self.append_many([Batch(dataset, table, rows, files)])[0]

    def append_many(self, batches: Sequence[Batch]) -> list[list[LoadedFile]]:
        """One flush: every batch's rows and ledger entries in one transaction, all or nothing."""
        batches = list(batches)
        if not any(b.files for b in batches):
            return [[] for _ in batches]
        for b in batches:
            if not is_valid_dataset_code(b.dataset):
                raise WarehouseError(f"invalid dataset code {b.dataset[:60]!r}")
        already: set[tuple[str, str]] = set()
        for part in _by_table_count(batches, MAX_TABLES_PER_FLUSH):
            self._wait_for_flush_slot()
            already |= self._retry(self._flush)(part)
            self._last_flush = time.monotonic()
        return [[f for f in b.files if (b.dataset, f.name) not in already] for b in batches]

    def _wait_for_flush_slot(self) -> None:
        """At most one flush per `min_flush_interval_s`, across processes: BigQuery updates the ledger's
        modification time with every flush that commits, whichever process made it."""
        if self.min_flush_interval_s <= 0:
            return
        if self._last_flush is not None:
            wait = self._last_flush + self.min_flush_interval_s - time.monotonic()
        else:
            modified = self._retry(self.client.get_table)(self._ref(LEDGER_TABLE)).modified
            wait = seconds_until_flush(modified, dt.datetime.now(dt.timezone.utc), self.min_flush_interval_s)
        wait = min(max(wait, 0.0), self.min_flush_interval_s)
        if wait > 0:
            log.info("waiting %.0fs: BigQuery takes one write per table per %.0fs", wait, self.min_flush_interval_s)
            time.sleep(wait)

    def _flush(self, batches: list[Batch]) -> set[tuple[str, str]]:
        token = f"{STAGING_PREFIX}{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"
        staged: list[str] = []
        try:
            files_table = f"{token}_files"
            self._stage(files_table, _staged_files(batches), _STAGED_FILES_SCHEMA)
            staged.append(files_table)
            inserts = []
            for i, batch in enumerate(batches):
                if batch.rows.num_rows == 0:
                    continue
                rows_table = f"{token}_{i}"
                staged.append(rows_table)
                insert = self._stage_insert(batch.table, rows_table, batch.rows)
                inserts.append(
                    f"{insert}\n  WHERE _source_file NOT IN (SELECT _source_file FROM {self.table_ref(files_table)}"
                    f" WHERE already AND dataset = '{batch.dataset}');"
                )
            files_ref, ledger = self.table_ref(files_table), self.table_ref(LEDGER_TABLE)
            script = "\n".join([
                f"DECLARE dates ARRAY<DATE> DEFAULT (SELECT ARRAY_AGG(DISTINCT file_date) FROM {files_ref});",
                "BEGIN TRANSACTION;",
                # Files the ledger holds already (a redelivery, a rerun after a crash) are marked, and
                # neither their rows nor their ledger entries are inserted again: exactly once.
                f"UPDATE {files_ref} f SET already = TRUE WHERE EXISTS (SELECT 1 FROM {ledger} l"
                " WHERE l.file_date IN UNNEST(dates) AND l.dataset = f.dataset AND l._source_file = f._source_file);",
                *inserts,
                f"INSERT INTO {ledger} (dataset, _source_file, rows, ingested_at, sha256, file_date)\n"
                f"  SELECT dataset, _source_file, rows, CURRENT_TIMESTAMP(), sha256, file_date FROM {files_ref} WHERE NOT already;",
                "COMMIT TRANSACTION;",
                f"SELECT dataset, _source_file FROM {files_ref} WHERE already;",
            ])
            return {(dataset, name) for dataset, name in self._run(script)}
        finally:
            for table in staged:
                try:
                    self.client.delete_table(self._ref(table), not_found_ok=True)
                except gexc.GoogleAPIError as exc:  # expires by itself; dropped at the next open too
                    log.warning("could not drop staging table %s: %s", table, exc)

    def replace_range(self, table: str, column: str, start: RangeBound, end: RangeBound, rows: pa.Table) -> int:
        if (outside := rows_outside(rows, column, start, end)):
            raise WarehouseError(f"{outside} rows of {table} have no {column} in [{start}, {end})")
        # Not spaced like the flushes: a historic table is written once per range of days (a backfill of
        # a year in month-sized runs is 12 writes), far inside BigQuery's 1,500 writes per table per day.
        self._retry(self._replace)(table, column, start, end, rows)
        return rows.num_rows

    def native_columns(self, table: str) -> dict[str, str] | None:
        try:
            schema = self._retry(self.client.get_table)(self._ref(table)).schema
        except gexc.NotFound:
            return None
        # the emulator's catalogue lags behind our ALTERs (widenings): for those columns ours is right
        known = self._columns.get(table, {})
        return {f.name: SCHEMA_TYPES[known[f.name]] if f.field_type in _FROM_SCHEMA and f.name in known
                else f.field_type for f in schema}

    def create_view(self, name: str, select_sql: str) -> None:
        self._run(f"CREATE OR REPLACE VIEW {self.table_ref(name)} AS\n{select_sql}")
        self._columns.pop(name, None)

    def replace_range_with_select(
        self, table: str, columns: Mapping[str, str], layout: TableLayout | None,
        column: str, start: RangeBound, end: RangeBound, select_sql: str,
    ) -> int:
        self.ensure_table(table, columns, layout)
        names = ", ".join(self.quote(c) for c in self.table_columns(table) or {})
        ref, col = self.table_ref(table), self.quote(column)
        inside = f"{col} >= {_literal(start)} AND {col} < {_literal(end)}"
        # one transaction: a reader sees the old range or the new one, never neither
        self._retry(self._run)("\n".join([
            "BEGIN TRANSACTION;",
            f"DELETE FROM {ref} WHERE {inside};",
            f"INSERT INTO {ref} ({names}) SELECT {names} FROM (\n{select_sql}\n) AS selected WHERE {inside};",
            "COMMIT TRANSACTION;",
        ]))
        (count,), = self._run(f"SELECT COUNT(*) FROM {ref} WHERE {inside}")
        return count

    def _replace(self, table: str, column: str, start: RangeBound, end: RangeBound, rows: pa.Table) -> None:
        """Delete the range and insert its rows in one transaction (the range may span several day
        partitions, e.g. a settlement day in UTC, so a partition overwrite would not fit)."""
        staging = f"{STAGING_PREFIX}{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}_range"
        try:
            statements = ["BEGIN TRANSACTION;", f"DELETE FROM {self.table_ref(table)} WHERE {self.quote(column)}"
                          f" >= {_literal(start)} AND {self.quote(column)} < {_literal(end)};"]
            if rows.num_rows:
                statements.append(self._stage_insert(table, staging, rows) + ";")
            statements.append("COMMIT TRANSACTION;")
            self._run("\n".join(statements))
        finally:
            with contextlib.suppress(gexc.GoogleAPIError):
                self.client.delete_table(self._ref(staging), not_found_ok=True)

    def _stage_insert(self, table: str, staging: str, rows: pa.Table) -> str:
        """Load `rows` into the staging table `staging` and return the INSERT (no WHERE, no `;`) that
        copies them into `table`. JSON travels as text and is parsed on the way in."""
        columns = self.table_columns(table) or {}
        names = [valid_identifier(c) for c in rows.column_names]
        staged_type = {c: "STRING" if columns.get(c) == "JSON" else SCHEMA_TYPES[columns.get(c, "STRING")] for c in names}
        self._stage(staging, _for_staging(rows, columns), [bigquery.SchemaField(c, staged_type[c]) for c in names])
        select = ", ".join(f"PARSE_JSON({self.quote(c)})" if columns.get(c) == "JSON" else self.quote(c) for c in names)
        return (f"INSERT INTO {self.table_ref(table)} ({', '.join(self.quote(c) for c in names)})\n"
                f"  SELECT {select} FROM {self.table_ref(staging)}")

    def _stage(self, table: str, rows: pa.Table, schema: list[bigquery.SchemaField]) -> None:
        bq_table = bigquery.Table(self._ref(table), schema=schema)
        bq_table.expires = dt.datetime.now(dt.timezone.utc) + STAGING_TTL
        self.client.create_table(bq_table)
        buffer = io.BytesIO()
        pq.write_table(rows, buffer, compression="zstd")
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        job = self.client.load_table_from_file(buffer, self._ref(table), job_config=config, rewind=True)
        job.result(timeout=JOB_TIMEOUT_S)
        self._usage["load_jobs"] += 1
        self._usage["bytes_loaded"] += buffer.getbuffer().nbytes

    # --- reading --------------------------------------------------------------------------------
    def freshness(self, dataset: str, table: str, reference_column: str | None) -> TableFreshness:
        return self.freshness_many([(dataset, table, reference_column)])[dataset]

    def freshness_many(self, items: Sequence[tuple[str, str, str | None]]) -> dict[str, TableFreshness]:
        """One query for all of them; each reads recent partitions only (a week of ledger file dates,
        a week of the table's partitions), so its cost does not grow with the history."""
        result: dict[str, TableFreshness] = {}
        selects = []
        for i, (dataset, table, reference) in enumerate(items):
            if not is_valid_dataset_code(dataset):
                raise WarehouseError(f"invalid dataset code {dataset[:60]!r}")
            columns = self.table_columns(table)
            if columns is None:
                result[dataset] = TableFreshness(None, None, 0)
                continue
            bq_table = self._retry(self.client.get_table)(self._ref(table))
            part = (bq_table.time_partitioning.field if bq_table.time_partitioning else None) or "_ingested_at"
            recent = _recent(self.quote(part), columns.get(part, "TIMESTAMP"))
            latest = (
                f"(SELECT MAX({self.quote(reference)}) FROM {self.table_ref(table)} WHERE {recent})"
                if reference and columns.get(reference) == "TIMESTAMP" else "CAST(NULL AS TIMESTAMP)"
            )
            selects.append(
                f"SELECT '{dataset}' AS dataset, (SELECT MAX(ingested_at) FROM {self.table_ref(LEDGER_TABLE)}"
                f" WHERE dataset = '{dataset}' AND ({_recent('file_date', 'DATE')} OR file_date = '{UNDATED}')) AS last_ingested, {latest} AS latest,"
                f" (SELECT COUNT(*) FROM {self.table_ref(table)}) AS row_count"  # from metadata: no bytes read
            )
        if selects:
            for dataset, last, latest, count in self._run("\nUNION ALL\n".join(selects)):
                result[dataset] = TableFreshness(last, latest, count)
        return result

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """One read statement: a dry run says the statement's type before anything runs."""
        from iris_pipeline.warehouse.bigquery_read import read_statement_type

        read_statement_type(self.client, sql)
        return self._run(sql, _params(params))

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        job = self._retry(self.client.query)(sql, job_config=config)
        rows = [tuple(row.values()) for row in job.result(timeout=JOB_TIMEOUT_S)]
        self._usage["query_jobs"] += 1
        self._usage["bytes_processed"] += job.total_bytes_processed or 0
        self._usage["bytes_billed"] += job.total_bytes_billed or 0
        return rows


def _recent(column_sql: str, column_type: str) -> str:
    """The last week's partitions, and the one of rows without a date (constants only: prunable)."""
    if column_type == "DATE":
        return f"({column_sql} >= DATE_SUB(CURRENT_DATE(), INTERVAL 7 DAY) OR {column_sql} IS NULL)"
    return f"({column_sql} >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY) OR {column_sql} IS NULL)"


def _literal(value: RangeBound) -> str:
    """A DATE or TIMESTAMP literal from a Python date or datetime (never from text)."""
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.astimezone(dt.timezone.utc).isoformat()}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    raise WarehouseError(f"a range bound must be a date or datetime, not {type(value).__name__}")


def _by_table_count(batches: Sequence[Batch], limit: int) -> list[list[Batch]]:
    """The batches in order, cut so that no part writes more than `limit` distinct tables."""
    parts: list[list[Batch]] = [[]]
    tables: set[str] = set()
    for batch in batches:
        if batch.table not in tables and len(tables) >= limit:
            parts.append([])
            tables = set()
        tables.add(batch.table)
        parts[-1].append(batch)
    return [part for part in parts if part]


def _staged_files(batches: Sequence[Batch]) -> pa.Table:
    files = [(b.dataset, f) for b in batches for f in b.files]
    return pa.table({
        "dataset": pa.array([d for d, _ in files], pa.string()),
        "_source_file": pa.array([f.name for _, f in files], pa.string()),
        "rows": pa.array([f.rows for _, f in files], pa.int64()),
        "sha256": pa.array([f.sha256 for _, f in files], pa.string()),
        "file_date": pa.array([file_date(f.name) for _, f in files], pa.date32()),
        "already": pa.array([False] * len(files), pa.bool_()),
    })


def _for_staging(rows: pa.Table, columns: Mapping[str, str]) -> pa.Table:
    """JSON columns go up as text (parsed by PARSE_JSON in the insert); timestamps as microseconds."""
    out = rows
    for i, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            out = out.set_column(i, field.name, rows.column(i).cast(pa.timestamp("us", tz=field.type.tz)))
        elif columns.get(field.name) == "JSON" and not pa.types.is_string(field.type):
            out = out.set_column(i, field.name, rows.column(i).cast(pa.string()))
    return out


def _params(params: Sequence[object]) -> list[bigquery.ScalarQueryParameter]:
    types = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", dt.datetime: "TIMESTAMP", dt.date: "DATE"}
    return [bigquery.ScalarQueryParameter(None, types[type(p)], p) for p in params]
