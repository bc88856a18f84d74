"""Start the `bqemulator` BigQuery emulator (run with .venv-bqemulator's Python) with two fixes it needs here.

1. It refuses to start when DuckDB's spatial extension cannot be downloaded (no internet here); we never
   use GEOGRAPHY, so the extension is loaded when present and skipped otherwise.
2. google-cloud-bigquery sends uploads under 5 MB as multipart with a media part of type `*/*`, which
   the emulator's whitelist refuses; `*/*` is what real BigQuery accepts.

Usage: launch.py start --rest-port PORT --grpc-port 0 --project PROJECT   (bqemulator's own CLI)
"""

import logging
import sys

from bqemulator.api.routes import upload
from bqemulator.storage import engine

log = logging.getLogger("bqemulator.launch")


def _load_spatial_if_present(self) -> None:
    try:
        self._connection.execute("LOAD spatial")
    except Exception as exc:  # noqa: BLE001 - any failure means: no GEOGRAPHY support, which we never use
        log.info("spatial extension not loaded (GEOGRAPHY unavailable): %s", exc)


def patch() -> None:
    patched = [
        cls for cls in vars(engine).values() if isinstance(cls, type) and "_load_spatial" in vars(cls)
    ]
    if not patched:
        raise SystemExit("bqemulator changed: no engine class with _load_spatial to patch")
    for cls in patched:
        cls._load_spatial = _load_spatial_if_present
    upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")


if __name__ == "__main__":
    patch()
    from bqemulator.cli import main

    sys.exit(main())
