"""Asset checks on every `bmrs_<code>_iris` table: freshness (≤ 5 min behind the spool) and quarantine.

They are declared on the loader's multi-asset and evaluated in the same step, after loading: a
separate check step would be skipped whenever a selected dataset had nothing to load. They read the
spool and the ingest status file (`freshness_status`), never the warehouse, so the minute-by-minute
health sensor (and the `iris_health` job) neither waits for nor blocks a running ingest.
"""

import datetime as dt
from typing import Iterable, Iterator

import dagster as dg

from iris_pipeline import health
from iris_pipeline.freshness_status import IngestStatus
from iris_pipeline.registry import Registry
from iris_pipeline.spool import Spool

FRESHNESS = "freshness"
QUARANTINE = "quarantine_empty"
REGISTERED = "all_codes_registered"


def table_check_specs(registry: Registry, unregistered_key: dg.AssetKey, max_lag_s: float) -> list[dg.AssetCheckSpec]:
    specs = []
    for ds in registry:
        key = dg.AssetKey(ds.table_name)
        specs.append(
            dg.AssetCheckSpec(
                FRESHNESS,
                asset=key,
                description=f"Fails when files wait in the spool for more than {max_lag_s / 60:.0f} min;"
                " warns when no data arrived for the dataset's cadence plus that.",
            )
        )
        specs.append(dg.AssetCheckSpec(QUARANTINE, asset=key, description="Warns while files sit in quarantine."))
    specs.append(
        dg.AssetCheckSpec(REGISTERED, asset=unregistered_key, description="Warns when unregistered codes arrive.")
    )
    return specs


def evaluate_table_checks(
    check_keys: Iterable[dg.AssetCheckKey],
    registry: Registry,
    spool: Spool,
    status: IngestStatus,
    max_lag_s: float,
) -> Iterator[dg.AssetCheckResult]:
    by_table = {ds.table_name: ds for ds in registry}
    pending = spool.stats()
    now = dt.datetime.now(dt.timezone.utc)
    for check_key in sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        if check_key.name == REGISTERED:
            unknown = sorted(status.unregistered_codes - set(registry.codes()))
            verdict = health.Verdict(
                not unknown, "WARN", f"unregistered codes: {', '.join(unknown)}" if unknown else "none"
            )
        else:
            ds = by_table[check_key.asset_key.path[-1]]
            if check_key.name == FRESHNESS:
                verdict = health.dataset_freshness(ds, pending.get(ds.code), status.freshness(ds.code), now, max_lag_s)
            else:
                verdict = health.quarantine_verdict(ds.code, len(spool.quarantined(ds.code)))
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity[verdict.severity],
            description=verdict.description,
            metadata=verdict.metadata,
        )
