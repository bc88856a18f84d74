"""The spool sensor: one `iris_ingest` run whenever files are pending and no such run is in flight.

It decides from the spool's contents and the instance's run records only, never from file mtimes or
the wall clock, so neither a clock stepped back nor a file with a future mtime holds ingestion back.
Datasets that a failed run left behind wait for a back-off that grows with each consecutive failure;
it is counted in sensor ticks (about TICK_S apart), not measured against stored times.

Its minimum interval is the daemon's loop (TICK_S, 5 s), so it is evaluated on every pass. It must be
given: Dagster reads 0 as "not set" and then waits its default 30 s between ticks (which put the
latency target out of reach). Dagster's daemon compares the interval with the wall-clock time of the
last tick, so a clock stepped back by an hour pauses this sensor (and every other) for that hour:
a limit of Dagster's, not avoidable here; the sensor's own decisions never read the clock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping

import dagster as dg

from iris_pipeline.defs.realtime.tables import key_for_code
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.spool import Spool

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# A cancelled run says nothing about its files: only failures back off.
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
TICK_S = 5  # the sensor daemon's loop (dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME)
BACKOFF_S = (10, 20, 40, 60)  # after 1, 2, 3, 4+ consecutive failures
HISTORY = 20  # finished runs read per tick to count consecutive failures


@dataclass(frozen=True)
class IngestHistory:
    """What the instance says about recent `iris_ingest` runs."""

    in_flight: bool = False
    failures: int = 0  # consecutive failed runs of the datasets below, newest first
    failed_run_id: str | None = None
    blamed: frozenset[dg.AssetKey] | None = None  # what the newest failed run did not load; None: everything


def backoff_ticks(failures: int) -> int:
    return math.ceil(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1] / TICK_S)


def ingest_request(
    pending: Mapping[str, Mapping[str, float]], registry: Registry, history: IngestHistory, cursor: str | None
) -> tuple[dg.RunRequest | dg.SkipReason, str | None]:
    """Decide one tick from `Spool.stats()` and the run history. The cursor counts the ticks waited
    since the newest failed run was first seen."""
    if history.in_flight:
        return dg.SkipReason("an iris_ingest run is in flight"), cursor
    if not pending:
        return dg.SkipReason("spool is empty"), None
    codes = set(pending)
    state = None
    if history.failures:
        state = json.loads(cursor) if cursor else {}
        if state.get("failed_run") != history.failed_run_id:
            state = {"failed_run": history.failed_run_id, "ticks": 0}
        state["ticks"] += 1
        wait = backoff_ticks(history.failures) - state["ticks"]
        if wait > 0:  # datasets the failed run did not touch, or loaded, go now; the rest wait
            codes = {c for c in codes if history.blamed is not None and key_for_code(registry, c) not in history.blamed}
            if not codes:
                return dg.SkipReason(
                    f"retrying what run {history.failed_run_id} left behind ({history.failures} consecutive"
                    f" failure(s)) in about {wait * TICK_S} s"
                ), json.dumps(state)
    keys = sorted({key_for_code(registry, code) for code in codes}, key=lambda k: k.to_user_string())
    request = dg.RunRequest(
        asset_selection=keys,
        tags={
            "iris_pipeline/pending_files": str(int(sum(pending[c]["files"] for c in codes))),
            "iris_pipeline/datasets": str(len(codes)),
        },
    )
    return request, json.dumps(state) if state else None


def ingest_history(instance: dg.DagsterInstance, job_name: str) -> IngestHistory:
    in_flight = bool(instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1))
    finished = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, statuses=FINISHED), limit=HISTORY)
    failures, failed, blamed = 0, None, None
    for record in finished:  # newest first
        run = record.dagster_run
        if run.status == dg.DagsterRunStatus.SUCCESS:
            if failed is None or _covers(run.asset_selection, blamed):
                break
            continue  # a success of other datasets does not end the failed datasets' streak
        failures += 1
        if failed is None:
            failed, blamed = run, _not_loaded(instance, run)
    return IngestHistory(in_flight, failures, failed.run_id if failed else None, blamed)


def _covers(selection: frozenset[dg.AssetKey] | None, keys: frozenset[dg.AssetKey] | None) -> bool:
    return selection is None or (keys is not None and keys <= selection)


def _not_loaded(instance: dg.DagsterInstance, run: dg.DagsterRun) -> frozenset[dg.AssetKey] | None:
    if run.asset_selection is None:
        return None
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    loaded = {r.event_log_entry.dagster_event.asset_key for r in records if r.event_log_entry.dagster_event}
    return frozenset(run.asset_selection - loaded)


def build_spool_sensor(job: dg.UnresolvedAssetJobDefinition, spool_root: str, registry: Registry | None = None):
    registry = registry or load_registry()

    @dg.sensor(
        name="iris_spool_sensor",
        job=job,
        minimum_interval_seconds=TICK_S,  # every pass of the daemon's loop; 0 would mean Dagster's 30 s
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests one iris_ingest run covering every dataset with files in spool/incoming,"
        " never while another iris_ingest run is in flight; datasets a failed run left behind are retried"
        f" after {BACKOFF_S[0]}–{BACKOFF_S[-1]} s.",
    )
    def iris_spool_sensor(context: dg.SensorEvaluationContext):
        history = ingest_history(context.instance, job.name)
        result, cursor = ingest_request(Spool(spool_root).stats(), registry, history, context.cursor)
        if cursor != context.cursor:
            context.update_cursor(cursor)
        return result

    return iris_spool_sensor
