"""Every view of the unified layer as one subsettable multi-asset: `bmrs_<code>_unified` for each
dataset, `bmrs_<code>_latest` for each kept-versions dataset, and their checks.

Creating a view is DDL (no data moves), so one step makes them all. They are created once, and again
when their SQL changes (the code version is a hash of the templates and the dataset's registry entry);
a declarative automation condition asks for exactly that, so nothing re-creates them on a timer. The
checks read the data behind the views, and run on their own every hour.
"""


import hashlib
import json
from importlib import resources

import dagster as dg

from iris_pipeline import resolved, unified
from iris_pipeline.defs.resources import derived_pool
from iris_pipeline.defs.unified.checks import (
    KEY_ASSUMPTION_HOLDS, NO_DUPLICATE_KEYS, SETTLEMENT_DAYS_COMPLETE, CheckTarget, check_result, check_spec,
)
from iris_pipeline.registry import Dataset, Registry

GROUP = "unified"
OWNERS = ["team:iris-pipeline"]
# Once when missing, again when the SQL changes; never while a run is creating them.
# Requested while missing, or after its SQL changed until it is created again; a run that failed (a
# restart killed it) is asked for again at the next evaluation, never while one is in flight.
VIEW_CONDITION = (
    (dg.AutomationCondition.missing()
     | dg.AutomationCondition.code_version_changed().since(dg.AutomationCondition.newly_updated()))
    & ~dg.AutomationCondition.in_progress()
).with_label("missing, or its SQL changed since it was created")
# The code that turns the registry into a view's SQL: a change to it is a change of the SQL.
RENDERERS = ("unified.py", "resolved.py", "sql_templates.py")


def _code_version(dataset: Dataset, *templates: str) -> str:
    """A hash of what a view's SQL depends on: the dataset's columns and keys (not its descriptions),
    whether it has history, the templates, and the code rendering them."""
    shape = {
        "code": dataset.code, "columns": [(c.name, c.type, c.iris_only) for c in dataset.columns],
        "key_kind": dataset.key_kind, "natural_key": dataset.natural_key,
        "version_order": [(t.column, t.ranks) for t in dataset.version_order], "history": dataset.api is not None,
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode())
    package = resources.files("iris_pipeline")
    for path in [package.joinpath("sql", name) for name in templates] + [package.joinpath(n) for n in RENDERERS]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def unified_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(unified.unified_name(dataset))


def latest_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(unified.latest_name(dataset))


def resolved_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(resolved.resolved_name(dataset))


# What creates each kind of view, in the order they are created (later kinds read earlier ones).
CREATE = {"unified": unified.create_unified_view, "latest": unified.create_latest_view,
          "resolved": resolved.create_resolved_view}


def _spec(key: dg.AssetKey, deps: list[dg.AssetKey], description: str, code_version: str, storage_kind: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=key, deps=deps, description=description, group_name=GROUP, kinds={"sql", storage_kind},
        owners=OWNERS, code_version=code_version, automation_condition=VIEW_CONDITION, skippable=True,
        metadata={"dagster/table_name": key.path[-1]},
    )


def view_specs(registry: Registry, storage_kind: str) -> tuple[list[dg.AssetSpec], dict[dg.AssetKey, tuple[str, Dataset]]]:
    """The specs, and for each key what builds it ("unified" or "latest") from which dataset."""
    specs, builds = [], {}
    for ds in registry:
        sources = [dg.AssetKey(ds.table_name)] + ([dg.AssetKey(ds.historic_table_name)] if unified.has_history(ds) else [])
        key = unified_key(ds)
        specs.append(_spec(
            key, sources, f"{ds.name} ({ds.code}): history and IRIS as one timeline, one row per"
            f" {'version of each ' if ds.key_kind == 'vintage' else ''}fact"
            f" ({', '.join(unified.fact_key(ds)) if ds.natural_key else 'the whole record'}), the latest by the"
            " registry's order, with a `source` column (HISTORIC or IRIS). No cutoff dates.",
            _code_version(ds, "unified_view.sql", "latest_rows.sql"), storage_kind))
        builds[key] = ("unified", ds)
    for ds in unified.latest_datasets(registry):
        key = latest_key(ds)
        specs.append(_spec(
            key, [unified_key(ds)], f"{ds.name} ({ds.code}): the latest version per ({', '.join(ds.latest_key)}),"
            f" by {', '.join(t.column for t in ds.version_order)} then the registry's message order.",
            _code_version(ds, "latest_view.sql", "latest_rows.sql"), storage_kind))
        builds[key] = ("latest", ds)
    for ds in (registry[code] for code in unified.RESOLVED if code in registry):
        key = resolved_key(ds)
        specs.append(_spec(
            key, [unified_key(ds)], f"{ds.name} ({ds.code}) resolved by Elexon's rule from every declaration"
            " (IRIS's raw files and the API's resolved rows): at each instant the latest valid declaration"
            " holds, levels copied never interpolated, pieces cut at settlement periods. Comparable with the"
            " API's position.", _code_version(ds, "resolved_limits.sql"), storage_kind))
        builds[key] = ("resolved", ds)
    return specs, builds


def view_checks(registry: Registry) -> dict[dg.AssetCheckKey, tuple[str, CheckTarget]]:
    checks = {}
    for ds in unified.latest_datasets(registry):
        checks[dg.AssetCheckKey(latest_key(ds), NO_DUPLICATE_KEYS)] = (
            NO_DUPLICATE_KEYS, CheckTarget(unified.latest_name(ds), ds, ds.latest_key))
        if ds.latest_key == ("settlementDate", "settlementPeriod"):  # one row per period: every period is due
            checks[dg.AssetCheckKey(latest_key(ds), SETTLEMENT_DAYS_COMPLETE)] = (
                SETTLEMENT_DAYS_COMPLETE, CheckTarget(unified.latest_name(ds), ds, ds.latest_key))
    for ds in (registry[code] for code in unified.RESOLVED if code in registry):
        checks[dg.AssetCheckKey(resolved_key(ds), NO_DUPLICATE_KEYS)] = (
            NO_DUPLICATE_KEYS, CheckTarget(resolved.resolved_name(ds), ds, ("bmUnit", "nationalGridBmUnit", "timeFrom")))
    for ds in registry:
        if ds.key_assumption:
            checks[dg.AssetCheckKey(unified_key(ds), KEY_ASSUMPTION_HOLDS)] = (
                KEY_ASSUMPTION_HOLDS, CheckTarget(ds.table_name, ds, ds.natural_key))
    return checks


def build_unified_views(registry: Registry, storage_kind: str = "duckdb") -> dg.AssetsDefinition:
    specs, builds = view_specs(registry, storage_kind)
    checks = view_checks(registry)

    @dg.multi_asset(
        name="unified_views",
        specs=specs,
        check_specs=[check_spec(name, key.asset_key) for key, (name, _) in checks.items()],
        can_subset=True,
        pool=derived_pool(storage_kind),
        required_resource_keys={"warehouse"},
    )
    def unified_views(context: dg.AssetExecutionContext):
        selected = context.selected_asset_keys
        with context.resources.warehouse.open() as warehouse:
            for kind, create in CREATE.items():
                for key in sorted(k for k in selected if builds[k][0] == kind):
                    name = create(warehouse, builds[key][1])
                    yield dg.MaterializeResult(asset_key=key, metadata={"dagster/table_name": warehouse.qualified_name(name)})
            for check_key in sorted(context.selected_asset_check_keys, key=str):
                name, target = checks[check_key]
                yield check_result(name, check_key.asset_key, warehouse, target)

    return unified_views


def build_views_automation(views: dg.AssetsDefinition) -> tuple[dg.SensorDefinition, dg.JobDefinition, dg.ScheduleDefinition]:
    """The sensor that evaluates VIEW_CONDITION, and the hourly job that runs the views' checks alone."""
    sensor = dg.AutomationConditionSensorDefinition(
        "unified_views_automation", target=dg.AssetSelection.assets(views),
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=300,
        description="Creates a view when it is missing or its SQL changed.",
    )
    job = dg.define_asset_job(
        "unified_view_checks", selection=dg.AssetSelection.checks_for_assets(views),
        executor_def=dg.in_process_executor, tags={"dagster/max_runtime": "1800"},
        description="The unified layer's checks (no view is re-created).",
    )
    schedule = dg.ScheduleDefinition(job=job, cron_schedule="7 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
                                     execution_timezone="Europe/London")
    return sensor, job, schedule
