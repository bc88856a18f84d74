"""`iris_health`: every check, evaluated each minute from the spool and the ingest status file alone.

It is an op job, not an asset job selecting the checks: the table checks are declared on the loader's
multi-asset, whose step takes the warehouse pool, and a health run must never queue behind the load it
is there to watch. Its op takes no pool and never opens the warehouse; it records each verdict as an
evaluation of the same check keys, so the UI shows one history per check whichever run wrote it.
"""


import dagster as dg

from iris_pipeline.defs.checks import evaluate_table_checks, table_check_specs
from iris_pipeline.defs.client import client_health_result
from iris_pipeline.defs.iris_tables import UNREGISTERED_KEY
from iris_pipeline.defs.quarantine import spool_quarantine_result
from iris_pipeline.freshness_status import IngestStatus, read_status
from iris_pipeline.registry import Registry

MAX_RUNTIME = {"dagster/max_runtime": "300"}


def build_health_job(registry: Registry, max_lag_s: float, client_max_silence_s: float) -> dg.JobDefinition:
    table_checks = [spec.key for spec in table_check_specs(registry, UNREGISTERED_KEY, max_lag_s)]

    @dg.op(required_resource_keys={"spool"})
    def evaluate_iris_health(context: dg.OpExecutionContext) -> None:
        """Freshness and quarantine of every table, the IRIS client's health and the whole quarantine."""
        spool = context.resources.spool.get()
        status = read_status(spool.root) or IngestStatus()
        results = [
            *evaluate_table_checks(table_checks, registry, spool, status, max_lag_s),
            client_health_result(str(spool.root), client_max_silence_s),
            spool_quarantine_result(spool),
        ]
        for result in results:
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=result.asset_key,
                    check_name=result.check_name,
                    passed=result.passed,
                    severity=result.severity,
                    description=result.description,
                    metadata=result.metadata,
                )
            )

    @dg.job(
        name="iris_health",
        description="Evaluate freshness, quarantine and client checks even when no files arrive (reads only).",
        executor_def=dg.in_process_executor,
        tags=MAX_RUNTIME,
    )
    def iris_health() -> None:
        evaluate_iris_health()

    return iris_health


def health_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="iris_health_every_minute",
        job=job,
        cron_schedule="* * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
