"""codec: decoding IRIS bodies and typing records by the registry schema (real Arrow, no mocks)."""

import datetime as dt

import orjson
import pyarrow as pa
import pytest

from iris_pipeline import codec
from iris_pipeline.codec import ConversionError, DecodeError, decode_body

UTC = dt.timezone.utc
INGESTED_AT = dt.datetime(2024, 3, 31, 0, 59, 59, 123456, tzinfo=UTC)


def convert(records, known=None, source="BOALF_1.json"):
    n = len(records)
    return codec.to_records_table(
        records,
        known or {},
        pa.array([source] * n, pa.string()),
        pa.array(range(n), pa.int64()),
        pa.scalar(INGESTED_AT, codec.ARROW_TYPES["TIMESTAMP"]),
    )


def column(converted, name):
    return converted.table.column(name).to_pylist()


# --- decode_body -------------------------------------------------------------------------------

RECORDS = [{"bmUnit": "T_ABC-1", "levelFrom": 10}, {"bmUnit": "T_ABC-2", "levelFrom": -5}]


def test_decode_json_array():
    assert decode_body(orjson.dumps(RECORDS)) == RECORDS


def test_decode_double_encoded_string_holding_the_array():
    body = orjson.dumps(orjson.dumps(RECORDS).decode())
    assert body.startswith(b'"[')
    assert decode_body(body) == RECORDS


def test_decode_single_object_becomes_one_record():
    assert decode_body(b'{"bmUnit": "T_ABC-1", "levelFrom": 10}') == [RECORDS[0]]


def test_decode_double_encoded_single_object():
    assert decode_body(orjson.dumps('{"a": 1}')) == [{"a": 1}]


def test_decode_empty_array():
    assert decode_body(b"[]") == []
    assert decode_body(b' \n[ ]\n') == []


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "empty file"),
        (b"   \n\t\r\n ", "empty file"),
        (b'[{"a": 1},, {"b": 2}]', "malformed or truncated JSON"),
        (b"[{'a': 1}]", "malformed or truncated JSON"),
        (b'[{"a": 1}, {"b": 2', "malformed or truncated JSON"),
        (b'[{"a": 1}', "malformed or truncated JSON"),
        (b"42", "JSON number is not an array of records"),
        (b"-1.5e3", "JSON number is not an array of records"),
        (b"null", "JSON null is not an array of records"),
        (b"true", "JSON boolean is not an array of records"),
        (b'[{"a": 1}, 2]', "record 1 is a JSON number, not an object"),
        (b'[{"a": 1}, [{"b": 2}]]', "record 1 is a JSON array, not an object"),
        (b'["x"]', "record 0 is a JSON string, not an object"),
        (b'[null]', "record 0 is a JSON null, not an object"),
        (b'"hello, not json"', "double-encoded body is malformed or truncated JSON"),
        (b'"[{\\"a\\": 1}"', "double-encoded body is malformed or truncated JSON"),
        (b'""', "double-encoded body is malformed or truncated JSON"),
        (b'"\\"triple\\""', "JSON string is not an array of records"),
        (b'"42"', "JSON number is not an array of records"),
    ],
)
def test_decode_errors_have_a_clear_reason(body, reason):
    with pytest.raises(DecodeError) as info:
        decode_body(body)
    assert reason in str(info.value)


@pytest.mark.parametrize("body", [b'[{"a": "caf\xe9"}]', b"\xff\xfe[\x00]\x00", b'[{"a": "\xc3"}]'])
def test_decode_non_utf8_bytes(body):
    with pytest.raises(DecodeError, match=r"body is not UTF-8 \(byte \d+\)"):
        decode_body(body)


def test_decode_error_is_a_value_error_not_a_crash():
    # The loader and the client catch DecodeError to quarantine/dead-letter: it must be the only exception.
    for body in (b"", b"{", b"\x80", b"7", b'"x"'):
        with pytest.raises(DecodeError):
            decode_body(body)


# --- timestamps, dates, strings ------------------------------------------------------------------

SAME_INSTANT = dt.datetime(2022, 6, 25, 13, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2022-06-25T13:34:00Z",
        "2022-06-25T13:34:00.0000000+00:00",
        "2022-06-25T14:34:00+01:00",
        "2022-06-25T12:34:00-01:00",
        "2022-06-25T13:34:00.000Z",
        "2022-06-25T13:34:00.0000000Z",
        "2022-06-25T13:34:00",
    ],
)
def test_every_elexon_timestamp_precision_is_the_same_utc_instant(text):
    converted = convert([{"publishTime": text}], {"publishTime": "TIMESTAMP"})
    (value,) = column(converted, "publishTime")
    assert value == SAME_INSTANT
    assert value.utcoffset() == dt.timedelta(0)
    assert converted.table.schema.field("publishTime").type == pa.timestamp("us", tz="UTC")


def test_fractional_seconds_keep_their_value():
    texts = ["2022-06-25T13:34:00.123Z", "2022-06-25T13:34:00.1234567Z", "2022-06-25T14:34:00.5+01:00"]
    converted = convert([{"t": t} for t in texts], {"t": "TIMESTAMP"})
    assert column(converted, "t") == [
        SAME_INSTANT.replace(microsecond=123000),
        SAME_INSTANT.replace(microsecond=123456),  # 7th digit (100 ns) is below Arrow's microseconds
        SAME_INSTANT.replace(microsecond=500000),
    ]


def test_mixed_precisions_in_one_column():
    texts = ["2022-06-25T13:34:00Z", "2022-06-25T13:34:00.0000000+00:00", "2022-06-25T14:34:00+01:00", None]
    converted = convert([{"t": t} for t in texts], {"t": "TIMESTAMP"})
    assert column(converted, "t") == [SAME_INSTANT, SAME_INSTANT, SAME_INSTANT, None]


def test_string_field_holding_a_date_stays_a_string():
    free_text = "2022-06-25T13:34:00Z"
    converted = convert(
        [{"messageHeading": free_text, "relatedInformation": "2022-06-25"}],
        {"messageHeading": "STRING"},
    )
    assert column(converted, "messageHeading") == [free_text]
    assert converted.column_types["messageHeading"] == "STRING"
    # An unknown field is typed by JSON value kind, never by the shape of the string.
    assert converted.column_types["relatedInformation"] == "STRING"
    assert column(converted, "relatedInformation") == ["2022-06-25"]
    assert converted.table.schema.field("relatedInformation").type == pa.string()


def test_unparseable_timestamp_raises_naming_the_field():
    with pytest.raises(ConversionError, match=r"field 'timeFrom'.*not a valid TIMESTAMP"):
        convert([{"timeFrom": "2022-06-25T13:34:00Z"}, {"timeFrom": "yesterday"}], {"timeFrom": "TIMESTAMP"})


def test_date_fields_become_dates():
    converted = convert(
        [{"settlementDate": "2022-06-25"}, {"settlementDate": "2022-06-26T00:00:00Z"}, {"settlementDate": None}],
        {"settlementDate": "DATE"},
    )
    assert column(converted, "settlementDate") == [dt.date(2022, 6, 25), dt.date(2022, 6, 26), None]
    assert converted.table.schema.field("settlementDate").type == pa.date32()


def test_date_field_with_a_time_of_day_is_refused():
    with pytest.raises(ConversionError, match="settlementDate"):
        convert([{"settlementDate": "2022-06-25T13:34:00Z"}], {"settlementDate": "DATE"})


# --- JSON columns ----------------------------------------------------------------------------------

def test_nested_values_in_a_json_column_round_trip():
    values = [[{"level": 1, "time": "2022-06-25T13:34:00Z"}, {"level": 2.5}], {"a": {"b": [1, None, True]}}, "x", 7, None]
    converted = convert([{"levels": v} for v in values], {"levels": "JSON"})
    stored = column(converted, "levels")
    assert converted.column_types["levels"] == "JSON"
    assert all(isinstance(s, str) for s in stored[:-1]) and stored[-1] is None
    assert [orjson.loads(s) for s in stored[:-1]] == values[:-1]


# --- unknown fields --------------------------------------------------------------------------------

def test_unknown_fields_are_kept_with_types_inferred_from_json_kinds():
    records = [
        {"known": "a", "flag": True, "count": 1, "ratio": 0.5, "label": "x", "nested": {"k": [1]}, "list": [1, 2]},
        {"known": "b", "flag": False, "count": 2, "ratio": 1, "label": "y", "nested": {"k": []}, "list": []},
    ]
    converted = convert(records, {"known": "STRING"})
    assert converted.column_types == {
        "known": "STRING",
        "flag": "BOOL",
        "count": "INT64",
        "ratio": "FLOAT64",
        "label": "STRING",
        "nested": "JSON",
        "list": "JSON",
    }
    schema = converted.table.schema
    assert schema.field("flag").type == pa.bool_()
    assert schema.field("count").type == pa.int64()
    assert schema.field("ratio").type == pa.float64()
    assert column(converted, "flag") == [True, False]
    assert column(converted, "count") == [1, 2]
    assert column(converted, "ratio") == [0.5, 1.0]
    assert [orjson.loads(v) for v in column(converted, "nested")] == [{"k": [1]}, {"k": []}]
    assert [orjson.loads(v) for v in column(converted, "list")] == [[1, 2], []]


@pytest.mark.parametrize(
    "values",
    [
        [1, "one"],
        [True, 1],
        [1.5, "x"],
        ["x", {"a": 1}],
        [[1], 2],
    ],
)
def test_unknown_field_with_mixed_kinds_becomes_json(values):
    converted = convert([{"drift": v} for v in values] + [{"drift": None}])
    assert converted.column_types["drift"] == "JSON"
    stored = column(converted, "drift")
    assert stored[-1] is None
    assert [orjson.loads(s) for s in stored[:-1]] == values


def test_unknown_field_that_is_always_null_gets_no_column_yet():
    """Nulls must not lock in a type: the column is made when a value arrives (NULL reads the same)."""
    converted = convert([{"a": None, "b": 1}, {"b": 2}])
    assert "a" not in converted.column_types and "a" not in converted.table.column_names


def test_unknown_field_first_seen_in_a_later_record():
    converted = convert([{"a": 1}, {"a": 2, "newField": "z"}], {"a": "INT64"})
    assert column(converted, "newField") == [None, "z"]
    assert list(converted.column_types) == ["a", "newField"]


# --- numbers -----------------------------------------------------------------------------------------

def test_fraction_in_an_int64_field_widens_the_column_to_float64_without_loss():
    converted = convert([{"generation": 100}, {"generation": 2.5}, {"generation": None}, {"generation": -7}],
                        {"generation": "INT64"})
    assert converted.column_types["generation"] == "FLOAT64"
    assert converted.table.schema.field("generation").type == pa.float64()
    assert column(converted, "generation") == [100.0, 2.5, None, -7.0]


def test_whole_float_in_an_int64_field_stays_int64():
    converted = convert([{"generation": 3.0}, {"generation": 4}, {"generation": -0.0}], {"generation": "INT64"})
    assert converted.column_types["generation"] == "INT64"
    assert converted.table.schema.field("generation").type == pa.int64()
    assert column(converted, "generation") == [3, 4, 0]


def test_ints_in_a_float64_field():
    converted = convert([{"frequency": 50}, {"frequency": 49.95}], {"frequency": "FLOAT64"})
    assert converted.column_types["frequency"] == "FLOAT64"
    assert column(converted, "frequency") == [50.0, 49.95]


def test_large_int64_values_are_exact():
    big = 2**62 + 1  # not representable as a float64
    converted = convert([{"id": big}, {"id": -big}], {"id": "INT64"})
    assert column(converted, "id") == [big, -big]


def test_missing_field_gives_null():
    converted = convert(
        [{"levelFrom": 1, "bmUnit": "A"}, {"bmUnit": "B"}, {"levelFrom": 3}],
        {"levelFrom": "INT64", "bmUnit": "STRING", "soFlag": "BOOL", "timeFrom": "TIMESTAMP"},
    )
    assert column(converted, "levelFrom") == [1, None, 3]
    assert column(converted, "bmUnit") == ["A", "B", None]
    # Declared columns no record carries are still there, all null, with their declared types.
    assert column(converted, "soFlag") == [None, None, None]
    assert converted.table.schema.field("timeFrom").type == pa.timestamp("us", tz="UTC")


def test_string_in_an_int64_field_raises_naming_the_field():
    with pytest.raises(ConversionError) as info:
        convert([{"levelFrom": 1}, {"levelFrom": "12 MW"}], {"levelFrom": "INT64"})
    assert "'levelFrom'" in str(info.value)
    assert "12 MW" in str(info.value)


def test_numeric_string_in_an_int64_field_is_refused_too():
    with pytest.raises(ConversionError, match="levelFrom"):
        convert([{"levelFrom": "12"}], {"levelFrom": "INT64"})


@pytest.mark.parametrize("value", [True, False])
def test_boolean_in_an_int64_field_raises(value):
    with pytest.raises(ConversionError, match="'levelFrom'"):
        convert([{"levelFrom": 1}, {"levelFrom": value}], {"levelFrom": "INT64"})


def test_boolean_in_a_float64_field_raises():
    with pytest.raises(ConversionError, match="'frequency'"):
        convert([{"frequency": True}], {"frequency": "FLOAT64"})


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63) - 1])
def test_integer_beyond_int64_raises_conversion_error_not_overflow(value):
    # The loader quarantines a file on ConversionError; any other exception would fail the dataset every run.
    with pytest.raises(ConversionError, match="'acceptanceNumber'"):
        convert([{"acceptanceNumber": value}], {"acceptanceNumber": "INT64"})


def test_unknown_field_with_an_integer_beyond_int64_is_kept_as_json():
    converted = convert([{"huge": 2**64 - 1}, {"huge": 1}])
    assert converted.column_types["huge"] == "JSON"
    assert [orjson.loads(v) for v in column(converted, "huge")] == [2**64 - 1, 1]


def test_string_in_a_bool_field_raises():
    with pytest.raises(ConversionError, match="'soFlag'"):
        convert([{"soFlag": "true"}], {"soFlag": "BOOL"})


# --- column names -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    ['a"; drop table x; --', "a b", "", "1abc", "_source_file", "_private", "naïve", "x" * 129, "abc\n", "a-b"],
)
def test_a_field_name_that_cannot_be_a_column_is_kept_in_unmapped_fields(name):
    """The message keeps its other fields; the odd one is kept, as JSON, not lost and not SQL."""
    converted = convert([{"ok": 1, name: 2}, {"ok": 3}], {"ok": "INT64"})
    assert column(converted, "ok") == [1, 3]
    assert converted.unmapped_fields == [name]
    assert converted.column_types[codec.UNMAPPED_COLUMN] == "JSON"
    assert [None if v is None else orjson.loads(v) for v in column(converted, codec.UNMAPPED_COLUMN)] == [{name: 2}, None]
    assert set(converted.table.column_names) == {"ok", codec.UNMAPPED_COLUMN, *codec.META_COLUMNS}


def test_field_names_differing_only_in_case_keep_the_first_as_the_column():
    # DuckDB and BigQuery column names are case-insensitive: the later spelling goes to unmapped fields.
    converted = convert([{"bmUnit": "A", "BMUnit": "B"}], {"bmUnit": "STRING"})
    assert column(converted, "bmUnit") == ["A"] and converted.unmapped_fields == ["BMUnit"]
    converted = convert([{"newField": 1}, {"NEWFIELD": 2}])
    assert column(converted, "newField") == [1, None] and converted.unmapped_fields == ["NEWFIELD"]


def test_a_field_whose_case_differs_from_an_existing_column_is_unmapped():
    converted = codec.to_records_table(
        [{"NewField": 5}], {}, pa.array(["f"], pa.string()), pa.array([0]),
        pa.scalar(INGESTED_AT, codec.ARROW_TYPES["TIMESTAMP"]), existing=["newField"],
    )
    assert converted.unmapped_fields == ["NewField"] and "NewField" not in converted.column_types


def test_valid_camel_case_names_are_accepted():
    converted = convert([{"settlementPeriodFrom": 1, "x2_y": 2, "A": 3}])
    assert set(converted.column_types) == {"settlementPeriodFrom", "x2_y", "A"}


# --- meta columns -----------------------------------------------------------------------------------

def test_meta_columns_hold_the_given_values():
    records = [{"a": 1}, {"a": 2}, {"a": 3}]
    converted = codec.to_records_table(
        records,
        {"a": "INT64"},
        pa.array(["f1.json", "f1.json", "f2.json"]),
        pa.array([0, 1, 0], pa.int64()),
        pa.scalar(INGESTED_AT, codec.ARROW_TYPES["TIMESTAMP"]),
    )
    table = converted.table
    assert table.column_names == ["a", "_source_file", "_record_index", "_ingested_at"]
    assert table.column("_source_file").to_pylist() == ["f1.json", "f1.json", "f2.json"]
    assert table.column("_record_index").to_pylist() == [0, 1, 0]
    assert table.column("_ingested_at").to_pylist() == [INGESTED_AT] * 3
    assert table.schema.field("_ingested_at").type == pa.timestamp("us", tz="UTC")
    assert "_source_file" not in converted.column_types  # column_types excludes meta columns


def test_no_records_gives_an_empty_table_with_the_declared_columns():
    converted = convert([], {"a": "INT64", "t": "TIMESTAMP"})
    assert converted.table.num_rows == 0
    assert converted.table.column_names == ["a", "t", "_source_file", "_record_index", "_ingested_at"]
    assert converted.column_types == {"a": "INT64", "t": "TIMESTAMP"}


def test_infer_type():
    assert codec.infer_type([None, None]) is None
    assert codec.infer_type([True, None]) == "BOOL"
    assert codec.infer_type([1, 2]) == "INT64"
    assert codec.infer_type([1, 2.0]) == "FLOAT64"
    assert codec.infer_type([True, 1]) == "JSON"


# --- input quirks ------------------------------------------------------------------------------------

def test_a_utf8_bom_is_accepted():
    assert codec.decode_body(b"\xef\xbb\xbf" + orjson.dumps([{"a": 1}])) == [{"a": 1}]
    double = orjson.dumps("\ufeff" + orjson.dumps([{"a": 2}]).decode())
    assert codec.decode_body(b"\xef\xbb\xbf" + double) == [{"a": 2}]


def test_an_empty_string_in_a_date_or_timestamp_field_is_null():
    converted = convert(
        [{"timeFrom": "", "settlementDate": ""}, {"timeFrom": "2025-01-01T00:00:00Z", "settlementDate": "2025-01-01"}],
        {"timeFrom": "TIMESTAMP", "settlementDate": "DATE"},
    )
    assert column(converted, "timeFrom")[0] is None and column(converted, "settlementDate")[0] is None
    assert column(converted, "settlementDate")[1] == dt.date(2025, 1, 1)
