"""Health of the pipeline: every check, evaluated from the spool and the ingest status file alone.

Two ways in, one evaluation (`health_results`):
- the sensor `iris_health_sensor` evaluates every check once a minute inside the code server, with no
  run, and records a verdict only when it differs from the check's latest one (or that one is older
  than RESTATE_AFTER_S). A stale table is flagged within about a minute of crossing its limit, and an
  idle pipeline adds a handful of evaluations an hour, not a run a minute: a run costs a process
  start and Dagster's imports (seconds of CPU), an evaluation here a few milliseconds.
- the job `iris_health`, to evaluate everything now from the UI (Launchpad) or a script.

Both record each verdict as an evaluation of the same check keys, so the UI shows one history per
check whichever wrote it (the ingest run evaluates the checks of the datasets it loads, too). The job
is an op job, not an asset job selecting the checks: the table checks are declared on the loader's
multi-asset, whose step takes the warehouse pool, and a health run must never queue behind the load
it is there to watch. Neither takes a pool nor opens the warehouse.
"""

import time
from typing import Mapping

import dagster as dg

from iris_pipeline.defs.realtime.checks import evaluate_table_checks, table_check_specs
from iris_pipeline.defs.realtime.client import client_health_result
from iris_pipeline.defs.realtime.quarantine import spool_quarantine_result
from iris_pipeline.defs.realtime.tables import UNREGISTERED_KEY
from iris_pipeline.freshness_status import IngestStatus, read_status
from iris_pipeline.registry import Registry
from iris_pipeline.spool import Spool

MAX_RUNTIME = {"dagster/max_runtime": "300"}
HEALTH_INTERVAL_S = 60
RESTATE_AFTER_S = 3600  # an unchanged verdict is recorded again after this long, so none looks abandoned


def health_results(
    registry: Registry, spool: Spool, max_lag_s: float, client_max_silence_s: float
) -> list[dg.AssetCheckResult]:
    """Freshness and quarantine of every table, the IRIS client's health and the whole quarantine."""
    table_checks = [spec.key for spec in table_check_specs(registry, UNREGISTERED_KEY, max_lag_s)]
    status = read_status(spool.root) or IngestStatus()
    return [
        *evaluate_table_checks(table_checks, registry, spool, status, max_lag_s),
        client_health_result(str(spool.root), client_max_silence_s),
        spool_quarantine_result(spool),
    ]


def as_evaluation(result: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
    )


def changed_evaluations(
    evaluations: list[dg.AssetCheckEvaluation],
    latest: Mapping[dg.AssetCheckKey, object],
    now: float,
    restate_after_s: float = RESTATE_AFTER_S,
) -> list[dg.AssetCheckEvaluation]:
    """The evaluations worth recording: a verdict (passed, severity) other than the check's latest
    recorded one, a check never evaluated, or one whose latest evaluation is older than restate_after_s.
    `latest` maps check keys to the instance's AssetCheckExecutionRecords."""
    wanted = []
    for evaluation in evaluations:
        record = latest.get(evaluation.asset_check_key)
        previous = getattr(record, "evaluation", None)
        if (
            previous is None
            or (previous.passed, previous.severity) != (evaluation.passed, evaluation.severity)
            or now - record.create_timestamp > restate_after_s
        ):
            wanted.append(evaluation)
    return wanted


def build_health_sensor(
    spool_root: str, registry: Registry, max_lag_s: float, client_max_silence_s: float
) -> dg.SensorDefinition:
    @dg.sensor(
        name="iris_health_sensor",
        minimum_interval_seconds=HEALTH_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates every freshness, quarantine and client check each minute, with no run, and"
        " records a verdict when it changes (and hourly otherwise), so a stalled pipeline shows up even"
        " when nothing arrives.",
    )
    def iris_health_sensor(context: dg.SensorEvaluationContext):
        evaluations = [as_evaluation(r) for r in health_results(registry, Spool(spool_root), max_lag_s, client_max_silence_s)]
        latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [e.asset_check_key for e in evaluations]
        )
        changed = changed_evaluations(evaluations, latest, time.time())
        summary = f"{len(evaluations)} checks evaluated, {len(changed)} verdict(s) recorded"
        return dg.SensorResult(asset_events=changed, skip_reason=dg.SkipReason(summary))  # "skipped": no run

    return iris_health_sensor


def build_health_job(registry: Registry, max_lag_s: float, client_max_silence_s: float) -> dg.JobDefinition:
    @dg.op(required_resource_keys={"spool"})
    def evaluate_iris_health(context: dg.OpExecutionContext) -> None:
        """Freshness and quarantine of every table, the IRIS client's health and the whole quarantine."""
        for result in health_results(registry, context.resources.spool.get(), max_lag_s, client_max_silence_s):
            context.log_event(as_evaluation(result))

    @dg.job(
        name="iris_health",
        description="Evaluate every freshness, quarantine and client check now (reads only; the sensor"
        " iris_health_sensor does it each minute without a run).",
        executor_def=dg.in_process_executor,
        tags=MAX_RUNTIME,
    )
    def iris_health() -> None:
        evaluate_iris_health()

    return iris_health
