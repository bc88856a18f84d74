"""The client-health asset check, fed by the IRIS client's status file."""

import datetime as dt
import json

import dagster as dg


def _client_check(spool_root, monkeypatch, **env):
    from iris_pipeline.definitions import build_definitions

    for key in ("IRIS_CONNECTION_STRING", "IRIS_CLIENT_SECRET"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    job = build_definitions().resolve_job_def("iris_health")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "client_health"]
    return check


def _status(spool_root, **fields):
    now = dt.datetime.now(dt.timezone.utc)
    status = {"pid": 1, "started_at": now.isoformat(), "updated_at": now.isoformat(), "connected": True,
              "last_message_at": now.isoformat(), "received": 10, "completed": 10} | fields
    spool_root.mkdir(parents=True, exist_ok=True)
    (spool_root / "client_status.json").write_text(json.dumps(status))


def test_healthy_client_passes(pipeline_env, spool, monkeypatch):
    _status(spool.root)
    check = _client_check(spool.root, monkeypatch, IRIS_CLIENT_SECRET="configured")
    assert check.passed, check.description


def test_stale_status_fails_as_an_error(pipeline_env, spool, monkeypatch):
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)).isoformat()
    _status(spool.root, updated_at=old, last_message_at=old)
    check = _client_check(spool.root, monkeypatch, IRIS_CLIENT_SECRET="configured")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "client down" in check.description


def test_no_client_and_no_credentials_is_a_warning(pipeline_env, spool, monkeypatch):
    check = _client_check(spool.root, monkeypatch)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "simulator" in check.description


def test_secret_expiring_soon_warns(pipeline_env, spool, monkeypatch):
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    _status(spool.root, secret_expires=soon)
    check = _client_check(spool.root, monkeypatch, IRIS_CLIENT_SECRET="configured")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "expires" in check.description
