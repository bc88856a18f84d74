"""One check over the whole of spool/quarantine/: the per-table checks only see registered codes' folders,
so files under `_invalid/`, unregistered or invalid codes, or nested deeper would otherwise fail nothing."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import dagster as dg

from iris_pipeline.defs.client import IRIS_FEED_KEY
from iris_pipeline.defs.resources import SpoolResource
from iris_pipeline.spool import ERROR_SUFFIX

# TODO(merge): use the Spool method that lists everything in quarantine (added on the core branch).
def quarantined_by_folder(quarantine: Path) -> dict[str, int]:
    """Every entry under quarantine/ except the `.error` notes, counted by top-level folder ("." for
    files directly in quarantine/). Symlinks are counted, never followed."""
    counts: collections.Counter[str] = collections.Counter()
    stack = [(str(quarantine), None)]
    while stack:
        path, top = stack.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, top or entry.name))
            elif not entry.name.endswith(ERROR_SUFFIX):
                counts[top or "."] += 1
    return dict(sorted(counts.items()))


@dg.asset_check(
    asset=IRIS_FEED_KEY,
    name="spool_quarantine_empty",
    description="Warns while anything sits anywhere in spool/quarantine/ (any code, `_invalid`, any depth).",
)
def spool_quarantine_check(spool: SpoolResource) -> dg.AssetCheckResult:
    by_folder = quarantined_by_folder(spool.get().quarantine)
    total = sum(by_folder.values())
    if not total:
        return dg.AssetCheckResult(passed=True, description="quarantine empty", metadata={"quarantined_files": 0})
    shown = dict(list(by_folder.items())[:20])  # bounded: folder names come from the input
    listed = ", ".join(f"{folder}: {n}" for folder, n in shown.items())
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{total} file(s) in spool/quarantine ({listed}): read the .error files beside them, fix,"
        " then move them back to incoming/<DATASET>/",
        metadata={"quarantined_files": total, **{f"in {folder}": n for folder, n in shown.items()}},
    )
