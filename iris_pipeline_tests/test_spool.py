"""spool: atomic, idempotent writes and the incoming → archive | quarantine moves, on real files."""

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from iris_pipeline.spool import (
    InvalidName,
    PruneResult,
    Spool,
    SpoolFile,
    SpoolLocked,
    SpoolProblem,
    content_hash,
    content_variant_name,
    is_safe_component,
    safe_file_name,
)
from iris_pipeline_tests.unprivileged import run_without_permission_bypass, unreadable

DS = "BOALF"


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


def put(spool, name, body=b"[]", mtime=None, dataset=DS):
    assert spool.write_incoming(dataset, name, body, durable=False)
    if mtime is not None:
        os.utime(spool.incoming / dataset / name, (mtime, mtime))


# --- write_incoming ---------------------------------------------------------------------------------

def test_write_incoming_places_the_body_and_leaves_no_temporary_file(spool):
    body = b'[{"bmUnit": "T_ABC-1"}]'
    assert spool.write_incoming(DS, "BOALF_1.json", body) is True
    target = spool.incoming / DS / "BOALF_1.json"
    assert target.read_bytes() == body
    assert os.stat(target).st_nlink == 1  # the tmp/ link is gone
    assert list(spool.tmp.iterdir()) == []
    assert files_under(spool.root) == ["incoming/BOALF/BOALF_1.json"]


def test_reader_never_sees_a_partial_file(spool):
    """A watcher polling incoming/ while a large body is written only ever sees the complete file."""
    body = os.urandom(1024) * (24 * 1024)  # 24 MiB: the write takes long enough to be observed
    target = spool.incoming / DS / "big.json"
    seen_sizes = []
    stop = threading.Event()
    (spool.incoming / DS).mkdir(parents=True)

    def watch():
        while not stop.is_set():
            try:
                seen_sizes.append(os.stat(target).st_size)
            except FileNotFoundError:
                seen_sizes.append(None)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        while not seen_sizes:
            time.sleep(0.001)
        polls_before = len(seen_sizes)
        assert spool.write_incoming(DS, "big.json", body, durable=False)
        polls_during = len(seen_sizes) - polls_before
        deadline = time.monotonic() + 5
        while seen_sizes[-1] is None and time.monotonic() < deadline:  # let the watcher see the result
            time.sleep(0.001)
    finally:
        stop.set()
        watcher.join()
    assert polls_during > 5, "the watcher must have polled while the write was in progress"
    assert {s for s in seen_sizes if s is not None} == {len(body)}
    assert seen_sizes[0] is None and seen_sizes[-1] == len(body)
    assert target.read_bytes() == body
    assert list(spool.tmp.iterdir()) == []


def test_write_is_idempotent_and_never_overwrites(spool):
    assert spool.write_incoming(DS, "f.json", b"[1]") is True
    before = os.stat(spool.incoming / DS / "f.json")
    assert spool.write_incoming(DS, "f.json", b"[1]") is False  # a redelivery
    assert spool.write_incoming(DS, "f.json", b"[2, 'different']") is True  # another message: kept aside
    assert (spool.incoming / DS / "f.json").read_bytes() == b"[1]"
    after = os.stat(spool.incoming / DS / "f.json")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list(spool.tmp.iterdir()) == []


def test_write_refuses_a_name_already_archived(spool):
    put(spool, "f.json", b"[1]")
    spool.archive_files(spool.pending(DS), day=dt.date(2024, 1, 2))
    assert spool.is_archived(DS, "f.json")
    assert spool.write_incoming(DS, "f.json", b"[1]") is False
    assert not (spool.incoming / DS / "f.json").exists()
    assert spool.pending(DS) == []
    # The same name under another dataset is a different file.
    assert spool.write_incoming("BOD", "f.json", b"[1]") is True


def test_same_name_in_two_datasets_are_two_files(spool):
    assert spool.write_incoming("BOD", "x.json", b"[1]")
    assert spool.write_incoming("PN", "x.json", b"[2]")
    assert (spool.incoming / "BOD" / "x.json").read_bytes() == b"[1]"
    assert (spool.incoming / "PN" / "x.json").read_bytes() == b"[2]"


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", ".hidden", "", "/etc/passwd", "/tmp", "x.error", "..", ".", "a\\b", "abc\n", "a\x00b",
     "a b", "-rf", "x" * 201],
)
def test_invalid_file_names_are_refused(spool, name):
    with pytest.raises(InvalidName):
        spool.write_incoming(DS, name, b"[]")
    assert files_under(spool.root) == []


@pytest.mark.parametrize("dataset", ["../BOALF", "", ".", "..", "a/b", "/abs", "BOALF\n", "BO ALF"])
def test_invalid_dataset_names_are_refused(spool, dataset):
    with pytest.raises(InvalidName):
        spool.write_incoming(dataset, "f.json", b"[]")
    assert files_under(spool.root) == []


def test_is_safe_component():
    assert is_safe_component("ABUC_202311140741_NGET-EMFIP-ABUC-00689167-1.json")
    assert is_safe_component("mibm_mid")
    assert is_safe_component("a+b=c@d.json")
    assert not is_safe_component("x.error")
    assert not is_safe_component("x.json\n")


# --- safe_file_name ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "untrusted, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/f.json", "f.json"),
        ("ABUC_202311140741_NGET-EMFIP-ABUC-00689167-1.json", "ABUC_202311140741_NGET-EMFIP-ABUC-00689167-1.json"),
        ("a b?c*.json", "a_b_c_.json"),
        ("..hidden", "hidden"),
        ("x.error", "x.error_"),
        ("name\n", "name_"),
    ],
)
def test_safe_file_name_sanitises(untrusted, expected):
    assert safe_file_name(untrusted) == expected


def test_sanitised_traversal_stays_inside_the_spool(spool):
    name = safe_file_name("../../etc/passwd")
    assert spool.write_incoming(DS, name, b"[]", durable=False)
    assert files_under(spool.root) == ["incoming/BOALF/passwd"]


@pytest.mark.parametrize("untrusted", ["", "...", "../..", "/", "\\", "...///", "\n", "---", "dir/"])
def test_safe_file_name_raises_when_nothing_usable(untrusted):
    with pytest.raises(InvalidName):
        safe_file_name(untrusted)


def test_safe_file_name_truncates_long_names():
    name = safe_file_name("a" * 500)
    assert len(name) == 200 and is_safe_component(name)


# --- reading --------------------------------------------------------------------------------------

def test_pending_lists_oldest_first_and_ignores_directories(spool):
    now = time.time()
    put(spool, "c.json", mtime=now - 10)
    put(spool, "a.json", mtime=now - 30)
    put(spool, "b.json", mtime=now - 20)
    put(spool, "d.json", mtime=now - 20)  # same mtime as b: name breaks the tie
    (spool.incoming / DS / "subdir").mkdir()
    (spool.incoming / DS / "subdir" / "inner.json").write_bytes(b"[]")
    pending = spool.pending(DS)
    assert [f.name for f in pending] == ["a.json", "b.json", "d.json", "c.json"]
    assert all(isinstance(f, SpoolFile) and f.dataset == DS and f.size == 2 for f in pending)
    assert pending[0].path == str(spool.incoming / DS / "a.json")
    assert pending[0].mtime == pytest.approx(now - 30, abs=1e-3)
    assert [f.name for f in spool.pending(DS, limit=2)] == ["a.json", "b.json"]


def test_pending_of_an_unknown_dataset_is_empty(spool):
    assert spool.pending("NOPE") == []
    assert spool.datasets_pending() == []
    assert spool.stats() == {}


def test_datasets_pending(spool):
    put(spool, "a.json", dataset="FREQ")
    put(spool, "a.json", dataset="BOALF")
    (spool.incoming / "EMPTY").mkdir()
    (spool.incoming / "ONLY_DIR" / "sub").mkdir(parents=True)
    assert spool.datasets_pending() == ["BOALF", "FREQ"]


def test_stats(spool):
    put(spool, "a.json", b"12345", mtime=1_000_000.0)
    put(spool, "b.json", b"123", mtime=1_000_050.0)
    put(spool, "c.json", b"1", mtime=1_000_020.0, dataset="FREQ")
    (spool.incoming / "EMPTY").mkdir()
    assert spool.stats() == {
        "BOALF": {"files": 2, "bytes": 8, "oldest_mtime": 1_000_000.0, "newest_mtime": 1_000_050.0},
        "FREQ": {"files": 1, "bytes": 1, "oldest_mtime": 1_000_020.0, "newest_mtime": 1_000_020.0},
    }


def test_stats_agrees_with_pending_about_directories(spool):
    """A stray directory is not a pending file: counting it would report a backlog nothing can drain."""
    put(spool, "a.json", b"12", mtime=1_000_000.0)
    sub = spool.incoming / DS / "moved_back_by_hand"
    sub.mkdir()
    os.utime(sub, (1.0, 1.0))
    (spool.incoming / "FREQ" / "sub").mkdir(parents=True)
    assert spool.stats() == {DS: {"files": 1, "bytes": 2, "oldest_mtime": 1_000_000.0, "newest_mtime": 1_000_000.0}}
    assert sum(s["files"] for s in spool.stats().values()) == len(spool.pending(DS))


def test_stats_and_pending_tolerate_files_moved_while_listing(spool):
    """The sensor lists the spool while a run archives files: a vanished file is not an error."""
    names = [f"f{i:04d}.json" for i in range(300)]
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            for n in names:
                spool.write_incoming(DS, n, b"[]", durable=False)
            for n in names:
                os.unlink(spool.incoming / DS / n)

    for n in names:
        put(spool, n)
    worker = threading.Thread(target=churn)
    worker.start()
    try:
        deadline = time.monotonic() + 0.5
        calls = 0
        while time.monotonic() < deadline:
            stats = spool.stats()
            assert set(stats) <= {DS}
            assert len(spool.pending(DS)) <= len(names)
            calls += 1
    finally:
        stop.set()
        worker.join()
    assert calls > 10


# --- archive and quarantine ------------------------------------------------------------------------

def test_archive_files_moves_to_dataset_and_day(spool):
    put(spool, "a.json", b"[1]")
    put(spool, "b.json", b"[2]")
    put(spool, "c.json", b"[3]", dataset="FREQ")
    files = spool.pending(DS) + spool.pending("FREQ")
    spool.archive_files(files, day=dt.date(2024, 3, 31))
    assert files_under(spool.root) == [
        "archive/BOALF/2024-03-31/a.json",
        "archive/BOALF/2024-03-31/b.json",
        "archive/FREQ/2024-03-31/c.json",
    ]
    assert (spool.archive / DS / "2024-03-31" / "b.json").read_bytes() == b"[2]"
    assert spool.pending(DS) == [] and spool.stats() == {}
    assert spool.is_archived(DS, "a.json") and not spool.is_archived(DS, "zzz.json")


def test_archive_files_defaults_to_today_utc(spool):
    put(spool, "a.json")
    before = dt.datetime.now(dt.timezone.utc).date()
    spool.archive_files(spool.pending(DS))
    after = dt.datetime.now(dt.timezone.utc).date()
    days = os.listdir(spool.archive / DS)
    assert days in ([before.isoformat()], [after.isoformat()])


def test_archive_files_tolerates_already_moved_files(spool):
    put(spool, "a.json", b"[1]")
    put(spool, "b.json", b"[2]")
    files = spool.pending(DS)
    spool.archive_files(files[:1], day=dt.date(2024, 1, 1))
    spool.archive_files(files, day=dt.date(2024, 1, 1))  # a rerun after an interrupted archive
    assert files_under(spool.archive) == ["BOALF/2024-01-01/a.json", "BOALF/2024-01-01/b.json"]
    assert (spool.archive / DS / "2024-01-01" / "a.json").read_bytes() == b"[1]"


def test_quarantine_file_moves_it_with_its_reason(spool):
    put(spool, "bad.json", b"{not json")
    put(spool, "good.json", b"[]")
    (bad,) = [f for f in spool.pending(DS) if f.name == "bad.json"]
    target = spool.quarantine_file(bad, "body is malformed or truncated JSON: line 1\n")
    assert target == spool.quarantine / DS / "bad.json"
    assert target.read_bytes() == b"{not json"
    reason = (spool.quarantine / DS / "bad.json.error").read_text(encoding="utf-8")
    stamp, text = reason.split(" ", 1)
    assert text == "body is malformed or truncated JSON: line 1\n"
    assert dt.datetime.fromisoformat(stamp).tzinfo is not None
    assert [f.name for f in spool.pending(DS)] == ["good.json"]
    assert spool.quarantined(DS) == [target]
    assert spool.quarantined() == [target]
    assert spool.quarantined("FREQ") == []


def test_quarantine_file_of_a_vanished_file_raises_file_not_found(spool):
    put(spool, "a.json")
    (f,) = spool.pending(DS)
    os.unlink(f.path)
    with pytest.raises(FileNotFoundError):
        spool.quarantine_file(f, "reason")
    assert spool.quarantined() == []


def test_quarantine_bytes(spool):
    target = spool.quarantine_bytes(DS, "../../m.json", b"\xff\xfe", "UndecodableBody: not UTF-8")
    assert target == spool.quarantine / DS / "m.json"
    assert target.read_bytes() == b"\xff\xfe"
    assert (spool.quarantine / DS / "m.json.error").read_text().endswith(" UndecodableBody: not UTF-8\n")
    assert list(spool.tmp.iterdir()) == []
    assert spool.quarantined(DS) == [target]


def test_quarantine_bytes_with_an_invalid_dataset_uses_a_separate_folder(spool):
    target = spool.quarantine_bytes("../etc", "m.json", b"[]", "InvalidDataset")
    assert target == spool.quarantine / "_invalid" / "m.json"
    assert files_under(spool.root) == ["quarantine/_invalid/m.json", "quarantine/_invalid/m.json.error"]


def test_quarantine_bytes_with_no_usable_name_raises(spool):
    with pytest.raises(InvalidName):
        spool.quarantine_bytes(DS, "../..", b"[]", "reason")


def test_prune_archive_removes_only_days_older_than_retention(spool):
    today = dt.date(2024, 4, 10)
    for days_ago in (0, 6, 7, 8, 30):
        day = today - dt.timedelta(days=days_ago)
        for name in ("a.json", "b.json"):
            p = spool.archive / DS / day.isoformat() / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"[]")
    (spool.archive / "FREQ" / "2020-01-01").mkdir(parents=True)
    (spool.archive / "FREQ" / "2020-01-01" / "x.json").write_bytes(b"[]")
    (spool.archive / DS / "not-a-date").mkdir()
    (spool.archive / DS / "not-a-date" / "keep.json").write_bytes(b"[]")
    put(spool, "pending.json", dataset="FREQ")

    assert spool.prune_archive(keep_days=7, today=today).removed == 5
    assert sorted(os.listdir(spool.archive / DS)) == ["2024-04-03", "2024-04-04", "2024-04-10", "not-a-date"]
    assert os.listdir(spool.archive / "FREQ") == []
    assert [f.name for f in spool.pending("FREQ")] == ["pending.json"]
    assert spool.prune_archive(keep_days=7, today=today).removed == 0


def test_prune_archive_on_an_empty_spool(spool):
    assert spool.prune_archive(keep_days=1) == PruneResult(0, [])


# --- exclusive lock -----------------------------------------------------------------------------------

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from iris_pipeline.spool import Spool
    with Spool(sys.argv[1]).exclusive("ingest.lock"):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_exclusive_lock_is_held_across_processes(spool):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(spool.root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SpoolLocked):
            with spool.exclusive("ingest.lock", blocking=False):
                pytest.fail("acquired a lock another process holds")
        # Another lock name is independent.
        with spool.exclusive("client.lock", blocking=False):
            pass
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=10) == 0
    with spool.exclusive("ingest.lock", blocking=False):  # released when the holder let go
        entered = True
    assert entered


def test_exclusive_lock_is_released_on_error(spool):
    with pytest.raises(RuntimeError):
        with spool.exclusive("ingest.lock", blocking=False):
            raise RuntimeError("boom")
    with spool.exclusive("ingest.lock", blocking=False):
        entered = True
    assert entered


def test_remove_stale_tmp_keeps_writes_in_progress(tmp_path):
    import os
    import time

    from iris_pipeline.spool import Spool

    spool = Spool(tmp_path / "spool")
    spool.tmp.mkdir(parents=True)
    stale, fresh = spool.tmp / "dead.part", spool.tmp / "writing.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert spool.remove_stale_tmp(older_than_s=3600) == 1
    assert not stale.exists() and fresh.exists()


# --- same name, different content (issue 6, item 7) ----------------------------------------------------

def test_a_different_body_under_a_taken_name_is_kept_under_its_content_variant_name(spool):
    assert spool.write_incoming(DS, "f.json", b"[1]")
    assert spool.write_incoming(DS, "f.json", b"[2]") is True
    variant = content_variant_name("f.json", content_hash(b"[2]"))
    assert variant == f"f+{content_hash(b'[2]')[:16]}.json" and is_safe_component(variant)
    assert (spool.incoming / DS / "f.json").read_bytes() == b"[1]"
    assert (spool.incoming / DS / variant).read_bytes() == b"[2]"
    # Redeliveries of either body are recognised; a third body gets its own name.
    assert spool.write_incoming(DS, "f.json", b"[2]") is False
    assert spool.write_incoming(DS, "f.json", b"[1]") is False
    assert spool.write_incoming(DS, "f.json", b"[3]") is True
    assert sorted(f.name for f in spool.pending(DS)) == sorted(
        ["f.json", variant, content_variant_name("f.json", content_hash(b"[3]"))]
    )
    assert list(spool.tmp.iterdir()) == []


def test_a_different_body_after_the_first_was_archived_is_kept(spool):
    put(spool, "f.json", b"[1]")
    spool.archive_files(spool.pending(DS), day=dt.date(2024, 1, 2))
    assert spool.write_incoming(DS, "f.json", b"[1]") is False
    assert spool.write_incoming(DS, "f.json", b"[9]") is True
    (kept,) = spool.pending(DS)
    assert kept.name == content_variant_name("f.json", content_hash(b"[9]"))
    assert open(kept.path, "rb").read() == b"[9]"


def test_a_fifo_under_the_name_neither_blocks_the_writer_nor_hides_the_message(spool):
    (spool.incoming / DS).mkdir(parents=True)
    os.mkfifo(spool.incoming / DS / "f.json")
    result = []
    writer = threading.Thread(target=lambda: result.append(spool.write_incoming(DS, "f.json", b"[1]")), daemon=True)
    writer.start()
    writer.join(timeout=10)
    assert result == [True], "write_incoming blocked on a FIFO or dropped the message"
    assert [f.name for f in spool.pending(DS)] == [content_variant_name("f.json", content_hash(b"[1]"))]


@pytest.mark.parametrize("name", ["x" * 200, "y" * 190 + ".json", "noext", "a.b.c.json"])
def test_content_variant_names_stay_safe_and_distinct(name):
    a, b = content_variant_name(name, content_hash(b"a")), content_variant_name(name, content_hash(b"b"))
    assert is_safe_component(a) and is_safe_component(b) and a != b and name not in (a, b)


def test_archiving_never_replaces_a_different_archived_body(spool):
    day = dt.date(2024, 1, 2)
    put(spool, "f.json", b"[1]")
    spool.archive_files(spool.pending(DS), day=day)
    (spool.incoming / DS / "f.json").write_bytes(b"[2]")  # placed by another tool, bypassing write_incoming
    spool.archive_files(spool.pending(DS), day=day)
    archived = spool.archive / DS / day.isoformat()
    assert (archived / "f.json").read_bytes() == b"[1]"
    assert (archived / content_variant_name("f.json", content_hash(b"[2]"))).read_bytes() == b"[2]"
    # The same body again: the archived copy already holds it, the incoming one goes.
    (spool.incoming / DS / "f.json").write_bytes(b"[1]")
    spool.archive_files(spool.pending(DS), day=day)
    assert spool.pending(DS) == [] and len(os.listdir(archived)) == 2


def test_quarantine_never_overwrites(spool):
    put(spool, "bad.json", b"{first")
    first = spool.quarantine_file(spool.pending(DS)[0], "first reason")
    put(spool, "bad.json", b"{second")
    second = spool.quarantine_file(spool.pending(DS)[0], "second reason")
    third = spool.quarantine_bytes(DS, "bad.json", b"{third", "third reason")
    assert len({first, second, third}) == 3
    assert [p.read_bytes() for p in (first, second, third)] == [b"{first", b"{second", b"{third"]
    reasons = [p.with_name(p.name + ".error").read_text().split(" ", 1)[1] for p in (first, second, third)]
    assert reasons == ["first reason\n", "second reason\n", "third reason\n"]
    assert spool.quarantined(DS) == sorted([first, second, third])
    assert list(spool.tmp.iterdir()) == []


def test_quarantine_does_not_reuse_a_name_whose_reason_was_left_behind(spool):
    (spool.quarantine / DS).mkdir(parents=True)
    (spool.quarantine / DS / "x.json.error").write_text("an older reason\n")
    target = spool.quarantine_bytes(DS, "x.json", b"[]", "new reason")
    assert target.name != "x.json"
    assert (spool.quarantine / DS / "x.json.error").read_text() == "an older reason\n"


# --- validation before any path is built (issue 6, item 13) --------------------------------------------

@pytest.mark.parametrize("dataset", ["../../x", "..", ".", "", "a/b"])
def test_reading_methods_refuse_a_dataset_that_is_not_one_path_component(spool, dataset):
    outside = spool.root.parent / "x"
    outside.mkdir()
    (outside / "f.json").write_bytes(b"[]")
    put(spool, "f.json")
    with pytest.raises(InvalidName):
        spool.pending(dataset)
    with pytest.raises(InvalidName):
        spool.quarantined(dataset)
    with pytest.raises(InvalidName):
        spool.is_archived(dataset, "f.json")


def test_quarantine_file_of_an_unsafe_dataset_name_stays_in_quarantine(spool):
    """An operator's `incoming/my data/` is read as it is on disk; its quarantine folder is `_invalid`."""
    (spool.incoming / "my data").mkdir(parents=True)
    (spool.incoming / "my data" / "f.json").write_bytes(b"[]")
    (f,) = spool.pending("my data")
    target = spool.quarantine_file(f, "invalid dataset code")
    assert target == spool.quarantine / "_invalid" / "f.json"


def test_a_new_dataset_directory_is_fsynced_in_its_parent(spool, monkeypatch):
    """A power cut cannot be simulated here, so the fsync calls themselves are observed."""
    import iris_pipeline.spool as spool_module

    synced = []
    real = spool_module._fsync_dir
    monkeypatch.setattr(spool_module, "_fsync_dir", lambda path: (synced.append(Path(path)), real(path)))
    assert spool.write_incoming(DS, "a.json", b"[]")
    assert {spool.incoming / DS, spool.incoming, spool.root} <= set(synced)
    synced.clear()
    assert spool.write_incoming(DS, "b.json", b"[]")
    assert synced == [spool.incoming / DS]  # the directory is not new: one fsync, as before
    synced.clear()
    assert spool.write_incoming("FREQ", "a.json", b"[]")
    assert synced == [spool.incoming / "FREQ", spool.incoming]


# --- prune_archive never follows links and keeps going (issue 6, item 9) -------------------------------

def _old_day(spool, dataset, day="2020-01-01"):
    path = spool.archive / dataset / day
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_prune_archive_never_follows_links(spool, tmp_path):
    outside = tmp_path / "outside"
    (outside / "2020-01-01").mkdir(parents=True)
    for victim in (outside / "victim.json", outside / "2020-01-01" / "victim.json"):
        victim.write_bytes(b"keep me")
    (spool.archive / "BOALF").mkdir(parents=True)
    os.symlink(outside, spool.archive / "BOALF" / "2020-01-02")  # a day folder that is a link
    os.symlink(outside, spool.archive / "FREQ")  # a dataset folder that is a link
    day = _old_day(spool, "BOD")
    os.symlink(outside / "victim.json", day / "link.json")  # a link inside a day folder
    (day / "loaded.json").write_bytes(b"[]")

    result = spool.prune_archive(keep_days=7, today=dt.date(2024, 1, 1))

    assert (outside / "victim.json").read_bytes() == b"keep me"
    assert (outside / "2020-01-01" / "victim.json").read_bytes() == b"keep me"
    assert result.removed == 1 and not (day / "loaded.json").exists()
    assert os.path.islink(day / "link.json")
    assert {p.path for p in result.skipped} == {
        "archive/BOALF/2020-01-02", "archive/FREQ", "archive/BOD/2020-01-01/link.json"
    }


def test_prune_archive_goes_on_past_subdirectories_and_reports_them(spool):
    odd = _old_day(spool, "AAA")
    (odd / "nested" / "deeper").mkdir(parents=True)
    (odd / "nested" / "deeper" / "x.json").write_bytes(b"[]")
    (odd / "a.json").write_bytes(b"[]")
    for dataset in ("BOALF", "ZZZ"):
        for day in ("2020-01-01", "2020-01-02"):
            (_old_day(spool, dataset, day) / "f.json").write_bytes(b"[]")

    result = spool.prune_archive(keep_days=7, today=dt.date(2024, 1, 1))

    assert result.removed == 5
    assert files_under(spool.archive) == ["AAA/2020-01-01/nested/deeper/x.json"]
    assert result.skipped == [SpoolProblem("archive/AAA/2020-01-01/nested", "a directory, not a plain file: left alone")]
    # The next run reports it again rather than failing.
    assert spool.prune_archive(keep_days=7, today=dt.date(2024, 1, 1)).skipped == result.skipped


# --- entries of incoming/ that can never load (issue 6, item 5c) ---------------------------------------

def test_stray_entries_in_incoming_are_reported_then_quarantined_without_following_links(spool, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_bytes(b"outside the spool")
    put(spool, "good.json", b"[]")
    os.symlink(secret, spool.incoming / DS / "link.json")
    os.mkfifo(spool.incoming / DS / "pipe.json")
    (spool.incoming / DS / "sub").mkdir()
    (spool.incoming / DS / "sub" / "inner.json").write_bytes(b"[]")
    os.symlink(tmp_path, spool.incoming / "LINKED")  # a dataset "directory" that is a link
    (spool.incoming / "loose.json").write_bytes(b"[]")  # a file where dataset directories belong

    problems = {p.path: p.reason for p in spool.incoming_problems()}
    assert problems == {
        "incoming/BOALF/link.json": "a symbolic link, not a regular file: never loaded",
        "incoming/BOALF/pipe.json": "a FIFO, not a regular file: never loaded",
        "incoming/BOALF/sub": "a directory, not a regular file: never loaded",
        "incoming/LINKED": "a symbolic link where a dataset directory belongs",
        "incoming/loose.json": "a regular file where a dataset directory belongs",
    }
    moved = {p.path: p.quarantined_as for p in spool.quarantine_strays()}
    assert moved == {
        "incoming/BOALF/link.json": "quarantine/BOALF/link.json",
        "incoming/BOALF/pipe.json": "quarantine/BOALF/pipe.json",
        "incoming/BOALF/sub": "quarantine/BOALF/sub",
        "incoming/LINKED": "quarantine/_invalid/LINKED",
        "incoming/loose.json": "quarantine/_invalid/loose.json",
    }
    assert os.readlink(spool.quarantine / DS / "link.json") == str(secret)  # the link itself moved
    assert secret.read_bytes() == b"outside the spool"
    assert (spool.quarantine / DS / "sub" / "inner.json").exists()
    assert "FIFO" in (spool.quarantine / DS / "pipe.json.error").read_text()
    assert spool.incoming_problems() == [] and [f.name for f in spool.pending(DS)] == ["good.json"]
    assert spool.quarantine_inventory().total == 5


READ_SPOOL_SCRIPT = """
    import json, sys
    from iris_pipeline.spool import Spool
    spool = Spool(sys.argv[1])
    print(json.dumps({
        "stats": sorted(spool.stats()),
        "datasets_pending": spool.datasets_pending(),
        "problems": [[p.path, p.reason] for p in spool.incoming_problems()],
        "strays": [[p.path, p.quarantined_as] for p in spool.quarantine_strays()],
        "quarantined": [str(p) for p in spool.quarantined()],
        "quarantined_boalf": [str(p) for p in spool.quarantined("BOALF")],
        "quarantine_problems": [[p.path, p.reason] for p in spool.quarantine_inventory().problems],
    }))
"""


def test_an_unreadable_dataset_directory_is_reported_and_the_rest_still_read(spool):
    put(spool, "a.json", dataset="BOALF")
    put(spool, "b.json", dataset="FREQ")
    spool.quarantine_bytes("BOALF", "q.json", b"[]", "reason")

    with unreadable(spool.incoming / "FREQ", spool.quarantine / "BOALF"):
        seen = run_without_permission_bypass(READ_SPOOL_SCRIPT, str(spool.root))

    assert seen["stats"] == ["BOALF"] and seen["datasets_pending"] == ["BOALF"]
    assert seen["problems"] == [["incoming/FREQ", "cannot list the directory: Permission denied"]]
    assert seen["strays"] == [["incoming/FREQ", None]]  # left in place, reported
    assert seen["quarantined"] == [] and seen["quarantined_boalf"] == []
    assert seen["quarantine_problems"] == [["quarantine/BOALF", "cannot list the folder: Permission denied"]]


def test_a_file_where_a_quarantine_folder_belongs_does_not_break_listing(spool):
    target = spool.quarantine_bytes(DS, "x.json", b"[]", "reason")
    (spool.quarantine / "README").write_text("operator note")
    assert spool.quarantined() == [target]
    inventory = spool.quarantine_inventory()
    assert inventory.items == {DS: 1, ".": 1}
    assert inventory.problems == [SpoolProblem("quarantine/README", "a regular file outside any dataset folder")]


# --- everything in quarantine is counted (issue 6, item 8) ---------------------------------------------

def test_quarantine_inventory_counts_every_folder_and_notes_odd_entries(spool, tmp_path):
    spool.quarantine_bytes("../etc", "m.json", b"[]", "InvalidDataset")  # -> _invalid
    spool.quarantine_bytes("NEWCODE", "n.json", b"[]", "unregistered")
    spool.quarantine_bytes("1BAD", "o.json", b"[]", "invalid dataset code")
    spool.quarantine_bytes(DS, "p.json", b"[]", "bad JSON")
    os.symlink(tmp_path, spool.quarantine / DS / "link")  # placed by hand, no reason
    (spool.quarantine / DS / "gone.json.error").write_text("reason of a file since removed")

    inventory = spool.quarantine_inventory()

    assert inventory.items == {"_invalid": 1, "NEWCODE": 1, "1BAD": 1, DS: 2}
    assert inventory.total == 5
    assert sorted(str(p) for p in inventory.problems) == [
        "quarantine/BOALF/gone.json.error: a reason whose file is gone",
        "quarantine/BOALF/link: a symbolic link, not a regular file",
        "quarantine/BOALF/link: no .error file gives its reason",
    ]


def test_spool_quarantine_verdict(spool):
    from iris_pipeline import health

    clean = health.spool_quarantine_verdict(spool.quarantine_inventory(), spool.incoming_problems())
    assert clean.passed and clean.metadata["quarantined_entries"] == 0

    spool.quarantine_bytes("../x", "m.json", b"[]", "InvalidDataset")
    spool.quarantine_bytes("NEWCODE", "n.json", b"[]", "unregistered")
    (spool.incoming / "loose.json").parent.mkdir(parents=True)
    (spool.incoming / "loose.json").write_bytes(b"[]")
    verdict = health.spool_quarantine_verdict(spool.quarantine_inventory(), spool.incoming_problems())
    assert not verdict.passed and verdict.severity == "WARN"
    assert verdict.description.startswith("2 entries in quarantine (NEWCODE 1, _invalid 1); 1 problem(s), first:")
    assert "incoming/loose.json" in verdict.description
    assert verdict.metadata["by_folder"] == {"NEWCODE": 1, "_invalid": 1}
    assert verdict.metadata["first_problems"] == ["incoming/loose.json: a regular file where a dataset directory belongs"]


def test_the_ingest_lock_is_waited_for_within_a_bound_naming_its_holder(spool):
    """Nothing waits forever: a loader that hangs holding ingest.lock is reported, not waited on."""
    import subprocess
    import sys
    import textwrap
    import time

    from iris_pipeline.spool import SpoolLocked

    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from iris_pipeline.spool import Spool
            with Spool(sys.argv[1]).exclusive("ingest.lock"):
                print("held", flush=True)
                sys.stdin.readline()
        """), str(spool.root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(SpoolLocked, match=f"PID {holder.pid}.*more than 1s"):
            with spool.exclusive("ingest.lock", timeout_s=1.0):
                pass
        assert 1.0 <= time.monotonic() - started < 10
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        with spool.exclusive("ingest.lock", timeout_s=5.0):  # free again: taken at once
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
