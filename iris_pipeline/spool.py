"""The on-disk spool: incoming/, archive/, quarantine/ and a private tmp/ for atomic writes.

Writers write into tmp/, fsync, then link into incoming/<DATASET>/<file>, so a reader never sees a
partial file. Nothing leaves incoming/ except by being archived (after a committed load) or
quarantined (with a `.error` file saying why).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_SAFE_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}$")
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._+=@-]+")
ERROR_SUFFIX = ".error"


class InvalidName(ValueError):
    """A dataset code or file name that is not a single safe path component."""


def is_safe_component(name: str) -> bool:
    # fullmatch: "$" alone would accept a trailing newline.
    return bool(_SAFE_COMPONENT_RE.fullmatch(name)) and not name.endswith(ERROR_SUFFIX)


def safe_file_name(name: str) -> str:
    """Turn an untrusted message id into one safe path component (no separators, no leading dot)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_CHARS_RE.sub("_", base).lstrip("._-")[:200]
    if cleaned.endswith(ERROR_SUFFIX):
        cleaned += "_"
    if not cleaned or not is_safe_component(cleaned):
        raise InvalidName(f"no usable file name in {name[:80]!r}")
    return cleaned


def _require_safe(*names: str) -> None:
    for name in names:
        if not is_safe_component(name):
            raise InvalidName(f"not a safe path component: {name[:80]!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SpoolFile:
    dataset: str
    name: str
    path: str  # a plain string: pathlib costs more than the I/O on a 100,000-file drain
    size: int
    mtime: float


class Spool:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.archive = self.root / "archive"
        self.quarantine = self.root / "quarantine"
        self.tmp = self.root / "tmp"

    # --- writing -------------------------------------------------------------------------
    def write_incoming(self, dataset: str, file_name: str, body: bytes, *, durable: bool = True) -> bool:
        """Atomically place `body` at incoming/<dataset>/<file_name>.

        Returns False, writing nothing, when that file is already in incoming/ or archive/.
        """
        _require_safe(dataset, file_name)
        target_dir = self.incoming / dataset
        target = target_dir / file_name
        if target.exists() or self.is_archived(dataset, file_name):
            return False
        target_dir.mkdir(parents=True, exist_ok=True)
        tmp_path = self._write_tmp(body, durable)
        try:
            os.link(tmp_path, target)  # unlike rename, link never replaces an existing file
        except FileExistsError:
            return False
        finally:
            tmp_path.unlink(missing_ok=True)
        if durable:
            _fsync_dir(target_dir)
        return True

    def _write_tmp(self, body: bytes, durable: bool) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        tmp_path = self.tmp / f"{uuid.uuid4().hex}.part"
        with open(tmp_path, "wb") as fh:
            fh.write(body)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        return tmp_path

    def quarantine_bytes(self, dataset: str, file_name: str, body: bytes, reason: str) -> Path:
        """Keep a copy of undeliverable input with its reason (used when there is no incoming file)."""
        dataset = dataset if is_safe_component(dataset) else "_invalid"
        file_name = safe_file_name(file_name)
        target_dir = self.quarantine / dataset
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / file_name
        self._write_error(target, reason)
        tmp_path = self._write_tmp(body, durable=True)
        os.replace(tmp_path, target)
        _fsync_dir(target_dir)
        return target

    # --- reading -------------------------------------------------------------------------
    def datasets_pending(self) -> list[str]:
        """Dataset directories in incoming/ holding at least one file (names as on disk)."""
        found = []
        for entry in self._scandir(self.incoming):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if any(f.is_file(follow_symlinks=False) for f in os.scandir(entry.path)):
                found.append(entry.name)
        return sorted(found)

    def pending(self, dataset: str, limit: int | None = None) -> list[SpoolFile]:
        """Files waiting in incoming/<dataset>/, oldest first."""
        files = []
        for entry in self._scandir(self.incoming / dataset):
            if entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # moved since listing (archived, quarantined, by an operator)
                    continue
                files.append(SpoolFile(dataset, entry.name, entry.path, st.st_size, st.st_mtime))
        files.sort(key=lambda f: (f.mtime, f.name))
        return files[:limit] if limit else files

    def stats(self) -> dict[str, dict[str, float]]:
        """Per dataset: pending file count, bytes, oldest and newest mtime. Cheap enough for a sensor."""
        out: dict[str, dict[str, float]] = {}
        for entry in self._scandir(self.incoming):
            if not entry.is_dir(follow_symlinks=False):
                continue
            count = size = 0
            oldest, newest = float("inf"), 0.0
            for f in os.scandir(entry.path):
                if not f.is_file(follow_symlinks=False):
                    continue  # pending() ignores directories: counting them would report a backlog forever
                try:
                    st = f.stat(follow_symlinks=False)
                except FileNotFoundError:  # archived by a run while the sensor lists
                    continue
                count += 1
                size += st.st_size
                oldest, newest = min(oldest, st.st_mtime), max(newest, st.st_mtime)
            if count:
                out[entry.name] = {"files": count, "bytes": size, "oldest_mtime": oldest, "newest_mtime": newest}
        return out

    def quarantined(self, dataset: str | None = None) -> list[Path]:
        roots = [self.quarantine / dataset] if dataset else [Path(e.path) for e in self._scandir(self.quarantine)]
        return sorted(
            Path(f.path)
            for root in roots
            for f in self._scandir(root)
            if f.is_file() and not f.name.endswith(ERROR_SUFFIX)
        )

    def is_archived(self, dataset: str, file_name: str) -> bool:
        # Archive days are few per dataset (retention bounds them), so this stays cheap.
        return any((Path(day.path) / file_name).exists() for day in self._scandir(self.archive / dataset))

    # --- moving --------------------------------------------------------------------------
    def archive_files(self, files: list[SpoolFile], day: dt.date | None = None) -> None:
        """Move loaded files to archive/<dataset>/<YYYY-MM-DD>/ (the load is already committed)."""
        day_name = (day or dt.datetime.now(dt.timezone.utc).date()).isoformat()
        made: set[str] = set()
        for f in files:
            target_dir = os.path.join(self.archive, f.dataset, day_name)
            if target_dir not in made:
                os.makedirs(target_dir, exist_ok=True)
                made.add(target_dir)
            try:
                os.replace(f.path, os.path.join(target_dir, f.name))
            except FileNotFoundError:
                pass  # already moved by an earlier, interrupted run

    def quarantine_file(self, f: SpoolFile, reason: str) -> Path:
        """Move an incoming file to quarantine/<dataset>/ with `<file>.error` written first."""
        target_dir = self.quarantine / f.dataset
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f.name
        self._write_error(target, reason)
        os.replace(f.path, target)
        return target

    def _write_error(self, target: Path, reason: str) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        error_path = target.with_name(target.name + ERROR_SUFFIX)
        error_path.write_text(f"{stamp} {reason.strip()}\n", encoding="utf-8")

    def remove_stale_tmp(self, older_than_s: float = 3600.0) -> int:
        """Delete partial writes in tmp/ left by a writer that died (its message was never completed,
        so the broker redelivers it). Returns files removed."""
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in self._scandir(self.tmp):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def prune_archive(self, keep_days: int, today: dt.date | None = None) -> int:
        """Delete archive day folders older than `keep_days` (their files are loaded). Returns files removed."""
        today = today or dt.datetime.now(dt.timezone.utc).date()
        removed = 0
        for ds in self._scandir(self.archive):
            for day in self._scandir(Path(ds.path)):
                try:
                    age = (today - dt.date.fromisoformat(day.name)).days
                except ValueError:
                    continue
                if age > keep_days:
                    for f in os.scandir(day.path):
                        os.unlink(f.path)
                        removed += 1
                    os.rmdir(day.path)
        return removed

    @contextmanager
    def exclusive(self, name: str, *, blocking: bool = True) -> Iterator[None]:
        """A process-wide lock file in the spool root (one loader / one client at a time)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise SpoolLocked(f"{self.root / name} is held by another process") from exc
                raise
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _scandir(path: Path) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(path))
        except FileNotFoundError:
            return []


class SpoolLocked(RuntimeError):
    pass
