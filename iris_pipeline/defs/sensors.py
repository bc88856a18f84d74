"""The spool sensor: one `iris_ingest` run per tick for every dataset with pending files."""

from __future__ import annotations

import json
import time

import dagster as dg

from iris_pipeline.defs.iris_tables import key_for_code
from iris_pipeline.registry import Registry, load_registry
from iris_pipeline.spool import Spool

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
RETRY_AFTER_S = 60.0  # files left by a failed run are retried, but not on every tick


def ingest_request(
    spool: Spool, registry: Registry, cursor: str | None, in_flight: bool, now: float
) -> tuple[dg.RunRequest | dg.SkipReason, str | None]:
    """Decide one tick. The cursor remembers the newest mtime already requested, so files that stay
    pending after a failed run are retried every RETRY_AFTER_S instead of every tick."""
    if in_flight:
        return dg.SkipReason("an iris_ingest run is in flight"), cursor
    stats = spool.stats()
    if not stats:
        return dg.SkipReason("spool is empty"), cursor
    state = json.loads(cursor) if cursor else {"newest_mtime": 0.0, "requested_at": 0.0}
    newest = max(s["newest_mtime"] for s in stats.values())
    if newest <= state["newest_mtime"] and now - state["requested_at"] < RETRY_AFTER_S:
        return dg.SkipReason("no new files since the last run; retrying leftovers later"), cursor
    keys = sorted({key_for_code(registry, code) for code in stats}, key=lambda k: k.to_user_string())
    files = int(sum(s["files"] for s in stats.values()))
    request = dg.RunRequest(
        run_key=f"spool-{newest:.6f}-{files}-{int(now)}",
        asset_selection=keys,
        tags={"iris_pipeline/pending_files": str(files), "iris_pipeline/datasets": str(len(stats))},
    )
    return request, json.dumps({"newest_mtime": newest, "requested_at": now})


def build_spool_sensor(job: dg.UnresolvedAssetJobDefinition, spool_root: str, registry: Registry | None = None):
    registry = registry or load_registry()

    @dg.sensor(
        name="iris_spool_sensor",
        job=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests one iris_ingest run covering every dataset with files in spool/incoming,"
        " never while another iris_ingest run is in flight.",
    )
    def iris_spool_sensor(context: dg.SensorEvaluationContext):
        in_flight = bool(
            context.instance.get_run_records(
                filters=dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1
            )
        )
        result, cursor = ingest_request(Spool(spool_root), registry, context.cursor, in_flight, time.time())
        if cursor != context.cursor:
            context.update_cursor(cursor)
        return result

    return iris_spool_sensor
