"""The Dagster layer: wires the framework-free core into assets, checks, sensors, schedules, resources.

One package per area once it has several modules; what serves every area stays at this level.

realtime/         the IRIS feed, the spool -> `bmrs_<code>_iris` load, its sensors and checks
historic.py       daily-partitioned Insights API history (`bmrs_<code>`) and its schedules
unified/          the views over history + IRIS, and the deduplicated tables
resources.py      the resources every area uses (the one place choosing the warehouse backend)
run_launcher.py   the instance's run launcher (named by module path in dagster.yaml)
run_retention.py  the daily purge of old runs from the instance
"""
