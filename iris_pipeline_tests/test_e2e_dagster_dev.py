"""End to end, as `make dev` runs it: the simulator and a real `dagster dev`, rows arriving within a minute,
and the assets visible in the web UI (headless Chromium)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse
from iris_pipeline_tests.conftest import REPO, VENV_BIN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd, env, log):
    def reset_signals():  # a background `dagster dev` may inherit ignored SIGINT/SIGTERM here
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=reset_signals
    )


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _graphql(port, query):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def _materialized(port, key):
    data = _graphql(
        port,
        '{ assetOrError(assetKey: {path: ["%s"]}) { ... on Asset { assetMaterializations(limit: 1) { timestamp } } } }'
        % key,
    )
    return bool((data.get("assetOrError") or {}).get("assetMaterializations"))


@pytest.fixture
def dagster_dev(tmp_path, pipeline_env):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = pipeline_env | {"DAGSTER_HOME": str(home)}
    port = _free_port()
    log = open(tmp_path / "dev.log", "wb")
    feed = _start([str(VENV_BIN / "iris-pipeline"), "simulate", "--backfill-minutes", "10"], env, log)
    dev = _start([str(VENV_BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], env, log)
    try:
        yield port, tmp_path
    finally:
        _stop(feed)
        _stop(dev)
        log.close()


@pytest.mark.timeout(240)
def test_make_dev_shows_rows_arriving_within_a_minute(dagster_dev):
    port, tmp_path = dagster_dev
    started = time.monotonic()
    while not (_up(port) and _materialized(port, "bmrs_freq_iris")):
        assert time.monotonic() - started < 120, (tmp_path / "dev.log").read_text()[-3000:]
        time.sleep(2)
    first_rows_after = time.monotonic() - started
    assert first_rows_after < 90, f"first rows after {first_rows_after:.0f}s"  # includes dagster dev start-up

    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as wh:
        assert wh.query("SELECT count(*) FROM bmrs_freq_iris")[0][0] > 0
        assert wh.query("SELECT count(DISTINCT dataset) FROM iris_ingest_log")[0][0] >= 5

    if CHROMIUM:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000", "--dump-dom",
             f"http://127.0.0.1:{port}/assets/bmrs_freq_iris"],
            capture_output=True, text=True, timeout=90,
        ).stdout
        assert "bmrs_freq_iris" in dom and "as received from Elexon IRIS" in dom
    else:  # the project installs Debian's chromium in `make test` (scripts/system-deps.sh); say so if absent
        pytest.fail("chromium is not installed: run scripts/system-deps.sh")


def _up(port) -> bool:
    try:
        _graphql(port, "{ version }")
        return True
    except OSError:
        return False
