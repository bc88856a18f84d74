"""One check over the whole of spool/quarantine/: the per-table checks only see registered codes' folders,
so files under `_invalid/`, unregistered or invalid codes, or anything odd would otherwise fail nothing.
It also reports what in incoming/ can never load (a link, an unlistable folder): no run would say so."""

from __future__ import annotations

import dagster as dg

from iris_pipeline import health
from iris_pipeline.defs.realtime.client import IRIS_FEED_KEY
from iris_pipeline.defs.resources import SpoolResource
from iris_pipeline.spool import Spool

SPOOL_QUARANTINE = "spool_quarantine_empty"


@dg.asset_check(
    asset=IRIS_FEED_KEY,
    name=SPOOL_QUARANTINE,
    description="Warns while anything sits anywhere in spool/quarantine/ (any code, `_invalid`, any folder)"
    " or incoming/ holds entries that can never load.",
)
def spool_quarantine_check(spool: SpoolResource) -> dg.AssetCheckResult:
    return spool_quarantine_result(spool.get())


def spool_quarantine_result(spool_dir: Spool) -> dg.AssetCheckResult:
    verdict = health.spool_quarantine_verdict(spool_dir.quarantine_inventory(), spool_dir.incoming_problems())
    return dg.AssetCheckResult(
        asset_key=IRIS_FEED_KEY,
        check_name=SPOOL_QUARANTINE,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity[verdict.severity],
        description=verdict.description,
        metadata=verdict.metadata,
    )
