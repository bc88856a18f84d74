"""Retention of loaded files in spool/archive/ (they are in the warehouse; the archive is for replays)."""

import dagster as dg

from iris_pipeline.defs.resources import SpoolResource


class ArchiveRetention(dg.Config):
    keep_days: int = 7


@dg.op(description="Delete archive/<DATASET>/<YYYY-MM-DD>/ folders older than keep_days.")
def prune_spool_archive(context: dg.OpExecutionContext, config: ArchiveRetention, spool: SpoolResource) -> None:
    pruned = spool.get().prune_archive(config.keep_days)
    context.log.info(f"removed {pruned.removed} archived files older than {config.keep_days} days")
    for problem in pruned.skipped:
        context.log.warning(f"left in the archive: {problem}")


def build_archive_retention(keep_days: int) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    @dg.job(
        name="iris_archive_prune",
        description=f"Keep {keep_days} days of loaded files in spool/archive/ (IRIS_ARCHIVE_RETENTION_DAYS).",
        config=dg.RunConfig(ops={"prune_spool_archive": ArchiveRetention(keep_days=keep_days)}),
    )
    def iris_archive_prune():
        prune_spool_archive()

    schedule = dg.ScheduleDefinition(
        name="iris_archive_prune_daily",
        job=iris_archive_prune,
        cron_schedule="17 3 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return iris_archive_prune, schedule
