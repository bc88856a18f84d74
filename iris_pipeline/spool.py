"""The on-disk spool: incoming/, archive/, quarantine/ and a private tmp/ for atomic writes.

Writers write into tmp/, fsync, then link into incoming/<DATASET>/<file>, so a reader never sees a
partial file. Nothing leaves incoming/ except by being archived (after a committed load) or
quarantined (with a `.error` file saying why). Nothing is ever overwritten: a different body under a
name already taken is kept under its content variant name, and archive/ and quarantine/ never
replace an entry. Links are never followed; entries that are not regular files never load.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import itertools
import os
import re
import stat
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

_SAFE_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}$")
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._+=@-]+")
ERROR_SUFFIX = ".error"
LOCK_TIMEOUT_S = 600.0  # how long a loader waits for the one before it
INVALID_FOLDER = "_invalid"  # quarantine/ folder for input whose dataset code cannot name a folder


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


def _require_listed_name(*names: str) -> None:
    """A name as a directory listing returns it: one component, so joining it stays in its folder.

    Looser than is_safe_component: an operator's `incoming/my data/` is still read (and its files
    quarantined as an invalid code); `../../x` from a command line never becomes a path."""
    for name in names:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise InvalidName(f"not a single path component: {name[:80]!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def content_hash(body: bytes) -> str:
    """sha256 of a file's bytes (hex): the ledger keeps it beside each loaded file's name."""
    return hashlib.sha256(body).hexdigest()


def content_variant_name(file_name: str, digest: str) -> str:
    """Where a different body arriving under a taken name is kept: `<stem>+<sha256[:16]>.<suffix>`.

    Deterministic, so a redelivery of that body is recognised as one; a safe name stays safe."""
    tag = "+" + digest[:16]
    stem, dot, suffix = file_name.rpartition(".")
    if dot and stem and len(suffix) <= 16:
        return f"{stem[: 200 - len(tag) - len(suffix) - 1]}{tag}.{suffix}"
    return f"{file_name[: 200 - len(tag)]}{tag}"


def _kind(entry: os.DirEntry[str]) -> str:
    """What a directory entry is, in words, without following a symbolic link."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return "an entry that vanished or cannot be read"
    for test, kind in (
        (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a device file"


def _quarantine_name(name: str) -> str:
    try:
        return name if is_safe_component(name) else safe_file_name(name)
    except InvalidName:
        return "unnamed"


def _same_bytes(path: str, body: bytes) -> bool | None:
    """Whether the file at `path` holds exactly `body`; None when there is no such file."""
    try:
        # O_NOFOLLOW, O_NONBLOCK: a symbolic link is not read through, a FIFO does not block the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # a symbolic link (ELOOP) or unreadable: not this body
        return False if os.path.lexists(path) else None
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(body):
            return False
        return fh.read() == body


def _move_no_replace(src: str, target: str) -> None:
    """Move `src` (never following it if it is a link) to `target`; FileExistsError if target exists."""
    if stat.S_ISDIR(os.lstat(src).st_mode):  # a directory cannot be hard-linked
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", target)
        os.rename(src, target)
        return
    try:
        os.link(src, target, follow_symlinks=False)  # unlike rename, link never replaces an existing file
    except PermissionError:
        # fs.protected_hardlinks refuses to link a file another user owns (the client may run as one):
        # check, then rename (names are reserved by their .error file or owned by this one loader)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", target) from None
        os.rename(src, target)
        return
    os.unlink(src)


class SpoolFile(NamedTuple):  # a tuple: a drain lists and sends 100,000 of them to its workers
    dataset: str
    name: str
    path: str  # a plain string: pathlib costs more than the I/O on a 100,000-file drain
    size: int
    mtime: float


@dataclass(frozen=True)
class SpoolProblem:
    """An entry the spool cannot treat as a message file (or could not handle), and why."""
    path: str  # relative to the spool root, e.g. "incoming/BOALF/link.json"
    reason: str
    quarantined_as: str | None = None  # relative to the spool root, when it was moved to quarantine

    def __str__(self) -> str:
        moved = f" (moved to {self.quarantined_as})" if self.quarantined_as else ""
        return f"{self.path}: {self.reason}{moved}"


@dataclass(frozen=True)
class PruneResult:
    removed: int  # archived files deleted
    skipped: list[SpoolProblem]  # what was left alone (links, directories, unreadable folders), and why


@dataclass(frozen=True)
class QuarantineInventory:
    """Everything in quarantine/, whatever folder it sits in (dataset codes, `_invalid`, any other)."""
    items: dict[str, int]  # folder -> quarantined entries in it (their `.error` files aside)
    problems: list[SpoolProblem]  # odd entries: links and the like, reasons without a file, unlistable folders

    @property
    def total(self) -> int:
        return sum(self.items.values())


class Spool:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.archive = self.root / "archive"
        self.quarantine = self.root / "quarantine"
        self.tmp = self.root / "tmp"

    # --- writing -------------------------------------------------------------------------
    def write_incoming(self, dataset: str, file_name: str, body: bytes, *, durable: bool = True) -> bool:
        """Atomically place `body` at incoming/<dataset>/<file_name>; True when a file was written.

        Returns False, writing nothing, when this very body is already in incoming/ or archive/ under
        that name (a redelivery). A different body under a taken name is a different message: it is
        written under its content_variant_name, so every distinct body is kept and loaded once.
        """
        _require_safe(dataset, file_name)
        target_dir = self.incoming / dataset
        name = self._name_for_body(dataset, file_name, body)
        if name is None:
            return False
        new_dirs = self._make_dirs(target_dir)
        tmp_path = self._write_tmp(body, durable)
        try:
            try:
                os.link(tmp_path, target_dir / name)  # unlike rename, link never replaces an existing file
            except FileExistsError:  # another writer placed this name since we looked
                name = self._name_for_body(dataset, file_name, body)
                if name is None:
                    return False
                os.link(tmp_path, target_dir / name)
        finally:
            tmp_path.unlink(missing_ok=True)
        if durable:
            _fsync_dir(target_dir)
            for made in reversed(new_dirs):  # a new directory is only durable once its parent is
                _fsync_dir(made.parent)
        return True

    def _name_for_body(self, dataset: str, file_name: str, body: bytes) -> str | None:
        """The name to store `body` under, or None when the spool already holds it."""
        same = self._holds(dataset, file_name, body)
        if same is None:
            return file_name
        if same:
            return None
        variant = content_variant_name(file_name, content_hash(body))
        same = self._holds(dataset, variant, body)
        if same is None:
            return variant
        if same:
            return None
        raise FileExistsError(errno.EEXIST, "another body holds this content-hash name", variant)

    def _holds(self, dataset: str, file_name: str, body: bytes) -> bool | None:
        """True when incoming/ or archive/ has `body` under this name, False when only other bodies,
        None when the name is free. Reads only on a name clash, which is rare."""
        paths = [os.path.join(self.incoming, dataset, file_name)] + [
            os.path.join(day.path, file_name)
            for day in self._scandir(self.archive / dataset)
            if day.is_dir(follow_symlinks=False)
        ]
        found = [same for same in (_same_bytes(p, body) for p in paths) if same is not None]
        return any(found) if found else None

    @staticmethod
    def _make_dirs(path: Path) -> list[Path]:
        """Create `path` and missing parents; return those that were missing (deepest first)."""
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for made in reversed(missing):
            made.mkdir(exist_ok=True)  # exist_ok: a concurrent writer made it; fsync its parent all the same
        return missing

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
        file_name = safe_file_name(file_name)
        tmp_path = self._write_tmp(body, durable=True)
        try:
            target = self._quarantine_entry(str(tmp_path), dataset, file_name, reason)
        finally:
            tmp_path.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return target

    # --- reading -------------------------------------------------------------------------
    def datasets_pending(self) -> list[str]:
        """Dataset directories in incoming/ holding at least one file (names as on disk).

        A directory that cannot be listed is left out (incoming_problems reports it): one bad entry
        must not stop the others from loading."""
        found = []
        for entry in self._dataset_dirs():
            try:
                with os.scandir(entry.path) as it:
                    if any(f.is_file(follow_symlinks=False) for f in it):
                        found.append(entry.name)
            except OSError:
                continue
        return sorted(found)

    def pending(self, dataset: str, limit: int | None = None) -> list[SpoolFile]:
        """Files waiting in incoming/<dataset>/, oldest first. Other entries (links, FIFOs,
        directories) are never loaded: incoming_problems reports them, quarantine_strays moves them."""
        _require_listed_name(dataset)
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
        for entry in self._dataset_dirs():
            count = size = 0
            oldest, newest = float("inf"), 0.0
            try:
                children = list(os.scandir(entry.path))
            except OSError:  # unlistable: incoming_problems reports it; the others still count
                continue
            for f in children:
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

    def _dataset_dirs(self) -> list[os.DirEntry[str]]:
        """Entries of incoming/ that can hold pending files: real directories, never links to one."""
        return [e for e in self._scandir(self.incoming) if e.is_dir(follow_symlinks=False)]

    def incoming_problems(self) -> list[SpoolProblem]:
        """Entries of incoming/ that can never load: whatever is not a directory at the top (a symbolic
        link to one included), directories that cannot be listed, and inside a dataset directory
        anything that is not a regular file (symbolic links, FIFOs, sockets, subdirectories)."""
        return [problem for problem, _ in self._scan_incoming()]

    def quarantine_strays(self) -> list[SpoolProblem]:
        """Move every entry incoming_problems finds into quarantine (a link itself, never its target),
        each with a `.error` reason. Returns all problems; those left in place (an unlistable dataset
        directory) have no `quarantined_as`. Call with the ingest lock held."""
        handled = []
        for problem, where in self._scan_incoming():
            if where is None:  # moving it would hide files the client still writes there
                handled.append(problem)
                continue
            try:
                target = self._quarantine_entry(str(self.root / problem.path), *where, problem.reason)
            except FileNotFoundError:
                continue  # gone since listing
            except OSError as exc:
                handled.append(SpoolProblem(problem.path, f"{problem.reason}; cannot quarantine it: {exc}"))
                continue
            handled.append(SpoolProblem(problem.path, problem.reason, str(target.relative_to(self.root))))
        return handled

    def _scan_incoming(self) -> list[tuple[SpoolProblem, tuple[str, str] | None]]:
        """Each problem entry of incoming/ with the (quarantine folder, name) it would move to."""
        found: list[tuple[SpoolProblem, tuple[str, str] | None]] = []
        for entry in self._scandir(self.incoming):
            rel = f"incoming/{entry.name}"
            if not entry.is_dir(follow_symlinks=False):
                found.append((SpoolProblem(rel, f"{_kind(entry)} where a dataset directory belongs"),
                              (INVALID_FOLDER, entry.name)))
                continue
            try:
                children = list(os.scandir(entry.path))
            except OSError as exc:
                found.append((SpoolProblem(rel, f"cannot list the directory: {exc.strerror or exc}"), None))
                continue
            found += [
                (SpoolProblem(f"{rel}/{child.name}", f"{_kind(child)}, not a regular file: never loaded"),
                 (entry.name, child.name))
                for child in children
                if not child.is_file(follow_symlinks=False)
            ]
        return found

    def quarantined(self, dataset: str | None = None) -> list[Path]:
        """Entries kept in quarantine/<dataset>/ (or every folder), their `.error` files aside."""
        if dataset is not None:
            _require_listed_name(dataset)
            roots = [self.quarantine / dataset]
        else:
            roots = [Path(e.path) for e in self._scandir(self.quarantine) if e.is_dir(follow_symlinks=False)]
        found = []
        for root in roots:
            try:
                found += [Path(f.path) for f in self._scandir(root) if not f.name.endswith(ERROR_SUFFIX)]
            except OSError:  # unlistable: quarantine_inventory reports it
                continue
        return sorted(found)

    def quarantine_inventory(self) -> QuarantineInventory:
        """Count everything in quarantine/, in every folder (dataset codes, `_invalid`, unregistered or
        invalid codes, anything an operator put there), and note what is odd."""
        items: dict[str, int] = {}
        problems: list[SpoolProblem] = []
        top = self._scandir(self.quarantine)
        top_names = {e.name for e in top}
        for folder in top:
            rel = f"quarantine/{folder.name}"
            if folder.name.endswith(ERROR_SUFFIX) and folder.name[: -len(ERROR_SUFFIX)] in top_names:
                continue  # the reason beside a stray entry, counted with it
            if not folder.is_dir(follow_symlinks=False):
                items["."] = items.get(".", 0) + 1
                problems.append(SpoolProblem(rel, f"{_kind(folder)} outside any dataset folder"))
                continue
            try:
                entries = list(os.scandir(folder.path))
            except OSError as exc:
                problems.append(SpoolProblem(rel, f"cannot list the folder: {exc.strerror or exc}"))
                continue
            names = {e.name for e in entries}
            count = 0
            for e in entries:
                if e.name.endswith(ERROR_SUFFIX):
                    if e.name[: -len(ERROR_SUFFIX)] not in names:
                        problems.append(SpoolProblem(f"{rel}/{e.name}", "a reason whose file is gone"))
                    continue
                count += 1
                if e.name + ERROR_SUFFIX not in names:
                    problems.append(SpoolProblem(f"{rel}/{e.name}", "no .error file gives its reason"))
                if not e.is_file(follow_symlinks=False):
                    problems.append(SpoolProblem(f"{rel}/{e.name}", f"{_kind(e)}, not a regular file"))
            if count:
                items[folder.name] = count
        return QuarantineInventory(items, problems)

    def is_archived(self, dataset: str, file_name: str) -> bool:
        # Archive days are few per dataset (retention bounds them), so this stays cheap.
        _require_listed_name(dataset)
        return any((Path(day.path) / file_name).exists() for day in self._scandir(self.archive / dataset))

    # --- moving --------------------------------------------------------------------------
    def archive_files(self, files: list[SpoolFile], day: dt.date | None = None) -> None:
        """Move loaded files to archive/<dataset>/<YYYY-MM-DD>/ (the load is already committed).

        Never replaces an archived file: the same body is already there (the incoming copy goes), a
        different one is archived under its content_variant_name."""
        day_name = (day or dt.datetime.now(dt.timezone.utc).date()).isoformat()
        made: dict[str, str] = {}
        for f in files:
            target_dir = made.get(f.dataset)
            if target_dir is None:
                target_dir = made[f.dataset] = os.path.join(self.archive, f.dataset, day_name)
                os.makedirs(target_dir, exist_ok=True)
            try:
                self._archive_one(f, target_dir)
            except FileNotFoundError:
                pass  # already moved by an earlier, interrupted run

    @staticmethod
    def _archive_one(f: SpoolFile, target_dir: str) -> None:
        target = f"{target_dir}/{f.name}"  # not os.path.join: 100,000 of them cost a quarter second
        try:  # link, then unlink: a rename would replace an archived file
            os.link(f.path, target, follow_symlinks=False)
            os.unlink(f.path)
            return
        except FileExistsError:
            pass
        except PermissionError:  # another user's file (fs.protected_hardlinks): the careful way
            try:
                _move_no_replace(f.path, target)
                return
            except FileExistsError:
                pass
        with open(f.path, "rb") as fh:
            body = fh.read()
        if not _same_bytes(os.path.join(target_dir, f.name), body):
            try:
                _move_no_replace(f.path, os.path.join(target_dir, content_variant_name(f.name, content_hash(body))))
                return
            except FileExistsError:
                pass  # that very body is archived under its variant name
        os.unlink(f.path)

    def rename_to_content_variant(self, f: SpoolFile, digest: str) -> SpoolFile | None:
        """Rename a pending file to its content_variant_name (its name is taken by another body that
        was loaded); None when that body is already pending under the variant name."""
        variant = content_variant_name(f.name, digest)
        target = os.path.join(os.path.dirname(f.path), variant)
        try:
            _move_no_replace(f.path, target)
        except FileExistsError:
            with open(f.path, "rb") as fh:
                if not _same_bytes(target, fh.read()):
                    raise
            os.unlink(f.path)
            return None
        st = os.stat(target)
        return SpoolFile(f.dataset, variant, target, st.st_size, st.st_mtime)

    def quarantine_file(self, f: SpoolFile, reason: str) -> Path:
        """Move an incoming file to quarantine/<dataset>/ with `<file>.error` written first."""
        return self._quarantine_entry(f.path, f.dataset, f.name, reason)

    def _quarantine_entry(self, src: str, dataset: str, name: str, reason: str) -> Path:
        """Move `src` into quarantine/<dataset>/ beside its reason; never over an earlier entry: a
        taken name gets `+2`, `+3`, ... A dataset that cannot name a folder goes to `_invalid`."""
        target_dir = self.quarantine / (dataset if is_safe_component(dataset) else INVALID_FOLDER)
        target_dir.mkdir(parents=True, exist_ok=True)
        base = _quarantine_name(name)
        for n in itertools.count(1):
            target = target_dir / (base if n == 1 else f"{base[:190]}+{n}")
            error_path = target.with_name(target.name + ERROR_SUFFIX)
            if not self._write_error(error_path, reason):
                continue  # the name is taken (or an earlier reason was left behind)
            try:
                _move_no_replace(src, str(target))
            except FileExistsError:
                error_path.unlink()
                continue
            except BaseException:
                error_path.unlink()
                raise
            return target
        raise AssertionError("unreachable")

    @staticmethod
    def _write_error(error_path: Path, reason: str) -> bool:
        """Write a reason file unless one exists (O_EXCL reserves the name); False if it exists."""
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            fd = os.open(error_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{stamp} {reason.strip()}\n")
        return True

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

    def prune_archive(self, keep_days: int, today: dt.date | None = None) -> PruneResult:
        """Delete archive day folders older than `keep_days` (their files are loaded).

        Only plain files are deleted. Links are never followed (folders are opened with O_NOFOLLOW and
        files removed relative to them); links, subdirectories and anything unreadable are left
        alone and reported, and pruning goes on with the rest."""
        today = today or dt.datetime.now(dt.timezone.utc).date()
        removed, skipped = 0, []
        for ds in self._scandir(self.archive):
            rel = f"archive/{ds.name}"
            try:
                ds_fd = os.open(ds.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError as exc:
                skipped.append(SpoolProblem(rel, f"{_kind(ds)} left alone: {exc.strerror or exc}"))
                continue
            try:
                for day in list(os.scandir(ds_fd)):
                    try:
                        age = (today - dt.date.fromisoformat(day.name)).days
                    except ValueError:
                        continue  # not a day folder: not ours to delete
                    if age > keep_days:
                        day_removed, day_skipped = _prune_day(ds_fd, day.name, f"{rel}/{day.name}")
                        removed += day_removed
                        skipped += day_skipped
            finally:
                os.close(ds_fd)
        return PruneResult(removed, skipped)

    @contextmanager
    def exclusive(self, name: str, *, blocking: bool = True, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """A process-wide lock file in the spool root (one loader at a time). Waits at most `timeout_s`
        (nothing waits forever: a holder that hangs is reported, with its PID, not waited on)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + (timeout_s if blocking else 0.0)
            delay = 0.05
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = _read_holder(path)
                        raise SpoolLocked(
                            f"{path} is held by another process{f' (PID {holder})' if holder else ''}"
                            + (f" for more than {timeout_s:.0f}s" if blocking else "")
                        ) from exc
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, 1.0)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the message above
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _scandir(path: Path) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(path))
        except FileNotFoundError:
            return []


def _prune_day(ds_fd: int, day: str, rel: str) -> tuple[int, list[SpoolProblem]]:
    """Delete the plain files of one day folder, then the folder if nothing else was in it."""
    try:
        fd = os.open(day, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=ds_fd)
    except OSError as exc:
        return 0, [SpoolProblem(rel, f"not a folder that can be opened, left alone: {exc.strerror or exc}")]
    removed, skipped = 0, []
    try:
        for f in list(os.scandir(fd)):
            if not f.is_file(follow_symlinks=False):
                skipped.append(SpoolProblem(f"{rel}/{f.name}", f"{_kind(f)}, not a plain file: left alone"))
                continue
            try:
                os.unlink(f.name, dir_fd=fd)
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                skipped.append(SpoolProblem(f"{rel}/{f.name}", f"cannot delete: {exc.strerror or exc}"))
    finally:
        os.close(fd)
    if not skipped:
        try:
            os.rmdir(day, dir_fd=ds_fd)
        except OSError as exc:
            skipped.append(SpoolProblem(rel, f"folder kept: {exc.strerror or exc}"))
    return removed, skipped



def _read_holder(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None


class SpoolLocked(RuntimeError):
    pass
