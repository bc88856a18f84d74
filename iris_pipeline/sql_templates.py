"""The SQL templates in `sql/` (shipped inside the package as `iris_pipeline/sql`) and the two dialects
they render to.

One template serves DuckDB and BigQuery: where the two differ (type names, safe casts, time zones,
regular expressions) a template calls the dialect, `d`, instead of writing either. Jinja2 (a Dagster
dependency already) because its macros and loops keep a template readable; `StrictUndefined` turns a
misspelt variable into an error, not an empty string. Identifiers reach a template only through
`d.q()` (validated, then quoted) and values only as literals the dialect writes from typed Python values.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from importlib import resources

import jinja2

from iris_pipeline.warehouse.base import valid_identifier

TEMPLATE_PACKAGE = "iris_pipeline"
TEMPLATE_DIR = "sql"
# The IRIS file name carries the message's publish time: <CODE>_<YYYYMMDDHHMM>_<rest>.
_FILE_TIME_PATTERN = r"^.*?_(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})_.*$"


class Dialect:
    """What differs between the backends' SQL. Registry types in, SQL text out."""

    name: str
    types: dict[str, str]  # registry type -> this dialect's type name
    native_types: dict[str, str]  # a type name as the catalogue reports it -> the registry type it is

    def q(self, name: str) -> str:
        raise NotImplementedError

    def type(self, registry_type: str) -> str:
        return self.types[registry_type]

    def null(self, registry_type: str) -> str:
        return f"CAST(NULL AS {self.type(registry_type)})"

    def string(self, value: str) -> str:
        """A string literal (the value is escaped, never interpreted)."""
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def date(self, value: dt.date) -> str:
        return f"DATE '{value.isoformat()}'"

    def timestamp(self, value: dt.datetime) -> str:
        return f"TIMESTAMP '{value.astimezone(dt.timezone.utc).isoformat()}'"

    def convert(self, expr: str, native_type: str, registry_type: str) -> str:
        """`expr` (a column of the backend's `native_type`) as `registry_type`, NULL where it does not convert."""
        raise NotImplementedError

    def key(self, expr: str, registry_type: str) -> str:
        """`expr` as something a window may partition by."""
        return expr

    def widen(self, expr: str, registry_type: str, wider: str) -> str:
        """`expr` of `registry_type` as the wider type another source widened the column to (INT64 to
        FLOAT64, anything to JSON), the way the loader widens a column."""
        return self.to_json(expr) if wider == "JSON" else f"CAST({expr} AS {self.type(wider)})"

    def to_json(self, expr: str) -> str:
        raise NotImplementedError

    def file_time(self, expr: str) -> str:
        """The publish time in an IRIS file name (<CODE>_<YYYYMMDDHHMM>_...), NULL if it has none."""
        raise NotImplementedError

    def london_date(self, ts: str) -> str:
        """The Europe/London calendar day of a UTC instant: its settlement date."""
        raise NotImplementedError

    def london_midnight(self, day: str) -> str:
        """The UTC instant at which settlement day `day` begins."""
        raise NotImplementedError

    def epoch_seconds(self, ts: str) -> str:
        raise NotImplementedError

    def from_epoch_seconds(self, seconds: str) -> str:
        raise NotImplementedError

    def add_days(self, day: str, days: int) -> str:
        raise NotImplementedError

    def epoch_micros(self, ts: str) -> str:
        """Microseconds since 1970 (BIGINT): exact where seconds would round."""
        raise NotImplementedError

    def int_div(self, dividend: str, divisor: str) -> str:
        """Integer division of non-negative integers (both backends' `/` gives a float)."""
        raise NotImplementedError

    def integer_series(self, first: str, last: str) -> str:
        """An array of the integers first..last, both included."""
        raise NotImplementedError

    def unnest(self, array: str, alias: str) -> str:
        """A FROM item with one row per element of `array` (which may name the rows before it), as column `alias`."""
        raise NotImplementedError

    def to_json_text(self, expr: str) -> str:
        raise NotImplementedError

    def text(self, expr: str, registry_type: str) -> str:
        """`expr` as text, NULL spelt out, so that texts compare like the values."""
        text = self.to_json_text(expr) if registry_type == "JSON" else f"CAST({expr} AS {self.type('STRING')})"
        return f"COALESCE({text}, '<null>')"

    def row_text(self, items: list[tuple[str, str]]) -> str:
        """(expr, registry type) pairs as one text: a row's fingerprint, or a key people can read."""
        return "CONCAT(" + ", ' | ', ".join(self.text(e, t) for e, t in items) + ")" if len(items) > 1 else (
            self.text(*items[0]) if items else "''")

    def registry_type(self, native_type: str) -> str | None:
        """The registry type a native column type stores exactly, else None (a legacy type to convert)."""
        return self.native_types.get(native_type.upper())


class DuckDBDialect(Dialect):
    name = "duckdb"
    types = {"TIMESTAMP": "TIMESTAMPTZ", "DATE": "DATE", "INT64": "BIGINT", "FLOAT64": "DOUBLE",
             "BOOL": "BOOLEAN", "STRING": "VARCHAR", "JSON": "JSON"}
    native_types = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "DATE": "DATE", "BIGINT": "INT64", "DOUBLE": "FLOAT64",
                    "BOOLEAN": "BOOL", "VARCHAR": "STRING", "JSON": "JSON"}

    def q(self, name: str) -> str:
        return '"' + valid_identifier(name) + '"'

    def string(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def convert(self, expr: str, native_type: str, registry_type: str) -> str:
        native = native_type.upper()
        if registry_type == "TIMESTAMP" and native in ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "DATETIME"):
            # a naive timestamp is taken as UTC explicitly: a cast would read it in the session's time zone
            return f"timezone('UTC', CAST({expr} AS TIMESTAMP))"
        if registry_type == "TIMESTAMP" and native in ("VARCHAR", "JSON"):
            # ISO text with an offset, or without one (then UTC); never the session's zone
            text = f"CAST({expr} AS VARCHAR)" if native == "JSON" else expr
            return (f"COALESCE(TRY_CAST(CASE WHEN regexp_matches({text}, '(Z|[+-]\\d\\d:?\\d\\d)$')"
                    f" THEN {text} END AS TIMESTAMPTZ), timezone('UTC', TRY_CAST({text} AS TIMESTAMP)))")
        if registry_type == "JSON":
            return f"to_json({expr})"
        return f"TRY_CAST({expr} AS {self.type(registry_type)})"

    def file_time(self, expr: str) -> str:
        return (f"TRY_CAST(regexp_replace({expr}, {self.string(_FILE_TIME_PATTERN)},"
                f" '\\1-\\2-\\3 \\4:\\5:00+00') AS TIMESTAMPTZ)")

    def london_date(self, ts: str) -> str:
        return f"CAST(timezone('Europe/London', {ts}) AS DATE)"

    def london_midnight(self, day: str) -> str:
        return f"timezone('Europe/London', CAST({day} AS TIMESTAMP))"

    def epoch_seconds(self, ts: str) -> str:
        return f"CAST(epoch({ts}) AS BIGINT)"

    def from_epoch_seconds(self, seconds: str) -> str:
        return f"to_timestamp({seconds})"

    def add_days(self, day: str, days: int) -> str:
        return f"CAST({day} + INTERVAL {int(days)} DAY AS DATE)"

    def epoch_micros(self, ts: str) -> str:
        return f"epoch_us({ts})"

    def int_div(self, dividend: str, divisor: str) -> str:
        return f"({dividend}) // ({divisor})"

    def integer_series(self, first: str, last: str) -> str:
        return f"generate_series({first}, {last})"

    def unnest(self, array: str, alias: str) -> str:
        return f"UNNEST({array}) AS {self.q('_' + alias)}({self.q(alias)})"

    def to_json_text(self, expr: str) -> str:
        return f"CAST(to_json({expr}) AS VARCHAR)"

    def to_json(self, expr: str) -> str:
        return f"to_json({expr})"


class BigQueryDialect(Dialect):
    name = "bigquery"
    types = {"TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "INT64": "INT64", "FLOAT64": "FLOAT64",
             "BOOL": "BOOL", "STRING": "STRING", "JSON": "JSON"}
    native_types = {"TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "INTEGER": "INT64", "INT64": "INT64", "FLOAT": "FLOAT64",
                    "FLOAT64": "FLOAT64", "BOOLEAN": "BOOL", "BOOL": "BOOL", "STRING": "STRING", "JSON": "JSON"}

    def q(self, name: str) -> str:
        return "`" + valid_identifier(name) + "`"

    def convert(self, expr: str, native_type: str, registry_type: str) -> str:
        native = native_type.upper()
        if native == "JSON" and registry_type != "JSON":
            expr = f"JSON_VALUE({expr})"
        if registry_type == "TIMESTAMP" and native == "DATETIME":
            return f"TIMESTAMP({expr}, 'UTC')"
        if registry_type == "TIMESTAMP" and native in ("STRING", "JSON"):
            return f"SAFE_CAST(REPLACE({expr}, 'T', ' ') AS TIMESTAMP)"
        if registry_type == "JSON":
            return f"TO_JSON({expr})"
        return f"SAFE_CAST({expr} AS {self.type(registry_type)})"

    def key(self, expr: str, registry_type: str) -> str:
        # BigQuery cannot partition a window by FLOAT64 or JSON
        return f"TO_JSON_STRING({expr})" if registry_type in ("FLOAT64", "JSON") else expr

    def file_time(self, expr: str) -> str:
        return (f"SAFE_CAST(REGEXP_REPLACE({expr}, r'{_FILE_TIME_PATTERN}', r'\\1-\\2-\\3 \\4:\\5:00+00')"
                " AS TIMESTAMP)")

    def london_date(self, ts: str) -> str:
        return f"DATE({ts}, 'Europe/London')"

    def london_midnight(self, day: str) -> str:
        return f"TIMESTAMP({day}, 'Europe/London')"

    def epoch_seconds(self, ts: str) -> str:
        return f"UNIX_SECONDS({ts})"

    def from_epoch_seconds(self, seconds: str) -> str:
        return f"TIMESTAMP_SECONDS({seconds})"

    def add_days(self, day: str, days: int) -> str:
        return f"DATE_ADD({day}, INTERVAL {int(days)} DAY)"

    def epoch_micros(self, ts: str) -> str:
        return f"UNIX_MICROS({ts})"

    def int_div(self, dividend: str, divisor: str) -> str:
        # the parentheses keep `a - 1` whole where a translator drops DIV's own (the emulator's sqlglot does)
        return f"DIV(({dividend}), ({divisor}))"

    def integer_series(self, first: str, last: str) -> str:
        return f"GENERATE_ARRAY({first}, {last})"

    def unnest(self, array: str, alias: str) -> str:
        return f"UNNEST({array}) AS {self.q(alias)}"

    def to_json_text(self, expr: str) -> str:
        return f"TO_JSON_STRING({expr})"

    def to_json(self, expr: str) -> str:
        return f"TO_JSON({expr})"


DIALECTS: dict[str, Dialect] = {"duckdb": DuckDBDialect(), "bigquery": BigQueryDialect()}


def dialect(name: str) -> Dialect:
    return DIALECTS[name]


def _load(name: str) -> str:
    return resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR, name).read_text(encoding="utf-8")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # SQL, not HTML: identifiers and literals are escaped by the dialect
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render(template: str, d: Dialect, **context) -> str:
    """The SQL of `sql/<template>` for dialect `d`."""
    return _environment().get_template(template).render(d=d, **context).strip()
