"""Health verdicts over the spool and the warehouse (what the Dagster asset checks report)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from iris_pipeline.registry import Dataset
from iris_pipeline.warehouse.base import TableFreshness

DEFAULT_MAX_LAG_S = 300.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    severity: str  # "ERROR" or "WARN": how bad it is when not passed
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def dataset_freshness(
    dataset: Dataset,
    pending: Mapping[str, float] | None,
    freshness: TableFreshness,
    now: dt.datetime,
    max_lag_s: float = DEFAULT_MAX_LAG_S,
) -> Verdict:
    """Fails (ERROR) when the table is more than `max_lag_s` behind the spool; warns when the feed
    itself has gone quiet for longer than the dataset's cadence plus `max_lag_s`."""
    backlog_age = max(0.0, now.timestamp() - pending["oldest_mtime"]) if pending else 0.0
    since_load = (now - freshness.last_ingested_at).total_seconds() if freshness.last_ingested_at else None
    metadata = {
        "pending_files": int(pending["files"]) if pending else 0,
        "backlog_age_seconds": round(backlog_age, 1),
        "seconds_since_last_load": round(since_load, 1) if since_load is not None else None,
        "latest_reference_time": freshness.latest_reference_time.isoformat() if freshness.latest_reference_time else None,
        "rows": freshness.rows,
        "max_lag_seconds": max_lag_s,
        "expected_cadence_seconds": dataset.cadence_seconds,
    }
    if backlog_age > max_lag_s:
        return Verdict(
            False, "ERROR",
            f"{metadata['pending_files']} file(s) waiting; the oldest for {backlog_age / 60:.1f} min"
            f" (limit {max_lag_s / 60:.0f} min)",
            metadata,
        )
    if since_load is None:
        return Verdict(False, "WARN", "no data loaded yet", metadata)
    quiet_limit = dataset.cadence_seconds + max_lag_s
    if since_load > quiet_limit:
        return Verdict(
            False, "WARN",
            f"no new data for {since_load / 60:.1f} min; {dataset.code} normally arrives every"
            f" {dataset.cadence_seconds / 60:.0f} min",
            metadata,
        )
    return Verdict(True, "ERROR", f"up to date (last load {since_load:.0f}s ago, backlog {backlog_age:.0f}s)", metadata)


def quarantine_verdict(code: str, quarantined_files: int) -> Verdict:
    if quarantined_files:
        return Verdict(
            False, "WARN",
            f"{quarantined_files} {code} file(s) in quarantine: read the .error files beside them, fix, then move"
            " them back to incoming/",
            {"quarantined_files": quarantined_files},
        )
    return Verdict(True, "WARN", "quarantine empty", {"quarantined_files": 0})
