"""The spool sensor: one run per tick for every dataset with pending files, none while one is in flight."""

import os

import dagster as dg

from iris_pipeline.defs.realtime.sensors import TICK_S, backoff_ticks
from iris_pipeline.defs.realtime.tables import UNREGISTERED_KEY
from iris_pipeline_tests.conftest import body, freq_records


def _sensor(defs):
    return defs.resolve_sensor_def("iris_spool_sensor")


def _defs():
    from iris_pipeline.definitions import build_definitions

    return build_definitions()


def test_one_run_request_covers_every_pending_dataset(pipeline_env, spool):
    spool.write_incoming("FREQ", "f1.json", body(freq_records()))
    spool.write_incoming("FREQ", "f2.json", body(freq_records()))
    spool.write_incoming("FUELINST", "fi.json", body([{"fuelType": "WIND"}]))
    spool.write_incoming("NEWCODE", "n.json", body([{"a": 1}]))
    defs = _defs()
    with dg.instance_for_test() as instance:
        result = _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert set(request.asset_selection) == {
        dg.AssetKey("bmrs_freq_iris"), dg.AssetKey("bmrs_fuelinst_iris"), UNREGISTERED_KEY
    }
    assert request.tags["iris_pipeline/pending_files"] == "4"


def test_no_request_while_a_run_is_in_flight(pipeline_env, spool):
    spool.write_incoming("FREQ", "f1.json", body(freq_records()))
    defs = _defs()
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(job_name="iris_ingest", run_id="in-flight-run", status=dg.DagsterRunStatus.STARTED)
        )
        result = _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert result.run_requests == [] and "in flight" in result.skip_message
        instance.report_run_canceled(instance.get_run_by_id("in-flight-run"))
        result = _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert len(result.run_requests) == 1


def test_empty_spool_requests_nothing(pipeline_env, spool):
    defs = _defs()
    with dg.instance_for_test() as instance:
        result = _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert result.run_requests == [] and "empty" in result.skip_message


FREQ = dg.AssetKey("bmrs_freq_iris")
FUELINST = dg.AssetKey("bmrs_fuelinst_iris")


def _tick(defs, instance, cursor=None):
    return _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor))


def _finished(instance, status, keys, run_id=None):
    run_id = run_id or f"run-{len(instance.get_run_records())}"
    run = dg.DagsterRun(job_name="iris_ingest", run_id=run_id, status=status, asset_selection=frozenset(keys))
    instance.add_run(run)
    return run_id


def _loaded(spool, dataset, name):
    """What a successful run does to a file: move it out of incoming/."""
    day = spool.archive / dataset / "2025-01-01"
    day.mkdir(parents=True, exist_ok=True)
    (spool.incoming / dataset / name).rename(day / name)


def test_a_clock_stepped_back_does_not_hold_back_new_files(pipeline_env, spool):
    import time

    spool.write_incoming("FREQ", "f1.json", body(freq_records()))
    defs = _defs()
    with dg.instance_for_test() as instance:
        first = _tick(defs, instance)
        assert len(first.run_requests) == 1
        _finished(instance, dg.DagsterRunStatus.SUCCESS, [FREQ])
        _loaded(spool, "FREQ", "f1.json")
        # The clock steps back an hour: the next file's mtime is an hour earlier than the first's
        # (the sensor reads no clock itself; the daemon's side is the test further down).
        back = time.time() - 3600
        spool.write_incoming("FREQ", "f2.json", body(freq_records()))
        os.utime(spool.incoming / "FREQ" / "f2.json", (back, back))
        second = _tick(defs, instance, first.cursor)
    assert len(second.run_requests) == 1


def test_a_file_with_a_future_mtime_does_not_hold_back_later_files(pipeline_env, spool):
    import time

    spool.write_incoming("FREQ", "future.json", body(freq_records()))
    os.utime(spool.incoming / "FREQ" / "future.json", (time.time() + 3600, time.time() + 3600))
    defs = _defs()
    with dg.instance_for_test() as instance:
        first = _tick(defs, instance)
        assert len(first.run_requests) == 1
        _finished(instance, dg.DagsterRunStatus.SUCCESS, [FREQ])
        _loaded(spool, "FREQ", "future.json")
        spool.write_incoming("FREQ", "next.json", body(freq_records()))
        second = _tick(defs, instance, first.cursor)
    assert len(second.run_requests) == 1


def test_leftovers_of_a_failed_run_are_retried_with_backoff(pipeline_env, spool):
    spool.write_incoming("FREQ", "f1.json", body(freq_records()))
    defs = _defs()
    with dg.instance_for_test() as instance:
        _finished(instance, dg.DagsterRunStatus.FAILURE, [FREQ])
        cursor, waited = None, []
        for _ in range(10):  # one failure: 10 s, two ticks
            result = _tick(defs, instance, cursor)
            cursor = result.cursor
            if result.run_requests:
                break
            waited.append(result.skip_message)
            spool.write_incoming("FREQ", f"new{len(waited)}.json", body(freq_records()))  # new files wait too
        assert len(waited) == backoff_ticks(1) - 1 == 1 and "left behind" in waited[0]
        # The retry fails too: the wait doubles.
        _finished(instance, dg.DagsterRunStatus.FAILURE, [FREQ])
        skips = 0
        while not (result := _tick(defs, instance, cursor)).run_requests:
            cursor, skips = result.cursor, skips + 1
            assert skips < 20
        assert skips == backoff_ticks(2) - 1 == 3
        assert backoff_ticks(9) * TICK_S == 60  # capped
        # After a success the next tick with files requests at once.
        _finished(instance, dg.DagsterRunStatus.SUCCESS, [FREQ])
        spool.write_incoming("FREQ", "f9.json", body(freq_records()))
        assert len(_tick(defs, instance, result.cursor).run_requests) == 1


def test_a_failed_runs_datasets_wait_but_the_others_go_at_once(pipeline_env, spool, warehouse_path):
    from iris_pipeline.warehouse.duckdb_warehouse import DuckDBWarehouse

    with DuckDBWarehouse(warehouse_path) as wh:  # FREQ cannot load; FUELINST can
        wh.con.execute("CREATE VIEW bmrs_freq_iris AS SELECT 1 AS frequency")  # sabotage: not through the interface
    spool.write_incoming("FREQ", "f.json", body(freq_records()))
    spool.write_incoming("FUELINST", "fi.json", body([{"fuelType": "WIND", "generation": 1000}]))
    defs = _defs()
    with dg.instance_for_test() as instance:
        run = defs.resolve_job_def("iris_ingest").execute_in_process(
            instance=instance, asset_selection=[FREQ, FUELINST], raise_on_error=False
        )
        assert not run.success
        spool.write_incoming("FUELINST", "fi2.json", body([{"fuelType": "CCGT", "generation": 9000}]))
        result = _tick(defs, instance)
    assert [r.asset_selection for r in result.run_requests] == [[FUELINST]]


def test_the_daemon_evaluates_the_sensor_on_every_pass_of_its_loop():
    """What the daemon reads is the sensor as its code server serialises it (a RemoteSensor built from
    the sensor's snapshot), which turns a minimum interval of 0 into Dagster's 30 s default: the spool
    sensor must give the loop's 5 s itself. (Before, it gave 0, and ticked every 30 s: p95 latency 31 s.)"""
    import time
    import types

    from dagster._core.remote_representation.external import RemoteSensor
    from dagster._core.remote_representation.external_data import SensorSnap
    from dagster._core.scheduler.instigation import SensorInstigatorData
    from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME, is_under_min_interval

    defs = _defs()
    snap = SensorSnap.from_def(_sensor(defs), defs.get_repository_def())
    # RemoteSensor's own property, on a stand-in holding the real snapshot (a real one needs a code server)
    remote = types.SimpleNamespace(_sensor_snap=snap)
    remote.min_interval_seconds = RemoteSensor.min_interval_seconds.fget(remote)
    assert remote.min_interval_seconds == TICK_S == MIN_INTERVAL_LOOP_TIME
    one_loop_ago = time.time() - MIN_INTERVAL_LOOP_TIME
    state = types.SimpleNamespace(instigator_data=SensorInstigatorData(
        last_tick_timestamp=one_loop_ago, last_tick_start_timestamp=one_loop_ago))
    assert not is_under_min_interval(state, remote)
    from dagster._record import copy

    unset = types.SimpleNamespace(_sensor_snap=copy(snap, min_interval=0))
    assert RemoteSensor.min_interval_seconds.fget(unset) == 30  # 0 is "not set" to Dagster: its default


# --- the health sensor: every check each minute, no run, a verdict recorded when it changes -----------

def _health_tick(defs, instance):
    """One tick as the sensor daemon runs it: evaluate, then store the events it returned."""
    result = defs.resolve_sensor_def("iris_health_sensor").evaluate_tick(dg.build_sensor_context(instance=instance))
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.asset_events}


def test_health_sensor_records_only_changed_verdicts_and_starts_no_run(pipeline_env, spool):
    import time

    from iris_pipeline.registry import load_registry

    defs = _defs()
    sensor = defs.resolve_sensor_def("iris_health_sensor")
    assert sensor.minimum_interval_seconds <= 60 and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        first = _health_tick(defs, instance)
        assert len(first) == 2 * len(load_registry()) + 3  # every table's two checks, unregistered, feed's two
        assert first[("bmrs_freq_iris", "freshness")].severity == dg.AssetCheckSeverity.WARN  # never loaded
        assert _health_tick(defs, instance) == {}  # nothing changed: nothing recorded

        spool.write_incoming("FREQ", "old.json", body(freq_records()))
        old = time.time() - 360  # waiting 6 minutes: more than the 5-minute limit
        os.utime(spool.incoming / "FREQ" / "old.json", (old, old))
        stale = _health_tick(defs, instance)
        assert set(stale) == {("bmrs_freq_iris", "freshness")}
        freq = stale[("bmrs_freq_iris", "freshness")]
        assert not freq.passed and freq.severity == dg.AssetCheckSeverity.ERROR and "waiting" in freq.description
        latest = instance.get_latest_asset_check_evaluation_record(freq.asset_check_key)
        assert latest.evaluation.severity == dg.AssetCheckSeverity.ERROR and not latest.evaluation.passed
        assert _health_tick(defs, instance) == {}
        assert instance.get_run_records() == []  # all of it without a single run


def test_health_sensor_follows_what_an_ingest_run_recorded():
    """The latest evaluation may come from an ingest run: the sensor compares with the instance, not
    with its own memory, and restates an unchanged verdict once it is an hour old."""
    from iris_pipeline.defs.realtime.health import RESTATE_AFTER_S, changed_evaluations

    key = dg.AssetKey("bmrs_freq_iris")
    failing = dg.AssetCheckEvaluation(asset_key=key, check_name="freshness", passed=False,
                                      severity=dg.AssetCheckSeverity.ERROR)
    passing = dg.AssetCheckEvaluation(asset_key=key, check_name="freshness", passed=True,
                                      severity=dg.AssetCheckSeverity.ERROR)

    class Record:  # the two fields of an AssetCheckExecutionRecord the sensor reads
        def __init__(self, evaluation, create_timestamp):
            self.evaluation, self.create_timestamp = evaluation, create_timestamp

    now = 1_000_000.0
    assert changed_evaluations([failing], {}, now) == [failing]
    assert changed_evaluations([failing], {failing.asset_check_key: Record(failing, now - 60)}, now) == []
    assert changed_evaluations([failing], {failing.asset_check_key: Record(passing, now - 5)}, now) == [failing]
    old = {failing.asset_check_key: Record(failing, now - RESTATE_AFTER_S - 1)}
    assert changed_evaluations([failing], old, now) == [failing]
