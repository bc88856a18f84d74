"""health: the verdicts behind the freshness and quarantine asset checks."""

import datetime as dt

import pytest

from iris_pipeline.health import DEFAULT_MAX_LAG_S, dataset_freshness, quarantine_verdict
from iris_pipeline.registry import load_registry
from iris_pipeline.warehouse.base import TableFreshness

NOW = dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.timezone.utc)  # inside the repeated BST → GMT hour


@pytest.fixture(scope="module")
def fuelinst():
    ds = load_registry()["FUELINST"]
    assert ds.cadence_seconds == 300  # the quiet-feed limits below are cadence + 5 min = 10 min
    return ds


def loaded(seconds_ago, rows=100, reference=None):
    last = None if seconds_ago is None else NOW - dt.timedelta(seconds=seconds_ago)
    return TableFreshness(last, reference, rows if last else 0)


def backlog(oldest_seconds_ago, files=3):
    oldest = NOW.timestamp() - oldest_seconds_ago
    return {"files": files, "bytes": 1234, "oldest_mtime": oldest, "newest_mtime": NOW.timestamp() - 1}


def test_default_limit_is_five_minutes():
    assert DEFAULT_MAX_LAG_S == 300


def test_error_when_the_oldest_pending_file_is_older_than_five_minutes(fuelinst):
    verdict = dataset_freshness(fuelinst, backlog(301, files=3), loaded(10), NOW)
    assert (verdict.passed, verdict.severity) == (False, "ERROR")
    assert "3 file(s) waiting" in verdict.description
    assert "5.0 min" in verdict.description
    assert verdict.metadata["pending_files"] == 3
    assert verdict.metadata["backlog_age_seconds"] == 301.0


def test_backlog_wins_over_a_table_never_loaded(fuelinst):
    verdict = dataset_freshness(fuelinst, backlog(3600, files=1), loaded(None), NOW)
    assert (verdict.passed, verdict.severity) == (False, "ERROR")
    assert verdict.metadata["seconds_since_last_load"] is None


def test_pass_when_loaded_recently_with_no_backlog(fuelinst):
    reference = NOW - dt.timedelta(minutes=5)
    verdict = dataset_freshness(fuelinst, None, loaded(30, rows=5760, reference=reference), NOW)
    assert verdict.passed is True
    assert "up to date" in verdict.description
    assert verdict.metadata == {
        "pending_files": 0,
        "backlog_age_seconds": 0.0,
        "seconds_since_last_load": 30.0,
        "latest_reference_time": reference.isoformat(),
        "rows": 5760,
        "max_lag_seconds": 300,
        "expected_cadence_seconds": 300,
    }


def test_pass_with_a_young_backlog(fuelinst):
    verdict = dataset_freshness(fuelinst, backlog(299), loaded(60), NOW)
    assert verdict.passed is True
    assert verdict.metadata["pending_files"] == 3


def test_a_future_mtime_is_not_a_negative_backlog(fuelinst):
    verdict = dataset_freshness(fuelinst, backlog(-120), loaded(5), NOW)
    assert verdict.passed is True
    assert verdict.metadata["backlog_age_seconds"] == 0.0


def test_warn_when_never_loaded(fuelinst):
    verdict = dataset_freshness(fuelinst, None, loaded(None), NOW)
    assert (verdict.passed, verdict.severity) == (False, "WARN")
    assert verdict.description == "no data loaded yet"
    assert verdict.metadata["rows"] == 0


def test_warn_when_quiet_longer_than_cadence_plus_five_minutes(fuelinst):
    verdict = dataset_freshness(fuelinst, None, loaded(601), NOW)
    assert (verdict.passed, verdict.severity) == (False, "WARN")
    assert "no new data for 10.0 min" in verdict.description
    assert "FUELINST normally arrives every 5 min" in verdict.description


def test_quiet_within_cadence_plus_five_minutes_passes(fuelinst):
    assert dataset_freshness(fuelinst, None, loaded(599), NOW).passed is True


def test_quiet_limit_follows_the_dataset_cadence():
    remit = load_registry()["REMIT"]
    assert remit.cadence_seconds == 3600
    assert dataset_freshness(remit, None, loaded(3600 + 299), NOW).passed is True
    verdict = dataset_freshness(remit, None, loaded(3600 + 301), NOW)
    assert (verdict.passed, verdict.severity) == (False, "WARN")


def test_an_event_driven_dataset_is_never_called_quiet_but_its_backlog_still_fails():
    sys_warn = load_registry()["SYS_WARN"]  # silent for weeks when the system is fine
    assert dataset_freshness(sys_warn, None, loaded(30 * 86400), NOW).passed is True
    assert dataset_freshness(sys_warn, backlog(301), loaded(30 * 86400), NOW).severity == "ERROR"
    assert dataset_freshness(sys_warn, backlog(301), loaded(30 * 86400), NOW).passed is False


def test_custom_max_lag(fuelinst):
    assert dataset_freshness(fuelinst, backlog(61), loaded(1), NOW, max_lag_s=60).severity == "ERROR"
    assert dataset_freshness(fuelinst, backlog(61), loaded(1), NOW, max_lag_s=60).passed is False
    assert dataset_freshness(fuelinst, backlog(61), loaded(1), NOW, max_lag_s=120).passed is True
    quiet = dataset_freshness(fuelinst, None, loaded(361), NOW, max_lag_s=60)
    assert (quiet.passed, quiet.severity) == (False, "WARN")


def test_unregistered_dataset_uses_the_default_cadence():
    ds = load_registry().unregistered("NEWCODE")
    assert dataset_freshness(ds, None, loaded(3600 + 299), NOW).passed is True
    assert dataset_freshness(ds, None, loaded(3600 + 301), NOW).passed is False


def test_quarantine_empty_passes():
    verdict = quarantine_verdict("BOALF", 0)
    assert verdict.passed is True
    assert verdict.metadata == {"quarantined_files": 0}


def test_quarantine_with_files_warns():
    verdict = quarantine_verdict("BOALF", 2)
    assert (verdict.passed, verdict.severity) == (False, "WARN")
    assert "2 BOALF file(s) in quarantine" in verdict.description
    assert ".error" in verdict.description
    assert verdict.metadata == {"quarantined_files": 2}
