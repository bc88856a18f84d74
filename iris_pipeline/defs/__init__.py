"""The Dagster layer: wires the framework-free core into assets, checks, sensors, schedules, resources."""
