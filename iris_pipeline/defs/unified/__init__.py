"""The downstream half: unified and latest views over history + IRIS, and the deduplicated tables.

views.py   one subsettable multi-asset creating every view (DDL only: seconds), with its checks
dedup.py   daily-partitioned `bmrs_<code>_dedup` tables, today's partition refreshed every 5 minutes
checks.py  the table of check name -> finding the two share
"""

from iris_pipeline.defs.unified.dedup import build_dedup_assets, build_dedup_schedules
from iris_pipeline.defs.unified.views import build_unified_views, build_views_automation

__all__ = ["build_dedup_assets", "build_dedup_schedules", "build_unified_views", "build_views_automation"]
