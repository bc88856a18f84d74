"""What `iris-pipeline query` prints: a result spilled to a temporary file while the warehouse is open,
then written as an aligned table, CSV or JSON once the warehouse has been released.

The spill holds each row as a JSON list of plain values (numbers, strings, booleans, null, lists and
objects), so every format is written from the same values: a timestamp is its ISO 8601 text, a decimal
or a NaN keeps its exact text, bytes are hex.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import tempfile
import uuid
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO

FORMATS = ("table", "csv", "json")
NULL_IN_TABLE = "NULL"
CONTROL_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def plain(value: Any) -> Any:
    """A value as JSON can hold it (and as the table and CSV print it)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN or Infinity
    if isinstance(value, decimal.Decimal):  # a number where a float holds it exactly, else its exact text
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        return float(value) if decimal.Decimal(repr(float(value))) == value else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy and pandas scalars (BigQuery results come as a DataFrame)
    if callable(item):
        return plain(item())
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)


class ResultSpill:
    """A query result on disk: column names, then rows written in batches and read back once or more."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.columns: list[str] = []
        self.count = 0

    def set_columns(self, names: Sequence[str]) -> None:
        self.columns = [str(n) for n in names]

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._file.write(json.dumps([plain(v) for v in row], ensure_ascii=False) + "\n")
            self.count += 1

    def rows(self) -> Iterator[list[Any]]:
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResultSpill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cell_text(value: Any, null: str = "") -> str:
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write_table(spill: ResultSpill, out: TextIO) -> None:
    """Columns aligned under a header, numbers right-aligned; a control character shows escaped so each
    row stays on one line. Two passes over the spill: one for the widths, one to print."""

    def cells(row: list[Any]) -> list[str]:
        return [cell_text(v, NULL_IN_TABLE).translate(CONTROL_ESCAPES) for v in row]

    widths = [len(c) for c in spill.columns]
    kinds = [set() for _ in spill.columns]
    for row in spill.rows():
        for i, (value, text) in enumerate(zip(row, cells(row))):
            widths[i] = max(widths[i], len(text))
            kinds[i].add("null" if value is None else "number" if _is_number(value) else "text")
    pad = [str.rjust if "number" in k and "text" not in k else str.ljust for k in kinds]
    out.write("  ".join(p(c, w) for p, c, w in zip(pad, spill.columns, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in spill.rows():
        out.write("  ".join(p(c, w) for p, c, w in zip(pad, cells(row), widths)).rstrip() + "\n")
    out.write(f"({spill.count} row{'' if spill.count == 1 else 's'})\n")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_csv(spill: ResultSpill, out: TextIO) -> None:
    """RFC 4180 CSV with a header row; NULL is an empty field."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(spill.columns)
    for row in spill.rows():
        writer.writerow([cell_text(v) for v in row])


def write_json(spill: ResultSpill, out: TextIO) -> None:
    """One JSON array of objects, one object per row on its own line (column names as keys; a repeated
    name gets a suffix, `a`, `a_2`, so no value is lost)."""
    keys = unique_names(spill.columns)
    out.write("[")
    for i, row in enumerate(spill.rows()):
        out.write(("\n" if i == 0 else ",\n") + json.dumps(dict(zip(keys, row)), ensure_ascii=False))
    out.write("\n]\n" if spill.count else "]\n")


def unique_names(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


WRITERS: dict[str, Callable[[ResultSpill, TextIO], None]] = {"table": write_table, "csv": write_csv, "json": write_json}
