"""Drain the spool into the warehouse, exactly once.

The CLI (`iris-pipeline ingest`), the Dagster assets and the benchmark all call `load_spool`.
Per dataset: skip files the ledger already holds; per chunk of the rest: read, decode (quarantining
what cannot be decoded), convert to one Arrow table, evolve the table, then insert rows and ledger
entries in one transaction; only after the commit are the files moved to the archive. A crash at any
point leaves each file either in incoming/ (loaded or not: the ledger decides) or archived after
its rows committed, so a rerun neither loses nor doubles anything.

Reading and converting is pure-Python work bound by the GIL, so a large backlog is prepared by
worker processes while this process commits, in order. Small drains (the sensor's usual few files)
stay in-process: starting workers would cost more than it saves.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import gc
import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from iris_pipeline import codec
from iris_pipeline.registry import Dataset, Registry, load_registry
from iris_pipeline.spool import InvalidName, Spool, SpoolFile, content_hash
from iris_pipeline.warehouse.base import Batch, LoadedFile, Warehouse, evolved_type
from iris_pipeline.workers import InProcess, WorkerDied, WorkerPool, without_pandas

log = logging.getLogger(__name__)

DEFAULT_CHUNK_FILES = 2000
PARALLEL_MIN_FILES = 5000
# A backlog's prepared chunks are committed a group at a time (each commit costs ~10 ms of fsync).
GROUP_ROWS = 100_000
GROUP_CHUNKS = 16
# Real IRIS messages are a few KB, rarely several MB; a bigger file is not read into memory at all.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class DatasetReport:
    dataset: str
    table: str | None
    registered: bool
    files_loaded: int = 0
    rows_loaded: int = 0
    files_already_loaded: int = 0
    files_quarantined: int = 0
    quarantine_reasons: dict[str, str] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)
    oldest_file_age_s: float | None = None
    error: str | None = None
    archive_error: str | None = None  # loaded, but not yet moved to archive/ (done by the next run)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "files_loaded": self.files_loaded,
            "rows_loaded": self.rows_loaded,
            "files_already_loaded": self.files_already_loaded,
            "files_quarantined": self.files_quarantined,
            "lag_seconds": round(self.oldest_file_age_s or 0.0, 1),
            "registered": self.registered,
            "schema_changes": "; ".join(self.schema_changes) or "none",
        } | ({"archive_error": self.archive_error} if self.archive_error else {})


@dataclass
class LoadReport:
    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def files_loaded(self) -> int:
        return sum(r.files_loaded for r in self.datasets.values())

    @property
    def rows_loaded(self) -> int:
        return sum(r.rows_loaded for r in self.datasets.values())

    @property
    def files_quarantined(self) -> int:
        return sum(r.files_quarantined for r in self.datasets.values())

    @property
    def failed(self) -> dict[str, str]:
        return {code: r.error for code, r in self.datasets.items() if r.error}

    def summary(self) -> str:
        lines = [
            f"{code:<12} files={r.files_loaded:<7} rows={r.rows_loaded:<9} dup={r.files_already_loaded:<5}"
            f" quarantined={r.files_quarantined:<4}{' UNREGISTERED' if not r.registered else ''}"
            f"{' ERROR: ' + r.error if r.error else ''}"
            f"{' NOT ARCHIVED: ' + r.archive_error if r.archive_error else ''}"
            for code, r in sorted(self.datasets.items())
        ]
        rate = self.files_loaded / self.seconds if self.seconds else 0.0
        lines.append(
            f"total: {self.files_loaded} files, {self.rows_loaded} rows, {self.files_quarantined} quarantined,"
            f" {len(self.failed)} datasets failed, {self.seconds:.2f}s ({rate:,.0f} files/s)"
        )
        return "\n".join(lines)


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
                if len(group) >= GROUP_CHUNKS or sum(s.converted.table.num_rows for s in group) >= GROUP_ROWS:
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
    return warehouse.ensure_tables(missing) if missing else []


@dataclass
class _DatasetState:
    dataset: Dataset
    report: DatasetReport
    columns: dict[str, str]  # the table's column types as committed so far


@dataclass(frozen=True)
class _Task:
    spool_root: str
    dataset: Dataset
    files: list[SpoolFile]
    existing: tuple[str, ...]  # the table's columns when planned (for case clashes)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


@dataclass
class _Prepared:
    decoded: list[tuple[SpoolFile, int]]  # files that will load, with their record counts
    converted: codec.Converted | None
    quarantined: dict[str, str]  # file name -> reason (already moved to quarantine/)
    error: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)  # file name -> content_hash, for the ledger


def _plan(
    spool: Spool, warehouse: Warehouse, registry: Registry, codes: list[str], chunk_files: int,
    max_message_bytes: int, report: LoadReport,
) -> list[tuple[_DatasetState, _Task]]:
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
                tasks.append((state, _Task(str(spool.root), state.dataset, chunk, existing, max_message_bytes)))
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
            _quarantine(spool, f, f"{exc}: not loaded into any table", report.quarantine_reasons)
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
            digest = content_hash(_read(f)) if loaded[f.name] else None
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


def _prepared_in_order(tasks, pool, window: int) -> Iterator[tuple[_DatasetState, _Task, _Prepared]]:
    """Prepare tasks on the pool, at most `window` ahead, yielding results in submission order."""
    in_flight: collections.deque = collections.deque()

    def result(task, future) -> _Prepared:
        try:  # a worker that dies (killed, out of memory) costs only a rerun of its chunk
            return future.result()
        except WorkerDied as exc:  # its workers kept dying (OOM killer, an operator): do it here
            log.warning("preparing %s: %s; preparing it in this process", task.dataset.code, exc)
            return _prepare(task)
        except Exception as exc:  # preparing failed unexpectedly: this chunk stays in incoming/
            log.exception("preparing %s failed", task.dataset.code)
            return _Prepared([], None, {}, error=f"{type(exc).__name__}: {exc}"[:500])

    for state, task in tasks:
        in_flight.append((state, task, pool.submit(_prepare, task)))
        if len(in_flight) >= window:
            state0, task0, future0 = in_flight.popleft()
            yield state0, task0, result(task0, future0)
    while in_flight:
        state0, task0, future0 = in_flight.popleft()
        yield state0, task0, result(task0, future0)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Decoding allocates a million acyclic dicts per 100,000 files; the cyclic collector would walk
    # them again and again (measured: 7 of 20 seconds of a drain). Reference counting frees them.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _prepare(task: _Task) -> _Prepared:
    """Read, decode and convert one chunk; quarantine what cannot be loaded. Runs in a worker."""
    with _gc_paused():
        return _prepare_chunk(task)


def _prepare_chunk(task: _Task) -> _Prepared:
    spool = Spool(task.spool_root)
    quarantined: dict[str, str] = {}
    hashes: dict[str, str] = {}
    decoded: list[tuple[SpoolFile, list[dict[str, Any]]]] = []
    limit = task.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    for f in task.files:
        if f.size > limit:
            _quarantine(spool, f, f"message is {f.size:,} bytes, above IRIS_MAX_MESSAGE_BYTES={limit:,}", quarantined)
            continue
        try:
            body = _read(f)
            hashes[f.name] = content_hash(body)
            decoded.append((f, codec.decode_body(body)))
        except codec.DecodeError as exc:
            _quarantine(spool, f, str(exc), quarantined)
        except FileNotFoundError:
            continue  # moved by an operator since listing; nothing of ours to do
        except OSError as exc:  # unreadable (permissions, I/O error): it must not hold back the others
            _quarantine(spool, f, f"cannot read the file: {exc}", quarantined)
    declared = {c.name: c.type for c in task.dataset.columns}
    converted, decoded = _convert_isolating_bad_files(spool, decoded, declared, task.existing, quarantined)
    return _Prepared([(f, len(records)) for f, records in decoded], converted, quarantined, hashes=hashes)


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


def _stage(warehouse: Warehouse, state: _DatasetState, task: _Task, prepared: _Prepared) -> _Staged | None:
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
            prepared = _prepare(replace(task, existing=tuple(state.columns)))
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
        report.schema_changes += warehouse.ensure_table(state.dataset.table_name, converted.column_types)
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


def _read(f: SpoolFile) -> bytes:
    # os.read skips the buffered-file objects open() builds for every one of 100,000 files.
    fd = os.open(f.path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, f.size + 1)]
        while chunks[-1]:  # the file is complete when listed (writers rename into place), but be exact
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _convert_isolating_bad_files(spool, decoded, declared, existing, quarantined):
    """Convert a chunk at once; if it fails, find and quarantine the offending files, keep the rest."""
    if not decoded:
        return None, []
    try:
        return _convert(decoded, declared, existing), decoded
    except codec.ConversionError:
        good = []
        for f, records in decoded:
            try:
                _convert([(f, records)], declared, existing)
                good.append((f, records))
            except codec.ConversionError as exc:
                _quarantine(spool, f, str(exc), quarantined)
        return (_convert(good, declared, existing), good) if good else (None, [])


def _convert(decoded: list[tuple[SpoolFile, list[dict[str, Any]]]], declared: dict[str, str], existing) -> codec.Converted:
    counts = np.fromiter((len(records) for _, records in decoded), dtype=np.int64, count=len(decoded))
    file_of_row = np.repeat(np.arange(len(decoded)), counts)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    record_index = np.arange(int(counts.sum())) - np.repeat(offsets, counts)
    names = pa.array([f.name for f, _ in decoded], pa.string())
    records = [r for _, recs in decoded for r in recs]
    now = pa.scalar(dt.datetime.now(dt.timezone.utc), codec.ARROW_TYPES["TIMESTAMP"])
    return codec.to_records_table(
        records, declared, names.take(pa.array(file_of_row)), pa.array(record_index), now, existing
    )


def _quarantine(spool: Spool, f: SpoolFile, reason: str, reasons: dict[str, str]) -> None:
    log.warning("quarantined %s/%s: %s", f.dataset, f.name, reason)
    try:
        spool.quarantine_file(f, reason)
    except FileNotFoundError:
        return
    except OSError as exc:  # cannot even be moved: say so, and let the rest of the chunk load
        log.error("cannot quarantine %s/%s (%s): %s", f.dataset, f.name, reason, exc)
        reason = f"{reason}; and it could not be moved to quarantine/: {exc}"
    reasons[f.name] = reason
