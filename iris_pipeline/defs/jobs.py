"""Jobs and schedules over the IRIS tables."""

from __future__ import annotations

import dagster as dg

from iris_pipeline.defs.iris_tables import GROUP

WRITER_TAG = {"iris_pipeline/warehouse_writer": "true"}

iris_ingest = dg.define_asset_job(
    "iris_ingest",
    selection=dg.AssetSelection.groups(GROUP),
    description="Load every *_iris table that has files pending in the spool (one step, in-process).",
    executor_def=dg.in_process_executor,
    tags=WRITER_TAG,
)

iris_health = dg.define_asset_job(
    "iris_health",
    selection=dg.AssetSelection.all_asset_checks(),
    description="Evaluate freshness and quarantine checks even when no files arrive (reads only).",
    executor_def=dg.in_process_executor,
)

iris_health_schedule = dg.ScheduleDefinition(
    name="iris_health_every_minute",
    job=iris_health,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
