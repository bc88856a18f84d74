"""Health verdicts over the spool and the warehouse (what the Dagster asset checks report)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from iris_pipeline.registry import Dataset
from iris_pipeline.spool import QuarantineInventory, SpoolProblem
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
    itself has gone quiet for longer than the dataset's cadence plus `max_lag_s` (never for an
    event-driven dataset: SYS_WARN can be silent for weeks and nothing is wrong)."""
    backlog_age = max(0.0, now.timestamp() - pending["oldest_mtime"]) if pending else 0.0
    since_load = (now - freshness.last_ingested_at).total_seconds() if freshness.last_ingested_at else None
    metadata = {
        "pending_files": int(pending["files"]) if pending else 0,
        "backlog_age_seconds": round(backlog_age, 1),
        "seconds_since_last_load": round(since_load, 1) if since_load is not None else None,
        "latest_reference_time": freshness.latest_reference_time.isoformat() if freshness.latest_reference_time else None,
        "rows": freshness.rows,
        "max_lag_seconds": max_lag_s,
        "expected_cadence_seconds": dataset.expected_cadence_seconds,
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
    cadence = dataset.expected_cadence_seconds
    if cadence is not None and since_load > cadence + max_lag_s:
        return Verdict(
            False, "WARN",
            f"no new data for {since_load / 60:.1f} min; {dataset.code} normally arrives every"
            f" {cadence / 60:.0f} min",
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


MAX_LISTED_PROBLEMS = 20


def spool_quarantine_verdict(
    inventory: QuarantineInventory, incoming_problems: Sequence[SpoolProblem] = ()
) -> Verdict:
    """The spool-wide check: WARN while anything at all sits in quarantine/ (every folder: dataset
    codes, `_invalid`, unregistered and invalid codes) or incoming/ holds entries that can never load
    (an unlistable directory, a link). Per-table checks cannot see folders no table owns."""
    problems = [*incoming_problems, *inventory.problems]
    metadata = {
        "quarantined_entries": inventory.total,
        "by_folder": dict(sorted(inventory.items.items())),
        "problems": len(problems),
        "first_problems": [str(p) for p in problems[:MAX_LISTED_PROBLEMS]],
    }
    if not inventory.total and not problems:
        return Verdict(True, "WARN", "quarantine empty; nothing unloadable in incoming/", metadata)
    parts = []
    if inventory.total:
        folders = ", ".join(f"{folder} {count}" for folder, count in sorted(inventory.items.items()))
        parts.append(f"{inventory.total} entr{'y' if inventory.total == 1 else 'ies'} in quarantine ({folders})")
    if problems:
        parts.append(f"{len(problems)} problem(s), first: {problems[0]}")
    return Verdict(
        False, "WARN",
        "; ".join(parts) + ": read the .error files, fix, then move files back to incoming/<DATASET>/",
        metadata,
    )
