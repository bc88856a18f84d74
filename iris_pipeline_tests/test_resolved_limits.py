"""bmrs_mels_resolved / bmrs_mils_resolved on both backends (a DuckDB file and the BigQuery emulator),
against positions worked out by hand from Elexon's rule (docs/mil_mel_resolution.md in
elexon-data/insights-docs, and its two diagrams).

Rows go in the way production loads them: IRIS files appended to bmrs_mels_iris (the publish time in
the file name is when a file "arrived"), API days replaced in bmrs_mels (historic.replace_days); then the
unified view, then the resolved view.
"""

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from iris_pipeline import codec
from iris_pipeline.historic import replace_days
from iris_pipeline.registry import load_registry
from iris_pipeline.resolved import HORIZON_DAYS, RESOLVED_COLUMNS, create_resolved_view, resolved_name
from iris_pipeline.unified import create_unified_view
from iris_pipeline.warehouse.base import LoadedFile


@pytest.fixture
def wh(any_warehouse):
    """Each backend in turn: a DuckDB file, and a dataset on the BigQuery emulator."""
    return any_warehouse

UTC = dt.timezone.utc
LONDON = ZoneInfo("Europe/London")
REGISTRY = load_registry()
MELS, MILS = REGISTRY["MELS"], REGISTRY["MILS"]
UNIT = "T_ABRBO-1"
SEQ = 103_300_000  # a realistic notificationSequence; the diagram's 0003 is SEQ + 3
DAY = "2025-06-02"  # a BST day: 11:00 UTC is settlement period 25
_files = itertools.count(1)


def at(clock: str, day: str = DAY) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{clock}:00+00:00")


def declaration(n, time_from, time_to, level_from, level_to, *, unit=UNIT, notified="08:00", day=DAY, code="MELS"):
    """One raw row: sequence SEQ + n, notified on `day` at `notified` (UTC clock times)."""
    start = at(time_from, day) if isinstance(time_from, str) else time_from
    end = at(time_to, day) if isinstance(time_to, str) else time_to
    return {  # no settlementPeriod: the view computes its own
        "dataset": code, "settlementDate": start.astimezone(LONDON).date().isoformat(),
        "timeFrom": start.isoformat(), "timeTo": end.isoformat(), "levelFrom": level_from, "levelTo": level_to,
        "notificationTime": at(notified, day).isoformat(), "notificationSequence": SEQ + n,
        "nationalGridBmUnit": unit.removeprefix("T_"), "bmUnit": unit,
    }


def send(wh, published: str, *records, dataset=MELS, day=DAY):
    """An IRIS file of `records` published at `published` (UTC clock time on `day`), appended as the
    loader appends one. Returns its name."""
    stamp = at(published, day).strftime("%Y%m%d%H%M")
    name = f"{dataset.code}_{stamp}_{next(_files):05d}.json"
    converted = codec.to_records_table(
        list(records), {c.name: c.type for c in dataset.columns}, pa.array([name] * len(records), pa.string()),
        pa.array(range(len(records)), pa.int64()), pa.scalar(at(published, day), codec.ARROW_TYPES["TIMESTAMP"]),
    )
    views(wh, dataset)
    table = wh.table_columns(dataset.table_name)
    wh.append(dataset.code, dataset.table_name, codec.conform(converted, table),
              [LoadedFile(name, len(records), f"sha-{name}")])
    return name


def resolved(wh, dataset=MELS, unit=UNIT):
    """The unit's resolved pieces as (from, to, levelFrom, levelTo, n): clock times of DAY."""
    return [(f"{r['timeFrom']:%H:%M}", f"{r['timeTo']:%H:%M}", r["levelFrom"], r["levelTo"],
             r["notificationSequence"] - SEQ) for r in resolved_rows(wh, dataset, unit)]


def views(wh, dataset) -> str:
    """The unified view (and the empty tables under it) and the resolved view, made once: views read
    whatever the tables hold when queried."""
    if resolved_name(dataset) not in wh.tables():
        create_unified_view(wh, dataset)
        create_resolved_view(wh, dataset)
    return resolved_name(dataset)


def resolved_rows(wh, dataset=MELS, unit=UNIT):
    view = views(wh, dataset)
    q = wh.quote
    rows = wh.query(
        f"SELECT {', '.join(q(c) for c in RESOLVED_COLUMNS)} FROM {wh.table_ref(view)}"
        f" WHERE {q('bmUnit')} = '{unit}' ORDER BY {q('timeFrom')}"
    )
    return [{name: (v.astimezone(UTC) if isinstance(v, dt.datetime) else v) for name, v in zip(RESOLVED_COLUMNS, r)}
            for r in rows]


# --- Elexon's diagram, step by step ---------------------------------------------------------------
# SP1 = 11:00-11:30 (settlement period 25), SP2 = 11:30-12:00 (26). Each declaration has its own levels,
# so every resolved piece shows whose levels it carries.
ORIGINAL = [declaration(0, "11:00", "11:15", 10, 10), declaration(1, "11:15", "11:30", 20, 20),
            declaration(2, "11:30", "12:00", 30, 30)]
REDECLARATION_1 = declaration(3, "11:10", "11:25", 40, 45, notified="10:01")
REDECLARATION_2 = declaration(8, "11:20", "11:45", 80, 85, notified="10:02")
REDECLARATION_3 = declaration(5, "11:05", "11:50", 50, 55, notified="10:03")  # older than 0008: its middle is not valid
RESULT_3 = [("11:00", "11:05", 10, 10, 0), ("11:05", "11:20", 50, 55, 5), ("11:20", "11:30", 80, 85, 8),
            ("11:30", "11:45", 80, 85, 8), ("11:45", "11:50", 50, 55, 5), ("11:50", "12:00", 30, 30, 2)]


def test_elexon_diagram_step_by_step(wh):
    send(wh, "10:00", *ORIGINAL)
    assert resolved(wh) == [("11:00", "11:15", 10, 10, 0), ("11:15", "11:30", 20, 20, 1), ("11:30", "12:00", 30, 30, 2)]

    send(wh, "10:01", REDECLARATION_1)  # result 1: 0000 and 0001 truncated
    assert resolved(wh) == [("11:00", "11:10", 10, 10, 0), ("11:10", "11:25", 40, 45, 3), ("11:25", "11:30", 20, 20, 1),
                            ("11:30", "12:00", 30, 30, 2)]

    send(wh, "10:02", REDECLARATION_2)  # result 2: 0001 gone, 0003 and 0002 truncated, 0008 split at 11:30
    assert resolved(wh) == [("11:00", "11:10", 10, 10, 0), ("11:10", "11:20", 40, 45, 3), ("11:20", "11:30", 80, 85, 8),
                            ("11:30", "11:45", 80, 85, 8), ("11:45", "12:00", 30, 30, 2)]

    send(wh, "10:03", REDECLARATION_3)  # result 3: 0000 and 0002 truncated, 0003 gone, 0005 split around 0008
    assert resolved(wh) == RESULT_3

    rows = resolved_rows(wh)
    assert [(r["settlementDate"], r["settlementPeriod"]) for r in rows] == [(dt.date(2025, 6, 2), 25)] * 3 + [
        (dt.date(2025, 6, 2), 26)] * 3
    assert {r["source"] for r in rows} == {"IRIS"}
    assert rows[1]["_source_file"] == rows[4]["_source_file"] != rows[0]["_source_file"]  # both 0005 pieces, one file
    assert [r["nationalGridBmUnit"] for r in rows] == ["ABRBO-1"] * 6


def test_the_same_files_in_any_order_resolve_the_same(wh):
    """Files arrive out of order (after an outage, say): each unit gets the diagram's files in another order,
    published in that order, and every unit resolves to result 3."""
    files = [ORIGINAL, [REDECLARATION_1], [REDECLARATION_2], [REDECLARATION_3]]
    orders = {"T_ORDER-1": (0, 1, 2, 3), "T_ORDER-2": (3, 2, 1, 0), "T_ORDER-3": (2, 0, 3, 1)}
    for minute, (unit, order) in enumerate(orders.items()):
        for step, index in enumerate(order):
            send(wh, f"10:{minute * 10 + step:02d}", *[{**r, "bmUnit": unit} for r in files[index]])
    for unit in orders:
        assert resolved(wh, unit=unit) == RESULT_3, unit


def test_roll_back_keeps_the_levels_and_moves_the_time(wh):
    """Elexon's second diagram: 11:00-11:30 from 10 to 20, then 11:20-11:30 redeclared. 11:00-11:20 keeps
    10 -> 20 (Level To "rolled back" to 11:20, not interpolated to 16.67)."""
    send(wh, "10:00", declaration(0, "11:00", "11:30", 10, 20))
    send(wh, "10:05", declaration(1, "11:20", "11:30", 25, 25, notified="10:05"))
    assert resolved(wh) == [("11:00", "11:20", 10, 20, 0), ("11:20", "11:30", 25, 25, 1)]


def test_equal_sequence_is_decided_by_the_later_notification_time(wh):
    # the later notification, though it arrives first, holds; the earlier one only fills what it leaves
    send(wh, "10:00", declaration(4, "11:10", "11:40", 60, 60, notified="09:30"))
    send(wh, "10:30", declaration(4, "11:00", "11:30", 70, 70, notified="09:00"))
    assert resolved(wh) == [("11:00", "11:10", 70, 70, 4), ("11:10", "11:30", 60, 60, 4), ("11:30", "11:40", 60, 60, 4)]
    assert [r["notificationTime"] for r in resolved_rows(wh)] == [at("09:00"), at("09:30"), at("09:30")]


def test_a_partly_valid_file_applies_only_where_it_is_later(wh):
    send(wh, "10:00", declaration(10, "11:00", "12:00", 100, 100))
    # one file, three segments: older than what holds, newer (and not aligned to anything), older again
    send(wh, "10:10", declaration(9, "11:00", "11:20", 1, 2, notified="10:10"),
         declaration(11, "11:20", "11:40", 3, 4, notified="10:10"),
         declaration(9, "11:40", "12:00", 5, 6, notified="10:10"))
    assert resolved(wh) == [("11:00", "11:20", 100, 100, 10), ("11:20", "11:30", 3, 4, 11),
                            ("11:30", "11:40", 3, 4, 11), ("11:40", "12:00", 100, 100, 10)]


def test_gate_closure_repeat_with_another_time_to_is_decided_by_the_latest_order(wh):
    """The gate-closure file repeats a redeclaration's (unit, timeFrom, sequence, notification time) with
    another timeTo and levelTo. Sequence and time tie, so the registry's latest order decides: the file
    published later holds the overlap; the longer declaration keeps the rest."""
    redeclaration = dict(n=7, time_from="11:00", time_to="13:00", level_from=10, level_to=50, notified="09:00")
    repeat = dict(n=7, time_from="11:00", time_to="11:30", level_from=10, level_to=20, notified="09:00")
    send(wh, "09:01", declaration(**redeclaration))
    send(wh, "10:00", declaration(**repeat))  # gate closure for 11:00, after the redeclaration
    rest = [("11:30", "12:00", 10, 50, 7), ("12:00", "12:30", 10, 50, 7), ("12:30", "13:00", 10, 50, 7)]
    assert resolved(wh) == [("11:00", "11:30", 10, 20, 7)] + rest

    other = "T_OTHER-1"  # the same two rows, the repeat published first: the redeclaration holds everywhere
    send(wh, "09:01", declaration(**repeat, unit=other))
    send(wh, "10:00", declaration(**redeclaration, unit=other))
    assert resolved(wh, unit=other) == [("11:00", "11:30", 10, 50, 7)] + rest


def test_a_redeclaration_touches_only_its_own_unit(wh):
    send(wh, "10:00", declaration(0, "11:00", "12:00", 10, 10),
         declaration(0, "11:00", "12:00", 10, 10, unit="T_NEXT-1"))
    send(wh, "10:05", declaration(1, "11:15", "11:45", 0, 0, notified="10:05"))
    assert resolved(wh) == [("11:00", "11:15", 10, 10, 0), ("11:15", "11:30", 0, 0, 1), ("11:30", "11:45", 0, 0, 1),
                            ("11:45", "12:00", 10, 10, 0)]
    assert resolved(wh, unit="T_NEXT-1") == [("11:00", "11:30", 10, 10, 0), ("11:30", "12:00", 10, 10, 0)]


def test_declarations_without_duration_are_ignored(wh):
    send(wh, "10:00", declaration(0, "11:00", "11:30", 10, 10))
    send(wh, "10:05", declaration(5, "11:10", "11:10", 99, 99), declaration(6, "11:20", "11:05", 98, 98))
    assert resolved(wh) == [("11:00", "11:30", 10, 10, 0)]


def test_a_declaration_is_resolved_over_its_first_horizon_days_at_most(wh):
    send(wh, "10:00", declaration(0, at("11:10"), dt.datetime(9999, 12, 31, tzinfo=UTC), 0, 0))
    rows = resolved_rows(wh)
    assert len(rows) == HORIZON_DAYS * 48
    assert (rows[0]["timeFrom"], rows[-1]["timeTo"]) == (at("11:10"), at("11:00") + dt.timedelta(days=HORIZON_DAYS))


def test_api_rows_and_the_raw_files_they_came_from_resolve_to_one_position(wh):
    """The API serves the resolved position (0000 already cut at 11:10); IRIS the raw files. Together they
    resolve to the raw files' position, each piece once, not a piece per source."""
    send(wh, "10:00", declaration(0, "11:00", "11:15", 10, 10))
    send(wh, "10:01", REDECLARATION_1)
    from_iris = resolved(wh)
    api = [declaration(0, "11:00", "11:10", 10, 10), REDECLARATION_1]
    replace_days(wh, MELS, dt.date(2025, 6, 2), dt.date(2025, 6, 2), api, now=at("13:00"))
    assert resolved(wh) == from_iris == [("11:00", "11:10", 10, 10, 0), ("11:10", "11:25", 40, 45, 3)]
    # the API's rows were fetched after the files were published: on a tie they are the latest
    assert [r["source"] for r in resolved_rows(wh)] == ["HISTORIC", "HISTORIC"]


def test_a_declaration_across_the_autumn_clock_change(wh):
    """2025-10-26 has 50 periods: it starts 2025-10-25 23:00 UTC (BST) and ends 2025-10-27 00:00 UTC (GMT)."""
    start, end = dt.datetime(2025, 10, 26, 0, 45, tzinfo=UTC), dt.datetime(2025, 10, 27, 0, 20, tzinfo=UTC)
    send(wh, "00:00", declaration(0, start, end, 5, 6, day="2025-10-26", notified="00:00"), day="2025-10-26")
    rows = [(r["timeFrom"], r["timeTo"], r["settlementDate"], r["settlementPeriod"], r["levelFrom"], r["levelTo"])
            for r in resolved_rows(wh)]
    oct26, oct27 = dt.date(2025, 10, 26), dt.date(2025, 10, 27)
    assert len(rows) == 48  # 00:45-01:00, 46 whole half-hours, 00:00-00:20
    assert rows[0] == (start, dt.datetime(2025, 10, 26, 1, tzinfo=UTC), oct26, 4, 5, 6)
    assert rows[1][2:4] == (oct26, 5)  # 01:00 UTC is 02:00 BST falling back to 01:00 GMT
    last_half_hour = (dt.datetime(2025, 10, 26, 23, 30, tzinfo=UTC), dt.datetime(2025, 10, 27, tzinfo=UTC))
    assert rows[-2][:4] == (*last_half_hour, oct26, 50)
    assert rows[-1] == (dt.datetime(2025, 10, 27, tzinfo=UTC), end, oct27, 1, 5, 6)
    assert [p for _, _, d, p, _, _ in rows if d == oct26] == list(range(4, 51))


def test_a_declaration_across_the_spring_clock_change(wh):
    """2025-03-30 has 46 periods: it starts 00:00 UTC (GMT) and ends 23:00 UTC (midnight BST)."""
    start, end = dt.datetime(2025, 3, 30, 0, 40, tzinfo=UTC), dt.datetime(2025, 3, 30, 23, 10, tzinfo=UTC)
    send(wh, "00:00", declaration(0, start, end, 5, 6, day="2025-03-30", notified="00:00"), day="2025-03-30")
    rows = [(r["timeFrom"], r["settlementDate"], r["settlementPeriod"]) for r in resolved_rows(wh)]
    mar30, mar31 = dt.date(2025, 3, 30), dt.date(2025, 3, 31)
    assert rows[0] == (start, mar30, 2)
    assert rows[1] == (dt.datetime(2025, 3, 30, 1, tzinfo=UTC), mar30, 3)  # 01:00 UTC is 02:00 BST: period 3
    assert rows[-2] == (dt.datetime(2025, 3, 30, 22, 30, tzinfo=UTC), mar30, 46)
    assert rows[-1] == (dt.datetime(2025, 3, 30, 23, tzinfo=UTC), mar31, 1)
    assert [p for _, d, p in rows if d == mar30] == list(range(2, 47))


def test_mils_resolves_alike(wh):
    send(wh, "10:00", declaration(0, "11:00", "11:30", 10, 20, code="MILS"), dataset=MILS)
    send(wh, "10:05", declaration(1, "11:20", "11:30", 25, 25, notified="10:05", code="MILS"), dataset=MILS)
    assert resolved_name(MILS) == "bmrs_mils_resolved"
    assert resolved(wh, MILS) == [("11:00", "11:20", 10, 20, 0), ("11:20", "11:30", 25, 25, 1)]
    assert resolved(wh, MELS) == []


def test_only_mels_and_mils_have_a_resolved_view():
    assert resolved_name(MELS) == "bmrs_mels_resolved"
    with pytest.raises(ValueError, match="MELS, MILS"):
        resolved_name(REGISTRY["BOD"])
