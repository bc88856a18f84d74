"""Preparing one chunk of spool files for the warehouse: read, decode, convert to one Arrow table.

Runs in loader worker processes (or in the loader's own), so it touches only the spool: a file that
cannot be loaded (unreadable, too large, not JSON, a value its declared column cannot hold) is
quarantined with the reason here, and the rest of the chunk goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from iris_pipeline import codec
from iris_pipeline.registry import Dataset
from iris_pipeline.spool import Spool, SpoolFile, content_hash

log = logging.getLogger(__name__)

# Real IRIS messages are a few KB, rarely several MB; a bigger file is not read into memory at all.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ChunkTask:
    spool_root: str
    dataset: Dataset
    files: list[SpoolFile]
    existing: tuple[str, ...]  # the table's columns when planned (for case clashes)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


@dataclass
class PreparedChunk:
    decoded: list[tuple[SpoolFile, int]]  # files that will load, with their record counts
    converted: codec.Converted | None
    quarantined: dict[str, str]  # file name -> reason (already moved to quarantine/)
    error: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)  # file name -> content_hash, for the ledger


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


def prepare(task: ChunkTask) -> PreparedChunk:
    """Read, decode and convert one chunk; quarantine what cannot be loaded. Runs in a worker."""
    with _gc_paused():
        return _prepare_chunk(task)


def _prepare_chunk(task: ChunkTask) -> PreparedChunk:
    spool = Spool(task.spool_root)
    quarantined: dict[str, str] = {}
    hashes: dict[str, str] = {}
    decoded: list[tuple[SpoolFile, list[dict[str, Any]]]] = []
    limit = task.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    for f in task.files:
        if f.size > limit:
            quarantine(spool, f, f"message is {f.size:,} bytes, above IRIS_MAX_MESSAGE_BYTES={limit:,}", quarantined)
            continue
        try:
            body = read_file(f)
            hashes[f.name] = content_hash(body)
            decoded.append((f, codec.decode_body(body)))
        except codec.DecodeError as exc:
            quarantine(spool, f, str(exc), quarantined)
        except FileNotFoundError:
            continue  # moved by an operator since listing; nothing of ours to do
        except OSError as exc:  # unreadable (permissions, I/O error): it must not hold back the others
            quarantine(spool, f, f"cannot read the file: {exc}", quarantined)
    declared = {c.name: c.type for c in task.dataset.columns}
    converted, decoded = _convert_isolating_bad_files(spool, decoded, declared, task.existing, quarantined)
    return PreparedChunk([(f, len(records)) for f, records in decoded], converted, quarantined, hashes=hashes)


def read_file(f: SpoolFile) -> bytes:
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
                quarantine(spool, f, str(exc), quarantined)
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


def quarantine(spool: Spool, f: SpoolFile, reason: str, reasons: dict[str, str]) -> None:
    log.warning("quarantined %s/%s: %s", f.dataset, f.name, reason)
    try:
        spool.quarantine_file(f, reason)
    except FileNotFoundError:
        return
    except OSError as exc:  # cannot even be moved: say so, and let the rest of the chunk load
        log.error("cannot quarantine %s/%s (%s): %s", f.dataset, f.name, reason, exc)
        reason = f"{reason}; and it could not be moved to quarantine/: {exc}"
    reasons[f.name] = reason
