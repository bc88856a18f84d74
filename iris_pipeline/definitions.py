"""Dagster code location: `dagster dev -m iris_pipeline.definitions`."""

import dagster as dg

from iris_pipeline.config import Settings
from iris_pipeline.defs.historic import build_historic_assets, build_historic_schedules
from iris_pipeline.defs.realtime import (
    build_archive_retention, build_client_health_check, build_health_job, build_health_sensor, build_iris_tables,
    build_spool_sensor, iris_feed, iris_ingest, spool_quarantine_check,
)
from iris_pipeline.defs.resources import resources_from_env
from iris_pipeline.defs.run_retention import build_run_retention
from iris_pipeline.defs.unified import build_dedup_assets, build_dedup_schedules, build_unified_views, build_views_automation
from iris_pipeline.registry import load_registry


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    registry = load_registry()
    prune_job, prune_schedule = build_archive_retention(settings.archive_retention_days)
    purge_job, purge_schedule = build_run_retention(settings.run_retention_days)
    iris_tables = build_iris_tables(
        registry, max_lag_s=settings.freshness_minutes * 60, max_message_bytes=settings.max_message_bytes,
        storage_kind=settings.warehouse,
    )
    max_lag_s = settings.freshness_minutes * 60
    iris_health = build_health_job(registry, max_lag_s, settings.client_max_silence_s)
    health_sensor = build_health_sensor(str(settings.spool_dir), registry, max_lag_s, settings.client_max_silence_s)
    historic_jobs, historic_schedules = build_historic_schedules(registry, settings.historic_start)
    views = build_unified_views(registry, settings.warehouse)
    views_sensor, view_checks_job, view_checks_schedule = build_views_automation(views)
    dedup = build_dedup_assets(registry, settings.historic_start, settings.warehouse)
    dedup_job, dedup_schedules = build_dedup_schedules(dedup, settings.historic_start)
    return dg.Definitions(
        assets=[iris_feed, iris_tables, *build_historic_assets(registry, settings.historic_start, settings.warehouse),
                views, *dedup],
        asset_checks=[build_client_health_check(settings), spool_quarantine_check],
        jobs=[iris_ingest, iris_health, prune_job, purge_job, *historic_jobs, view_checks_job, dedup_job],
        sensors=[build_spool_sensor(iris_ingest, str(settings.spool_dir), registry), health_sensor, views_sensor],
        schedules=[prune_schedule, purge_schedule, *historic_schedules, view_checks_schedule, *dedup_schedules],
        resources=resources_from_env(settings),
    )


defs = build_definitions()
