"""The Dagster code location loads, validates and has the contract's names."""

import dagster as dg

from iris_pipeline.defs.realtime.tables import UNREGISTERED_KEY
from iris_pipeline.registry import load_registry
from iris_pipeline_tests.dagster_process import REPO


def test_definitions_load_and_validate(pipeline_env):
    from iris_pipeline.definitions import build_definitions

    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    expected = {dg.AssetKey(ds.table_name) for ds in load_registry()} | {UNREGISTERED_KEY}
    assert expected <= set(keys)
    assert dg.AssetKey("bmrs_sys_warn_iris") in keys and dg.AssetKey("bmrs_mibm_mid_iris") in keys
    assert defs.resolve_job_def("iris_ingest") is not None
    assert defs.resolve_sensor_def("iris_spool_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    # health is evaluated by a sensor without runs; no schedule starts a run every minute
    assert defs.resolve_sensor_def("iris_health_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert all(s.job_name != "iris_health" for s in defs.schedules)
    assert defs.resolve_schedule_def("iris_run_purge_daily").job_name == "iris_run_purge"


def test_every_asset_says_what_its_table_holds(pipeline_env):
    from iris_pipeline.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        description = graph.get(key).description or ""
        assert len(description) > 80, key
    fuelinst = graph.get(dg.AssetKey("bmrs_fuelinst_iris"))
    assert "startTime, fuelType" in fuelinst.description


def test_column_schema_lists_every_loaded_column_with_descriptions(pipeline_env):
    from iris_pipeline.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    registry = load_registry()
    for ds in registry:
        schema = graph.get(dg.AssetKey(ds.table_name)).metadata["dagster/column_schema"]
        schema = getattr(schema, "schema", schema)  # a TableSchemaMetadataValue or the schema itself
        columns = {c.name: c for c in schema.columns}
        assert list(columns) == [*ds.column_names, "_source_file", "_record_index", "_ingested_at"], ds.code
        assert (columns["_record_index"].type, columns["_ingested_at"].type) == ("INT64", "TIMESTAMP")
        assert all(columns[name].description for name in ("_source_file", "_record_index", "_ingested_at"))
        for column in ds.columns:  # the registry's description, where it has one
            assert columns[column.name].description == (column.description or None)


def test_column_descriptions_come_from_the_registry():
    import dataclasses

    from iris_pipeline.defs.realtime.tables import column_schema
    from iris_pipeline.registry import Column

    freq = dataclasses.replace(load_registry()["FREQ"], columns=(Column("frequency", "FLOAT64", "System frequency (Hz)"),))
    columns = column_schema(freq).columns
    assert [(c.name, c.type, c.description) for c in columns][0] == ("frequency", "FLOAT64", "System frequency (Hz)")
    assert [c.name for c in columns] == ["frequency", "_source_file", "_record_index", "_ingested_at"]


def test_the_unregistered_asset_names_its_check(pipeline_env):
    from iris_pipeline.definitions import build_definitions
    from iris_pipeline.defs.realtime.checks import REGISTERED

    graph = build_definitions().resolve_asset_graph()
    description = graph.get(UNREGISTERED_KEY).description
    assert f"`{REGISTERED}`" in description and REGISTERED == "all_codes_registered"
    assert dg.AssetCheckKey(UNREGISTERED_KEY, REGISTERED) in graph.asset_check_keys


def test_each_table_has_freshness_and_quarantine_checks(pipeline_env):
    from iris_pipeline.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    check_keys = graph.asset_check_keys
    for ds in load_registry():
        assert dg.AssetCheckKey(dg.AssetKey(ds.table_name), "freshness") in check_keys
        assert dg.AssetCheckKey(dg.AssetKey(ds.table_name), "quarantine_empty") in check_keys


def test_module_level_defs_is_what_dagster_dev_loads(pipeline_env):
    import importlib

    module = importlib.import_module("iris_pipeline.definitions")
    assert isinstance(module.defs, dg.Definitions)


def test_archive_prune_job_keeps_the_configured_days(pipeline_env, spool, monkeypatch):
    import datetime as dt

    from iris_pipeline.definitions import build_definitions

    monkeypatch.setenv("IRIS_ARCHIVE_RETENTION_DAYS", "3")
    today = dt.datetime.now(dt.timezone.utc).date()
    for age in (0, 3, 4, 10):
        day = spool.archive / "FREQ" / (today - dt.timedelta(days=age)).isoformat()
        day.mkdir(parents=True)
        (day / f"f{age}.json").write_bytes(b"[]")
    job = build_definitions().resolve_job_def("iris_archive_prune")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
    left = sorted(p.name for p in spool.archive.rglob("*.json"))
    assert left == ["f0.json", "f3.json"]


def test_one_check_counts_everything_in_quarantine(pipeline_env, spool, tmp_path):
    from iris_pipeline.definitions import build_definitions

    q = spool.quarantine
    for rel in ("FREQ/a.json", "_invalid/b", "NEWCODE/c.json", "bad code/d", "FREQ/deeper/e.json", "stray.json"):
        (q / rel).parent.mkdir(parents=True, exist_ok=True)
        (q / rel).write_bytes(b"[]")
        (q / (rel + ".error")).write_text("why")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for i in range(5):
        (outside / f"{i}.json").write_bytes(b"[]")
    (q / "linked").symlink_to(outside)  # counted as one entry, never followed

    key = dg.AssetCheckKey(dg.AssetKey("iris_spool_feed"), "spool_quarantine_empty")
    defs = build_definitions()
    with dg.instance_for_test() as instance:
        health = defs.resolve_job_def("iris_health").execute_in_process(instance=instance)
    assert key in {dg.AssetCheckKey(e.asset_key, e.check_name) for e in health.get_asset_check_evaluations()}
    job = dg.define_asset_job("quarantine_only", selection=dg.AssetSelection.checks(key))
    small = dg.Definitions(assets=[defs.resolve_assets_def(dg.AssetKey("iris_spool_feed"))], asset_checks=[
        c for c in (defs.asset_checks or []) if key in c.check_keys
    ], jobs=[job], resources=defs.resources)
    with dg.instance_for_test() as instance:
        result = small.resolve_job_def("quarantine_only").execute_in_process(instance=instance)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["quarantined_entries"].value == 7
    assert "_invalid 1" in check.description and "bad code 1" in check.description


def test_runs_are_bounded_in_time():
    """Run monitoring (dagster.yaml) fails a run past its `dagster/max_runtime`: a hung ingest run must
    not hold the warehouse and stall the sensor forever."""
    import yaml

    from iris_pipeline.definitions import build_definitions

    defs = build_definitions()
    assert int(defs.resolve_job_def("iris_ingest").tags["dagster/max_runtime"]) <= 3600
    assert int(defs.resolve_job_def("iris_health").tags["dagster/max_runtime"]) <= 300
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["run_monitoring"]["enabled"] is True


def test_warehouse_writers_take_the_pool_and_the_health_job_never_does():
    """Writers are serialised by the pool however a run starts; the health job must not queue behind a
    load it watches, and a run killed holding the slot must give it back (run monitoring frees it)."""
    import yaml

    from iris_pipeline.definitions import build_definitions
    from iris_pipeline.defs.resources import WAREHOUSE_POOL

    defs = build_definitions()
    loader = defs.resolve_assets_def(dg.AssetKey("bmrs_freq_iris"))
    assert loader.op.pool == WAREHOUSE_POOL
    assert {node.definition.pool for node in defs.resolve_job_def("iris_health").graph.node_dict.values()} == {None}
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    assert instance["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
