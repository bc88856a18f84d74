"""The spool sensor: one run per tick for every dataset with pending files, none while one is in flight."""

import json

import dagster as dg

from iris_pipeline.defs.iris_tables import UNREGISTERED_KEY
from iris_pipeline.defs.sensors import RETRY_AFTER_S
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


def test_leftovers_of_a_failed_run_are_retried_with_backoff(pipeline_env, spool):
    spool.write_incoming("FREQ", "f1.json", body(freq_records()))
    defs = _defs()
    with dg.instance_for_test() as instance:
        first = _sensor(defs).evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert len(first.run_requests) == 1
        # The run failed and left f1.json behind; with no new file the next tick waits...
        second = _sensor(defs).evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor)
        )
        assert second.run_requests == []
        # ...until the back-off has passed,
        old = json.loads(first.cursor) | {"requested_at": json.loads(first.cursor)["requested_at"] - RETRY_AFTER_S - 1}
        third = _sensor(defs).evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=json.dumps(old))
        )
        assert len(third.run_requests) == 1
        # ...or a new file arrives.
        spool.write_incoming("FREQ", "f2.json", body(freq_records()))
        fourth = _sensor(defs).evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor)
        )
        assert len(fourth.run_requests) == 1
