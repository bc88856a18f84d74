"""Retention of run history: Dagster keeps every run forever (schedule and sensor ticks have their own
`retention:` in dagster.yaml). Once a day, finished runs of the pipeline's frequent jobs older than
IRIS_RUN_RETENTION_DAYS are deleted with their event logs.

Only the jobs in PURGED_JOBS: a historic backfill's runs hold the materialisations that say which
settlement days are loaded, and deleting them would show those days as missing. A run still in flight
is never deleted, nor one holding an asset's latest materialisation (a dataset that arrives rarely
keeps its "last materialised" in the UI), nor, for the partitioned jobs in PARTITIONED_JOBS (the dedup
refresh, 288 runs a day), the latest successful run of each settlement day: a day refreshed for the
last time a year ago still shows as materialised.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

PARTITIONED_JOBS = ("unified_dedup",)
PURGED_JOBS = ("iris_ingest", "iris_health", "iris_archive_prune", "iris_run_purge", "unified_view_checks",
               *PARTITIONED_JOBS)
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
PAGE = 1000


@dataclass(frozen=True)
class PurgeReport:
    deleted: int
    kept_latest: int  # old enough, but holding an asset's latest materialisation
    cutoff: dt.datetime


def purge_runs(
    instance: dg.DagsterInstance, keep_days: float, now: dt.datetime | None = None, jobs=PURGED_JOBS
) -> PurgeReport:
    """Delete finished runs of `jobs` created more than `keep_days` before `now`."""
    if not keep_days >= 0:
        raise ValueError(f"keep_days must be 0 or more, not {keep_days}")
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=keep_days)
    latest = instance.get_latest_materialization_events(instance.get_asset_keys())
    protected = {entry.run_id for entry in latest.values() if entry is not None}
    protected |= {run_id for job in jobs if job in PARTITIONED_JOBS for run_id in _latest_per_partition(instance, job)}
    old: list[str] = []
    for job in jobs:  # listed first, then deleted: a cursor must not point at a deleted run
        cursor = None
        while records := instance.get_run_records(
            filters=dg.RunsFilter(job_name=job, statuses=FINISHED, created_before=cutoff), limit=PAGE, cursor=cursor
        ):
            old.extend(r.dagster_run.run_id for r in records)
            cursor = records[-1].dagster_run.run_id
    doomed = [run_id for run_id in old if run_id not in protected]
    # SQLite storage (make dev) keeps each run's events in a file of its own, which delete_run empties
    # but leaves behind (~130 KB each, thousands a day); Postgres has no such files.
    shard_path = getattr(instance.event_log_storage, "path_for_shard", None)
    for run_id in doomed:
        instance.delete_run(run_id)
        if shard_path:
            for suffix in ("", "-wal", "-shm"):
                Path(shard_path(run_id) + suffix).unlink(missing_ok=True)
    return PurgeReport(len(doomed), len(old) - len(doomed), cutoff)


def _latest_per_partition(instance: dg.DagsterInstance, job: str) -> set[str]:
    """The latest successful run of each partition `job` ran for, and every run of a partition range
    (a backfill: its days are not read here, so it is kept)."""
    latest: dict[str, str] = {}
    ranged: set[str] = set()
    cursor = None
    # newest first: the first run seen for a partition is its latest
    while records := instance.get_run_records(
        filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=PAGE, cursor=cursor
    ):
        for record in records:
            tags = record.dagster_run.tags
            if "dagster/partition" in tags:
                latest.setdefault(tags["dagster/partition"], record.dagster_run.run_id)
            elif "dagster/asset_partition_range_start" in tags:
                ranged.add(record.dagster_run.run_id)
        cursor = records[-1].dagster_run.run_id
    return set(latest.values()) | ranged


class RunRetention(dg.Config):
    keep_days: float = 7


@dg.op(description="Delete finished runs of the frequent jobs (iris_ingest, iris_health, ...) older than keep_days.")
def purge_old_runs(context: dg.OpExecutionContext, config: RunRetention) -> None:
    report = purge_runs(context.instance, config.keep_days)
    context.log.info(
        f"deleted {report.deleted} finished runs created before {report.cutoff:%Y-%m-%d %H:%M} UTC"
        f" ({report.kept_latest} kept: they hold an asset's latest materialisation)"
    )


def build_run_retention(keep_days: int) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    @dg.job(
        name="iris_run_purge",
        description=f"Keep {keep_days} days of finished runs of {', '.join(PURGED_JOBS)} (IRIS_RUN_RETENTION_DAYS).",
        config=dg.RunConfig(ops={"purge_old_runs": RunRetention(keep_days=keep_days)}),
        executor_def=dg.in_process_executor,
        tags={"dagster/max_runtime": "3600"},
    )
    def iris_run_purge():
        purge_old_runs()

    schedule = dg.ScheduleDefinition(
        name="iris_run_purge_daily",
        job=iris_run_purge,
        cron_schedule="47 3 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return iris_run_purge, schedule
