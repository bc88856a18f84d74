"""Drain the spool into the warehouse, exactly once.

The CLI (`iris-pipeline ingest`), the Dagster assets and the benchmark all call `load_spool`.
Per dataset: skip files the ledger already holds; per chunk of the rest: read, decode (quarantining
what cannot be decoded), convert to one Arrow table (chunk.py), evolve the table, then insert rows
and ledger entries in one transaction (a backlog's chunks a group at a time); only after the commit
are the files moved to the archive. A crash at any point leaves each file either in incoming/ (loaded
or not: the ledger decides) or archived after its rows committed, so a rerun neither loses nor
doubles anything.

Reading and converting is pure-Python work bound by the GIL, so a large backlog is prepared by
worker processes while this process commits, in order. Small drains (the sensor's usual few files)
stay in-process: starting workers would cost more than it saves.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

from iris_pipeline import codec
from iris_pipeline.chunk import DEFAULT_MAX_MESSAGE_BYTES, ChunkTask, PreparedChunk, prepare, quarantine, read_file
from iris_pipeline.load_report import DatasetReport, LoadReport
from iris_pipeline.registry import Dataset, Registry, load_registry
from iris_pipeline.spool import InvalidName, Spool, SpoolFile, content_hash
from iris_pipeline.warehouse.base import Batch, LoadedFile, TableLayout, Warehouse, evolved_type
from iris_pipeline.workers import InProcess, WorkerDied, WorkerPool, without_pandas

log = logging.getLogger(__name__)

DEFAULT_CHUNK_FILES = 2000
PARALLEL_MIN_FILES = 5000


def load_spool(
    spool: Spool,
    warehouse: Warehouse,
    *,
    datasets: Iterable[str] | None = None,
    registry: Registry | None = None,
    chunk_files: int = DEFAULT_CHUNK_FILES,
    workers: int | None = None,
    parallel_min_files: int = PARALLEL_MIN_FILES,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> LoadReport:
    """Load every pending file (or those of `datasets`) and return what happened per dataset.

    A dataset that fails (warehouse error, say) is reported and left in incoming/ for the next run;
    the others go on. `workers` (default: CPU count) prepare chunks when at least
    `parallel_min_files` files are pending; 0 keeps everything in this process. Files larger than
    `max_message_bytes` are quarantined unread.
    """
    registry = registry or load_registry()
    started = time.monotonic()
    report = LoadReport()
    with spool.exclusive("ingest.lock"):
        spool.remove_stale_tmp()
        for problem in spool.quarantine_strays():  # links, FIFOs, unlistable directories: never loaded
            log.warning("spool entry not loadable: %s", problem)
        create_registered_tables(warehouse, registry)
        wanted = sorted(set(datasets)) if datasets is not None else spool.datasets_pending()
        tasks = _plan(spool, warehouse, registry, wanted, chunk_files, max_message_bytes, report)
        workers = (os.cpu_count() or 1) if workers is None else workers
        parallel = workers > 0 and sum(len(t.files) for _, t in tasks) >= parallel_min_files
        with _pool(workers if parallel else 0) as pool:
            archiving = []

            def commit(group: list[_Staged]) -> None:
                for staged, files in zip(group, _commit_group(warehouse, group)):
                    # the many small renames go to the workers too
                    archiving.append((staged.state.report, pool.submit(_archive, str(spool.root), files)))
                group.clear()

            group: list[_Staged] = []
            for state, task, prepared in _prepared_in_order(tasks, pool, window=2 * max(workers, 1)):
                staged = _stage(warehouse, state, task, prepared)
                if staged:
                    group.append(staged)
                # a backlog is committed a group at a time, as big as the backend likes its writes
                if (
                    len(group) >= warehouse.commit_group_chunks
                    or sum(s.converted.table.num_rows for s in group) >= warehouse.commit_group_rows
                ):
                    commit(group)
            commit(group)
            for ds_report, future in archiving:
                try:
                    future.result()
                except Exception as exc:  # the rows are committed: the next run archives them (ledger)
                    log.error("archiving %s failed after its commit: %s", ds_report.dataset, exc)
                    ds_report.archive_error = f"{type(exc).__name__}: {exc}"[:500]
    report.seconds = time.monotonic() - started
    return report


def create_registered_tables(warehouse: Warehouse, registry: Registry) -> list[str]:
    """Create the table of every registered dataset that has none yet, typed from the registry, so all
    87 exist (and can be queried and joined) before their first message arrives."""
    existing = warehouse.tables()
    missing = {ds.table_name: {c.name: c.type for c in ds.columns} for ds in registry if ds.table_name not in existing}
    layouts = {ds.table_name: table_layout(ds) for ds in registry if ds.table_name in missing}
    return warehouse.ensure_tables(missing, layouts) if missing else []


def table_layout(dataset: Dataset) -> TableLayout:
    return TableLayout(dataset.partition_column, dataset.cluster_columns)


@dataclass
class _DatasetState:
    dataset: Dataset
    report: DatasetReport
    columns: dict[str, str]  # the table's column types as committed so far


def _plan(
    spool: Spool, warehouse: Warehouse, registry: Registry, codes: list[str], chunk_files: int,
    max_message_bytes: int, report: LoadReport,
) -> list[tuple[_DatasetState, ChunkTask]]:
    """Each dataset's report and its chunks to load; the ledger is asked once for every dataset."""
    listed: dict[str, tuple[_DatasetState, list[SpoolFile]]] = {}
    for code in codes:
        report.datasets[code], entry = _list_dataset(spool, warehouse, registry, code)
        if entry:
            listed[code] = entry
    try:
        loaded = warehouse.loaded_files_many({code: [f.name for f in files] for code, (_, files) in listed.items()})
    except Exception as exc:  # the ledger cannot be read: nothing can load safely this run
        for state, _ in listed.values():
            _failed(state.report, exc)
        return []
    tasks = []
    for code, (state, files) in listed.items():
        try:
            files, already = _split_already_loaded(spool, warehouse, code, files, loaded[code])
            if already:  # loaded by a run that stopped before archiving them
                spool.archive_files(already)
                state.report.files_already_loaded += len(already)
            existing = tuple(state.columns)
            for start in range(0, len(files), chunk_files):
                chunk = files[start : start + chunk_files]
                tasks.append((state, ChunkTask(str(spool.root), state.dataset, chunk, existing, max_message_bytes)))
        except Exception as exc:  # one dataset's failure must not block the others
            _failed(state.report, exc)
    return tasks


def _list_dataset(
    spool: Spool, warehouse: Warehouse, registry: Registry, code: str
) -> tuple[DatasetReport, tuple[_DatasetState, list[SpoolFile]] | None]:
    """The dataset's report, and its state and pending files when it can load."""
    try:
        dataset = registry.resolve(code)
    except ValueError as exc:  # invalid code, or one whose table would clash with a registered dataset's
        report = DatasetReport(code, None, registered=False)
        try:
            files = spool.pending(code)
        except InvalidName as bad:  # e.g. `ingest --dataset ../../x`: never becomes a path
            report.error = str(bad)
            return report, None
        for f in files:
            quarantine(spool, f, f"{exc}: not loaded into any table", report.quarantine_reasons)
        report.files_quarantined = len(report.quarantine_reasons)
        return report, None
    report = DatasetReport(code, dataset.table_name, registered=dataset.registered)
    try:
        table = warehouse.table_columns(dataset.table_name) or {}
        columns = {name: t for name, t in table.items() if name not in codec.META_COLUMNS}
        files = spool.pending(code)
    except Exception as exc:  # one dataset's failure must not block the others
        _failed(report, exc)
        return report, None
    if files:
        report.oldest_file_age_s = max(0.0, time.time() - files[0].mtime)
    return report, (_DatasetState(dataset, report, columns), files)


def _split_already_loaded(
    spool: Spool, warehouse: Warehouse, code: str, files: list[SpoolFile], loaded: dict[str, str | None]
) -> tuple[list[SpoolFile], list[SpoolFile]]:
    """(files to load, files the ledger already holds), given what the ledger holds of their names.
    A file whose name the ledger holds with another body's hash is a different message under a taken
    name (the first copy was archived and pruned, so the writer could not compare): it is renamed to
    its content variant name and loaded."""
    if not loaded:
        return files, []
    to_load, already, renamed = [], [], []
    for f in files:
        if f.name not in loaded:
            to_load.append(f)
            continue
        try:
            digest = content_hash(read_file(f)) if loaded[f.name] else None
        except FileNotFoundError:
            continue  # moved by an operator since listing
        if digest is None or digest == loaded[f.name]:  # old ledger entries have no hash: the name decides
            already.append(f)
        elif (variant := spool.rename_to_content_variant(f, digest)) is not None:
            renamed.append(variant)
    if renamed:
        loaded = warehouse.loaded_files(code, [f.name for f in renamed])
        for f in renamed:
            (already if f.name in loaded else to_load).append(f)
        to_load.sort(key=lambda f: (f.mtime, f.name))
    return to_load, already


def _pool(workers: int) -> InProcess | WorkerPool:
    return WorkerPool(workers, initializer=without_pandas) if workers > 0 else InProcess()


def _archive(spool_root: str, files: list[SpoolFile]) -> None:
    Spool(spool_root).archive_files(files)


def _prepared_in_order(tasks, pool, window: int) -> Iterator[tuple[_DatasetState, ChunkTask, PreparedChunk]]:
    """Prepare tasks on the pool, at most `window` ahead, yielding results in submission order."""
    in_flight: collections.deque = collections.deque()

    def result(task, future) -> PreparedChunk:
        try:  # a worker that dies (killed, out of memory) costs only a rerun of its chunk
            return future.result()
        except WorkerDied as exc:  # its workers kept dying (OOM killer, an operator): do it here
            log.warning("preparing %s: %s; preparing it in this process", task.dataset.code, exc)
            return prepare(task)
        except Exception as exc:  # preparing failed unexpectedly: this chunk stays in incoming/
            log.exception("preparing %s failed", task.dataset.code)
            return PreparedChunk([], None, {}, error=f"{type(exc).__name__}: {exc}"[:500])

    for state, task in tasks:
        in_flight.append((state, task, pool.submit(prepare, task)))
        if len(in_flight) >= window:
            state0, task0, future0 = in_flight.popleft()
            yield state0, task0, result(task0, future0)
    while in_flight:
        state0, task0, future0 = in_flight.popleft()
        yield state0, task0, result(task0, future0)


@dataclass
class _Staged:
    """A prepared chunk whose table is ready for it: rows conformed to the table's column types."""

    state: _DatasetState
    converted: codec.Converted
    files: list[tuple[SpoolFile, int]]  # with their record counts
    hashes: dict[str, str]  # file name -> content hash, for the ledger

    def batch(self) -> Batch:
        """The rows conformed to the table as it is now (a later chunk of the group may have widened it)."""
        ds = self.state.dataset
        rows = codec.conform(self.converted, self.state.columns)
        files = [LoadedFile(f.name, n, self.hashes.get(f.name)) for f, n in self.files]
        return Batch(ds.code, ds.table_name, rows, files)


def _stage(warehouse: Warehouse, state: _DatasetState, task: ChunkTask, prepared: PreparedChunk) -> _Staged | None:
    """Evolve the table for a prepared chunk and conform its rows; None when nothing is to be committed."""
    report = state.report
    report.quarantine_reasons.update(prepared.quarantined)
    report.files_quarantined += len(prepared.quarantined)
    if prepared.error and not report.error:
        report.error = prepared.error
    if report.error or not prepared.decoded:
        return None  # after a failed chunk, the rest of the dataset stays in incoming/ for the next run
    try:
        if _case_clash(state.columns, prepared.converted.column_types):
            # Prepared before an earlier chunk added the same field spelt otherwise: redo it here,
            # knowing the table as it is now, so the first spelling stays the column.
            prepared = prepare(replace(task, existing=tuple(state.columns)))
            report.quarantine_reasons.update(prepared.quarantined)
            report.files_quarantined += len(prepared.quarantined)
            if not prepared.decoded:
                return None
        converted = prepared.converted
        if converted.unmapped_fields:
            note = f"fields kept in {codec.UNMAPPED_COLUMN} (not valid column names): {', '.join(converted.unmapped_fields)[:200]}"
            log.warning("%s: %s", state.dataset.code, note)
            if note not in report.schema_changes:
                report.schema_changes.append(note)
        report.schema_changes += warehouse.ensure_table(
            state.dataset.table_name, converted.column_types, table_layout(state.dataset)
        )
        for column, col_type in converted.column_types.items():
            state.columns[column] = evolved_type(state.columns.get(column), col_type)
    except Exception as exc:  # one dataset's failure must not block the others
        _failed(report, exc)
        return None
    return _Staged(state, converted, prepared.decoded, prepared.hashes)


def _commit_group(warehouse: Warehouse, group: list[_Staged]) -> list[list[SpoolFile]]:
    """Commit staged chunks in one transaction (a backlog then pays for few commits); if that fails,
    one by one, so that only the failing dataset stays behind. Returns the file lists now safe to archive."""
    if not group:
        return []
    try:
        results = list(zip(group, warehouse.append_many([s.batch() for s in group])))
    except Exception:
        results = []
        for staged in group:
            if staged.state.report.error:
                continue  # an earlier chunk of this dataset failed: keep the order, leave the rest
            try:
                results.append((staged, warehouse.append_many([staged.batch()])[0]))
            except Exception as exc:
                _failed(staged.state.report, exc)
    committed = []
    for staged, loaded in results:
        report = staged.state.report
        report.files_loaded += len(loaded)
        report.rows_loaded += sum(f.rows for f in loaded)
        report.files_already_loaded += len(staged.files) - len(loaded)
        committed.append([f for f, _ in staged.files])
    return committed


def _failed(report: DatasetReport, exc: Exception) -> None:
    log.error("dataset %s failed: %s: %s", report.dataset, type(exc).__name__, exc, exc_info=exc)
    report.error = f"{type(exc).__name__}: {exc}"[:500]


def _case_clash(table: dict[str, str], chunk: dict[str, str]) -> bool:
    folded = {name.lower(): name for name in table}
    return any(folded.get(name.lower(), name) != name for name in chunk)


