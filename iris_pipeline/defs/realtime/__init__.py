"""The real-time half: the IRIS feed, the spool -> `bmrs_<code>_iris` load, and the checks that watch it.

client.py      the `iris_spool_feed` asset (the client runs outside Dagster) and its client_health check
tables.py      one subsettable multi-asset loading every `bmrs_<code>_iris` table, with its checks
checks.py      the per-table checks (freshness, quarantine, all codes registered) tables.py declares
quarantine.py  one check over the whole of spool/quarantine/
jobs.py        `iris_ingest`, the job that loads the tables
sensors.py     the spool sensor starting `iris_ingest` whenever files are pending
health.py      every check evaluated without a run: the `iris_health_sensor` and the `iris_health` job
archive.py     retention of loaded files in spool/archive/
"""

from iris_pipeline.defs.realtime.archive import build_archive_retention
from iris_pipeline.defs.realtime.client import build_client_health_check, iris_feed
from iris_pipeline.defs.realtime.health import build_health_job, build_health_sensor
from iris_pipeline.defs.realtime.jobs import iris_ingest
from iris_pipeline.defs.realtime.quarantine import spool_quarantine_check
from iris_pipeline.defs.realtime.sensors import build_spool_sensor
from iris_pipeline.defs.realtime.tables import build_iris_tables

__all__ = ["build_archive_retention", "build_client_health_check", "build_health_job", "build_health_sensor",
           "build_iris_tables", "build_spool_sensor", "iris_feed", "iris_ingest", "spool_quarantine_check"]
