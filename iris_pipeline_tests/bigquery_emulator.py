"""The `bqemulator` BigQuery emulator as a real server process for tests (and `make dev` on BigQuery).

It runs from its own virtual environment (.bqemulator-venv, built by scripts/bqemulator/env.sh) with
the two fixes in scripts/bqemulator/launch.py. Where the emulator differs from BigQuery, the tests
say so next to the assertion; production SQL is not bent to the emulator.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EMULATOR_PYTHON = REPO / ".bqemulator-venv" / "bin" / "python"
LAUNCHER = REPO / "scripts" / "bqemulator" / "launch.py"
PROJECT = "iris-test"
START_TIMEOUT_S = 60.0


@dataclass
class Emulator:
    host: str  # BIGQUERY_EMULATOR_HOST, e.g. http://127.0.0.1:9050
    project: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(log_path: Path, project: str = PROJECT, data_dir: Path | None = None) -> Emulator:
    if not EMULATOR_PYTHON.exists():
        raise RuntimeError(f"{EMULATOR_PYTHON} is missing: run scripts/bqemulator/env.sh (make test does)")
    port = free_port()
    storage = ["--persistent", "--data-dir", str(data_dir)] if data_dir else ["--ephemeral"]
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [str(EMULATOR_PYTHON), str(LAUNCHER), "start", "--rest-port", str(port), "--grpc-port", "0",
         "--project", project, "--log-level", "warning", *storage],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=_default_signals,
    )
    log.close()
    emulator = Emulator(f"http://127.0.0.1:{port}", project, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"bqemulator exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{emulator.host}/bigquery/v2/projects/{project}/datasets", timeout=2):
                return emulator
        except OSError:
            if time.monotonic() > deadline:
                emulator.stop()
                raise RuntimeError(f"bqemulator not answering after {START_TIMEOUT_S:.0f}s: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)


def _default_signals() -> None:
    # Some sandboxes start us with SIGTERM ignored, and a child inherits that: undo it so stop() works.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
