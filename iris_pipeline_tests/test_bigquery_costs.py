"""The BigQuery cost model's arithmetic (benchmarks/bigquery_costs.py), on hand-checked inputs."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from iris_pipeline import codec
from iris_pipeline.registry import load_registry

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bigquery_costs.py"


@pytest.fixture(scope="module")
def costs():
    spec = importlib.util.spec_from_file_location("bigquery_costs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_logical_bytes_follow_bigquery_size_rules(costs):
    record = {"settlementDate": "2025-06-02", "settlementPeriod": 3, "bmUnit": "T_DRAXX-1", "offer": 70.5,
              "flag": True, "extra": {"a": 1}, "gone": None}
    declared = {"settlementDate": "DATE", "settlementPeriod": "INT64", "bmUnit": "STRING", "offer": "FLOAT64",
                "flag": "BOOL", "gone": "STRING"}
    converted = codec.to_records_table(
        [record], declared, pa.array(["BOD_1.json"]), pa.array([0]),
        pa.scalar(costs.DAY_START, codec.ARROW_TYPES["TIMESTAMP"]))
    # DATE 8 + INT64 8 + STRING 2+9 + FLOAT64 8 + BOOL 1 + JSON '{"a":1}' 7 + NULL 0
    # + _source_file 2+10 + _record_index 8 + _ingested_at 8
    assert costs.logical_bytes(converted.table, converted.column_types) == 8 + 8 + 11 + 8 + 1 + 7 + 0 + 12 + 8 + 8


def test_storage_bill_moves_partitions_to_long_term_after_90_days(costs):
    per_day = costs.GIB / 10  # 0.1 GiB a day
    active, long_term, bill = costs.storage_bill(per_day, 12)
    assert active == pytest.approx(9.0)
    assert long_term == pytest.approx((365.25 - 90) / 10)
    assert bill == pytest.approx(long_term * 0.01)  # 9 GiB active is inside the 10 GiB free tier


def test_every_statement_bills_at_least_10_mb_per_table_referenced(costs):
    dataset = load_registry()["FREQ"]
    day = costs.DatasetDay(dataset, messages=720, rows=5760, logical_bytes=5760 * 88,
                           ledger_bytes=720 * 144, probe_bytes=720 * 128)
    day.messages_by_minute[::2] = 1
    day.rows_by_minute[::2] = 8
    q = costs.query_day({"FREQ": day})
    assert (q.flushes, q.load_jobs, q.statements) == (720, 1440, 1440)
    # per flush: the table's INSERT (staging + ledger probe) and the ledger's INSERT (staging + probe)
    assert q.billed_bytes == 720 * 4 * costs.MIN_BILLED_PER_TABLE
    once = costs.query_day({"FREQ": day}, probe_once=True)
    # the table's INSERT reads only its staging table; the probe statement reads the staging ledger and
    # the ledger; the ledger's INSERT only the staging ledger
    assert once.billed_bytes == 720 * (1 + 2 + 1) * costs.MIN_BILLED_PER_TABLE
    assert once.statements == 720 * 3
    assert costs.query_day({"FREQ": day}, flush_minutes=4).flushes == 360
    assert np.count_nonzero(day.messages_by_minute) == 720
