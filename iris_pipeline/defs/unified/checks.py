"""Quality checks of the unified layer, chosen by name from one table (name -> finding)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import dagster as dg

from iris_pipeline import quality
from iris_pipeline.registry import Dataset
from iris_pipeline.warehouse.base import Warehouse

NO_DUPLICATE_KEYS = "no_duplicate_keys"
SETTLEMENT_DAYS_COMPLETE = "settlement_days_complete"
KEY_ASSUMPTION_HOLDS = "key_assumption_holds"


@dataclass(frozen=True)
class CheckTarget:
    """What a check reads: a table or view, the dataset it holds, and the key one row stands for."""

    table: str
    dataset: Dataset
    key: tuple[str, ...]
    series_column: str | None = None  # settlement days are complete per series (MID: per data provider)


Finding = Callable[[Warehouse, CheckTarget, "quality.Within | None"], quality.Finding]

CHECKS: dict[str, tuple[Finding, str, bool, str]] = {
    # name: (finding, severity, blocking, description)
    NO_DUPLICATE_KEYS: (
        lambda wh, t, within: quality.duplicate_keys(wh, t.table, t.dataset, list(t.key), within), "ERROR", True,
        "Fails when two rows share the key one row stands for."),
    SETTLEMENT_DAYS_COMPLETE: (
        lambda wh, t, within: quality.settlement_day_gaps(wh, t.table, t.series_column, within), "ERROR", True,
        "Fails when a settlement day has a period outside its 46/48/50, or is complete at both ends but"
        " misses periods in between."),
    KEY_ASSUMPTION_HOLDS: (
        lambda wh, t, within: quality.key_conflicts(wh, t.dataset.table_name, t.dataset), "WARN", False,
        "Warns when raw IRIS rows share the registry's (assumed) key but differ in values: the key misses"
        " a column."),
}


def check_spec(name: str, asset: dg.AssetKey) -> dg.AssetCheckSpec:
    _, _, blocking, description = CHECKS[name]
    return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)


def check_result(
    name: str, asset: dg.AssetKey, warehouse: Warehouse, target: CheckTarget, within: quality.Within | None = None,
) -> dg.AssetCheckResult:
    """The check's verdict (of the days `within` only, where given)."""
    finding, severity, _, _ = CHECKS[name]
    if warehouse.table_columns(target.table) is None:  # a check-only run before the view was created
        return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   description=f"{target.table} does not exist yet")
    found = finding(warehouse, target, within)
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=found.passed,
                               severity=dg.AssetCheckSeverity[severity], description=found.reason,
                               metadata=found.metadata)
