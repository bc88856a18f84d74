"""spool: atomic, idempotent writes and the incoming → archive | quarantine moves, on real files."""

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time

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
