"""The job that loads the IRIS tables (the health job is in health.py)."""

from __future__ import annotations

import dagster as dg

from iris_pipeline.defs.realtime.tables import GROUP

# Nothing waits forever: run monitoring fails a run that outlives this (it would hold the warehouse).
# A 3-day IRIS backlog (~860,000 files) drains in a few minutes.
MAX_RUNTIME = {"dagster/max_runtime": "3600"}

iris_ingest = dg.define_asset_job(
    "iris_ingest",
    selection=dg.AssetSelection.groups(GROUP),
    description="Load every *_iris table that has files pending in the spool (one step, in-process).",
    executor_def=dg.in_process_executor,
    tags=MAX_RUNTIME,  # writers are serialised by the assets' pool (see dagster.yaml)
)
