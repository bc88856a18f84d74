"""Settings from the environment (names and defaults are the project's contract)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

ELEXON_TENANT_ID = "4203b7a0-7773-4de5-b830-8b263a20426e"


@dataclass(frozen=True)
class Settings:
    spool_dir: Path = Path("data/spool")
    warehouse: str = "duckdb"
    duckdb_path: Path = Path("data/warehouse.duckdb")
    bq_project: str | None = None
    bq_dataset: str = "uk_energy_prod"
    bq_location: str = "EU"
    bigquery_emulator_host: str | None = None
    bq_credentials_set: bool = False  # BQ_CREDENTIALS: a base64 service-account key, instead of ADC
    bq_min_flush_seconds: float = 60.0  # BigQuery: 1,500 writes per table per day; one a minute is 1,440
    bq_max_flush_rows: int = 1_000_000  # a backlog goes up in flushes of at most this many rows
    elexon_api_base_url: str = "https://data.elexon.co.uk/bmrs/api/v1"
    iris_archive_url: str = "https://archive.data.elexon.co.uk/iris-archive"
    archive_retention_days: int = 7
    run_retention_days: int = 7  # finished runs of the frequent jobs (defs/run_retention.py)
    freshness_minutes: float = 5.0
    client_max_silence_s: float = 600.0
    historic_start: dt.date = dt.date(2025, 1, 1)  # first settlement day of the historic partitions
    max_message_bytes: int = 64 * 1024 * 1024  # real IRIS messages are a few KB, rarely several MB

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        warehouse = env.get("IRIS_WAREHOUSE", "duckdb").strip().lower()
        if warehouse not in ("duckdb", "bigquery"):
            raise ValueError(f"IRIS_WAREHOUSE must be 'duckdb' or 'bigquery', not {warehouse!r}")
        return cls(
            spool_dir=Path(env.get("IRIS_SPOOL_DIR", "data/spool")),
            warehouse=warehouse,
            duckdb_path=Path(env.get("IRIS_DUCKDB_PATH", "data/warehouse.duckdb")),
            bq_project=env.get("BQ_PROJECT") or None,
            bq_dataset=env.get("BQ_DATASET", "uk_energy_prod"),
            bq_location=env.get("BQ_LOCATION", "EU"),
            bigquery_emulator_host=env.get("BIGQUERY_EMULATOR_HOST") or None,
            bq_credentials_set=bool(env.get("BQ_CREDENTIALS")),
            bq_min_flush_seconds=float(env.get("IRIS_BQ_MIN_FLUSH_SECONDS", "60")),
            bq_max_flush_rows=_positive_int(env, "IRIS_BQ_MAX_FLUSH_ROWS", 1_000_000, "rows"),
            elexon_api_base_url=env.get("ELEXON_API_BASE_URL", "https://data.elexon.co.uk/bmrs/api/v1"),
            iris_archive_url=env.get("IRIS_ARCHIVE_URL", "https://archive.data.elexon.co.uk/iris-archive"),
            archive_retention_days=int(env.get("IRIS_ARCHIVE_RETENTION_DAYS", "7")),
            run_retention_days=_positive_int(env, "IRIS_RUN_RETENTION_DAYS", 7, "days"),
            freshness_minutes=float(env.get("IRIS_FRESHNESS_MINUTES", "5")),
            client_max_silence_s=float(env.get("IRIS_CLIENT_MAX_SILENCE_SECONDS", "600")),
            max_message_bytes=_positive_int(env, "IRIS_MAX_MESSAGE_BYTES", 64 * 1024 * 1024),
            historic_start=_date(env, "IRIS_HISTORIC_START", dt.date(2025, 1, 1)),
        )


def _positive_int(env, name: str, default: int, unit: str = "bytes") -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of {unit}, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {value}")
    return value


def _date(env, name: str, default: dt.date) -> dt.date:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be a date, YYYY-MM-DD, not {raw!r}") from None
