"""Decode IRIS message bodies and convert records to Arrow, typed by the dataset's schema.

Types come from the registry (the Insights API schema), never from the shape of a string: a free-text
field that happens to look like a date stays a string. Unknown fields are kept as new columns whose
type is inferred from JSON value kinds only (bool, int, float, string, nested → JSON).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

ARROW_TYPES: dict[str, pa.DataType] = {
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "DATE": pa.date32(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "BOOL": pa.bool_(),
    "STRING": pa.string(),
    "JSON": pa.string(),  # JSON text; the warehouse column is JSON
}


COLUMN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
META_COLUMNS = {"_source_file": "STRING", "_record_index": "INT64", "_ingested_at": "TIMESTAMP"}


class DecodeError(ValueError):
    """The body is not a JSON array of records (nor one of the accepted encodings of one)."""


class ConversionError(ValueError):
    """A value cannot be stored in its column's type."""


def decode_body(body: bytes) -> list[dict[str, Any]]:
    """Records of an IRIS message body: a JSON array, a JSON string holding one, or one object."""
    body = body.removeprefix(codecs.BOM_UTF8)
    if not body.strip():
        raise DecodeError("empty file")
    value = _loads(body, "body")
    if isinstance(value, str):
        value = _loads(value.removeprefix("\ufeff").encode("utf-8"), "double-encoded body")
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise DecodeError(f"JSON {_json_kind(value)} is not an array of records")
    if not set(map(type, value)) <= {dict}:  # one pass in C; the loop below only names the culprit
        for i, record in enumerate(value):
            if not isinstance(record, dict):
                raise DecodeError(f"record {i} is a JSON {_json_kind(record)}, not an object")
    return value


_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _json_kind(value: Any) -> str:
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def _loads(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise DecodeError(f"{what} is not UTF-8 (byte {uexc.start})") from None
        raise DecodeError(f"{what} is malformed or truncated JSON: {exc}") from None


@dataclass
class Converted:
    table: pa.Table
    column_types: dict[str, str]  # every column in the table (meta columns excluded), final types
    unmapped_fields: list[str] = field(default_factory=list)  # names kept in UNMAPPED_COLUMN


def infer_type(values: Iterable[Any]) -> str | None:
    """Type of an unknown field from JSON value kinds only; None when every value is null."""
    kinds = set(map(type, values)) - {type(None)}
    if not kinds:
        return None
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FLOAT64"
    if kinds == {str}:
        return "STRING"
    return "JSON"


UNMAPPED_COLUMN = "_unmapped_fields"  # JSON object of the fields whose names cannot be columns


def to_records_table(
    records: Sequence[Mapping[str, Any]],
    declared: Mapping[str, str],
    source_files: pa.Array,
    record_indexes: pa.Array,
    ingested_at: pa.Scalar,
    existing: Iterable[str] = (),
) -> Converted:
    """Arrow table of `records`: `declared` (registry) fields strictly typed, other fields as new columns
    typed by their JSON value kinds alone (so that how messages were batched never changes a type; the
    loader widens a table's column to meet them, see `warehouse.base.evolved_type`).

    A field that is null in every record gets no column: nulls must not lock in a type. A field whose name
    cannot be a column (not an identifier, or only its case differs from a column in `existing`, the
    table's columns, or from an earlier field) goes into one JSON object column, `_unmapped_fields`.
    """
    names: dict[str, None] = dict.fromkeys(declared)
    folded = {name.lower(): name for name in names} | {name.lower(): name for name in existing}
    unmapped: dict[str, None] = {}
    for record in records:
        if not record.keys() <= names.keys():
            # in the record's own order: a set difference iterates in hash order, which differs per
            # process (PYTHONHASHSEED), and would decide which spelling becomes the column
            for name in [n for n in record if n not in names and n not in unmapped]:
                if COLUMN_NAME_RE.fullmatch(name) and folded.setdefault(name.lower(), name) == name:
                    names[name] = None
                else:
                    unmapped[name] = None
    arrays, types, kept = [], {}, []
    columns = _columns(records, names)
    for name in names:
        values = columns[name]
        col_type = declared.get(name) or infer_type(values)
        if col_type is None:
            continue  # only nulls so far: an absent column reads as NULL all the same
        array, col_type = _column(name, values, col_type, unknown=name not in declared)
        arrays.append(array)
        types[name] = col_type
        kept.append(name)
    if unmapped:
        arrays.append(_json([{k: r[k] for k in unmapped if k in r} or None for r in records]))
        types[UNMAPPED_COLUMN] = "JSON"
        kept.append(UNMAPPED_COLUMN)
    n = len(records)
    meta = [source_files, record_indexes, pa.repeat(ingested_at, n) if n else pa.array([], ARROW_TYPES["TIMESTAMP"])]
    table = pa.Table.from_arrays(arrays + meta, names=kept + list(META_COLUMNS))
    return Converted(table, types, sorted(unmapped))


def conform(converted: Converted, target: Mapping[str, str]) -> pa.Table:
    """`converted.table` with each column cast to its `target` type, a widening of the chunk's own
    (INT64 to FLOAT64, or anything to JSON text): an earlier chunk may have widened the table's column."""
    table = converted.table
    for name, have in converted.column_types.items():
        want = target.get(name, have)
        if want == have:
            continue
        index = table.column_names.index(name)
        column = table.column(index)
        if want == "FLOAT64":
            array = column.cast(pa.float64())
        elif want == "JSON":
            array = _json(column.to_pylist())
        else:
            raise ConversionError(f"column {name!r}: cannot store {have} values as {want}")
        table = table.set_column(index, name, array)
    return table


def _columns(records: Sequence[Mapping[str, Any]], names: Mapping[str, None]) -> dict[str, Sequence[Any]]:
    """Column-wise values. Records of one message share a field order, so most batches transpose in C."""
    first = tuple(records[0]) if records else ()
    if all(tuple(r) == first for r in records):
        present = dict(zip(first, zip(*(r.values() for r in records))))
        return {name: present[name] if name in present else [None] * len(records) for name in names}
    return {name: [r.get(name) for r in records] for name in names}


_BUILD_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)  # Overflow: beyond int64


def _column(name: str, values: list[Any], col_type: str, *, unknown: bool) -> tuple[pa.Array, str]:
    try:
        return _build(values, col_type)
    except _BUILD_ERRORS as exc:
        if unknown:  # an undeclared field that drifted between kinds: keep it as JSON rather than refuse it
            return _json(values), "JSON"
        sample = next((v for v in values if v is not None and not _fits(v, col_type)), None)
        raise ConversionError(f"field {name!r}: value {str(sample)[:60]!r} is not a valid {col_type}") from exc


def _build(values: list[Any], col_type: str) -> tuple[pa.Array, str]:
    if col_type == "TIMESTAMP":
        return _timestamps(values), col_type
    if col_type == "DATE":
        return _dates(values), col_type
    if col_type in ("INT64", "FLOAT64"):
        return _numbers(values, col_type)
    if col_type == "BOOL":
        return pa.array(values, pa.bool_()), col_type
    if col_type == "STRING":
        return _strings(values), col_type
    return _json(values), "JSON"


def _fits(value: Any, col_type: str) -> bool:
    try:
        _build([value], col_type)
        return True
    except _BUILD_ERRORS:
        return False


_FRACTION_BEYOND_US = r"(\.\d{6})\d+"
_NO_ZONE = r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)$"


def _empty_as_null(strings: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(strings, ""), pa.scalar(None, pa.string()), strings)


def _timestamps(values: list[Any]) -> pa.Array:
    strings = pa.array(values, pa.string())
    try:  # most messages carry ISO instants with a zone, which cast as they are
        return strings.cast(ARROW_TYPES["TIMESTAMP"])
    except pa.ArrowInvalid:
        pass
    strings = _empty_as_null(strings)  # "" is how some senders say "no time"
    strings = pc.replace_substring_regex(strings, _FRACTION_BEYOND_US, r"\1")
    strings = pc.replace_substring_regex(strings, _NO_ZONE, r"\1Z")  # Elexon instants are UTC
    return strings.cast(ARROW_TYPES["TIMESTAMP"])


def _dates(values: list[Any]) -> pa.Array:
    strings = pa.array(values, pa.string())
    try:
        return strings.cast(pa.date32())
    except pa.ArrowInvalid:
        pass
    strings = pc.replace_substring_regex(_empty_as_null(strings), r"^(\d{4}-\d\d-\d\d)T00:00(:00(\.0+)?)?(Z|[+-]00:?00)?$", r"\1")
    return strings.cast(pa.date32())


def _numbers(values: list[Any], col_type: str) -> tuple[pa.Array, str]:
    # Typed builds are fast but lenient (int64 truncates 2.5, both accept True), so check value kinds first.
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {int}:
        return pa.array(values, ARROW_TYPES[col_type]), col_type
    if not kinds <= {int, float}:
        raise ConversionError(f"{', '.join(sorted(k.__name__ for k in kinds))} values")
    floats = pa.array(values, pa.float64())
    if col_type == "INT64" and _whole_numbers(floats):
        return floats.cast(pa.int64()), col_type
    return floats, "FLOAT64"


def _whole_numbers(floats: pa.Array) -> bool:
    """True when every float is an exactly representable integer (3.0 stays INT64; 2.5 widens)."""
    whole = pc.all(pc.equal(pc.floor(floats), floats)).as_py() is not False
    return whole and (pc.max(pc.abs(floats)).as_py() or 0) < 2**53


def _strings(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if v is None or isinstance(v, str) else orjson.dumps(v).decode() for v in values], pa.string())


def _json(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())
