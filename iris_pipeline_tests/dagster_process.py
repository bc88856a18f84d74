"""Start and stop a real `dagster dev` (and other long-running commands) for tests and benchmarks."""

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, env, log) -> subprocess.Popen:
    def reset_signals():  # a background `dagster dev` may inherit ignored SIGINT/SIGTERM here
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=reset_signals
    )


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def start_dagster_dev(home: Path, env: dict, log) -> tuple[subprocess.Popen, int]:
    """`dagster dev` on a free port with this project's workspace and a fresh instance in `home`."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    cmd = [str(VENV_BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    return start(cmd, env | {"DAGSTER_HOME": str(home)}, log), port


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def is_up(port: int) -> bool:
    try:
        graphql(port, "{ version }")
        return True
    except OSError:
        return False


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (flags: see .library/env)."""
    assert CHROMIUM, "chromium is not installed: run scripts/system-deps.sh (make test does)"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90,
    ).stdout
