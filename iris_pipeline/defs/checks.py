"""Asset checks on every `bmrs_<code>_iris` table: freshness (≤ 5 min behind the spool) and quarantine."""

import datetime as dt

import dagster as dg

from iris_pipeline import health
from iris_pipeline.config import Settings
from iris_pipeline.defs.iris_tables import UNREGISTERED_KEY, asset_key
from iris_pipeline.defs.resources import SpoolResource, WarehouseResource
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.warehouse import LEDGER_TABLE

FRESHNESS = "freshness"
QUARANTINE = "quarantine_empty"
REGISTERED = "all_codes_registered"


def build_table_checks(registry: Registry | None = None, settings: Settings | None = None) -> dg.AssetChecksDefinition:
    registry = registry or load_registry()
    max_lag_s = (settings or Settings.from_env()).freshness_minutes * 60
    by_key = {asset_key(ds): ds for ds in registry}
    specs = [
        spec
        for ds in registry
        for spec in (
            dg.AssetCheckSpec(
                FRESHNESS,
                asset=asset_key(ds),
                description=f"Fails when files wait in the spool for more than {max_lag_s / 60:.0f} min;"
                " warns when no data arrived for the dataset's cadence plus that.",
            ),
            dg.AssetCheckSpec(QUARANTINE, asset=asset_key(ds), description="Warns while files sit in quarantine."),
        )
    ] + [
        dg.AssetCheckSpec(REGISTERED, asset=UNREGISTERED_KEY, description="Warns when unregistered codes arrive."),
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="iris_table_checks")
    def iris_table_checks(context: dg.AssetCheckExecutionContext, spool: SpoolResource, warehouse: WarehouseResource):
        spool_dir = spool.get()
        pending = spool_dir.stats()
        now = dt.datetime.now(dt.timezone.utc)
        selected = context.selected_asset_check_keys
        with warehouse.open() as wh:
            for check_key in sorted(selected, key=lambda k: (k.asset_key.to_user_string(), k.name)):
                if check_key.asset_key == UNREGISTERED_KEY:
                    codes = {row[0] for row in wh.query(f"SELECT DISTINCT dataset FROM {LEDGER_TABLE}")}
                    unknown = sorted(codes - set(registry.codes()))
                    yield dg.AssetCheckResult(
                        asset_key=UNREGISTERED_KEY,
                        check_name=REGISTERED,
                        passed=not unknown,
                        severity=dg.AssetCheckSeverity.WARN,
                        description=f"unregistered codes: {', '.join(unknown)}" if unknown else "none",
                    )
                    continue
                ds = by_key[check_key.asset_key]
                if check_key.name == FRESHNESS:
                    freshness = wh.freshness(ds.code, ds.table_name, ds.reference_time_field)
                    verdict = health.dataset_freshness(ds, pending.get(ds.code), freshness, now, max_lag_s)
                else:
                    verdict = health.quarantine_verdict(ds.code, len(spool_dir.quarantined(ds.code)))
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=verdict.passed,
                    severity=dg.AssetCheckSeverity[verdict.severity],
                    description=verdict.description,
                    metadata=verdict.metadata,
                )

    return iris_table_checks
