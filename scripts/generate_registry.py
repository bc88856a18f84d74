#!/usr/bin/env python3
"""Generate iris_pipeline/registry_data/datasets.json from the shared reference files.

Inputs: the IRIS dataset list (iris_datasets.csv) and the Insights API OpenAPI spec. The output is
committed so the project never needs the reference files at run time. Stdlib only; re-running it
produces a byte-identical file.

    python scripts/generate_registry.py [-v] [--csv PATH] [--openapi PATH] [--out PATH]

Each dataset entry carries: code, name, api_code, api_endpoint, api_stream_endpoint,
api_window_params (csv tokens; a trailing "*" marks a required parameter), api_max_range, row_schema,
columns [{name, type, description}] in the spec's property order, reference_time_field, time_fields,
has_settlement_date, has_settlement_period, key_kind, natural_key, version_columns, version_order,
event_driven, key_assumption (where set),
cadence_seconds, notes, "schema_note" only where the schema needed a caveat, and "api": how the
Insights API serves the dataset's history (registry.ApiEndpoint), classified from the spec by
scripts/registry_api.py; null only for the datasets in its UNSERVED list. An endpoint it cannot
classify fails the run. api_window_params/api_max_range are the csv's free text, kept for reference.

Keys, version order ("version_order": terms, largest wins; a term with "ranks" orders its values by the
list), IRIS-only columns, "key_assumption" and "event_driven" (no expected cadence) come from
scripts/registry_keys.py; key kinds are explained in iris_pipeline/registry.py.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

from registry_api import KNOWN_LIMITS, UNDOCUMENTED_WINDOWS, UNSERVED, UnclassifiableEndpoint, classify_api
from registry_keys import EVENT_DRIVEN, EXTRA_COLUMNS, KEY_ASSUMPTIONS, KEYS
from registry_units import column_description, endpoint_unit

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
DEFAULT_CSV = REFERENCE / "iris_datasets.csv"
DEFAULT_OPENAPI = REFERENCE / "insights-api-openapi.json"
DEFAULT_OUT = ROOT / "iris_pipeline" / "registry_data" / "datasets.json"
SCHEMA_PREFIX = "#/components/schemas/"

MINUTE, HALF_HOUR, HOUR, DAY, WEEK = 60, 1800, 3600, 86400, 604800
CADENCE_OVERRIDES: dict[str, int] = {
    "FREQ": 120,
    "FUELINST": 300,
    "INDO": 900,
    "ITSDO": 900,
    "WINDFOR": 3 * HOUR,  # up to 8 publications a day
    "REMIT": HOUR,
    "SYS_WARN": HOUR,
    "DCI": HOUR,
    "E0361": HOUR,
    "SOSO": HOUR,
    "IGCPU": HOUR,
    "TEMP": DAY,
    "INDOD": DAY,
    "DATL": DAY,
    "DAG": DAY,
    "ABUC": DAY,
    "PPBR": DAY,
    "PBC": DAY,
    "WATL": WEEK,
    "YAFM": WEEK,
    "MATL": 30 * DAY,
    "CCM": 30 * DAY,
    "FEIB": 30 * DAY,
    "YATL": 365 * DAY,
    "IGCA": 365 * DAY,
}
WEEKLY_FIELDS = {"week", "calendarWeekNumber", "weekStartDate", "forecastWeek"}
DAILY_FIELDS = {"forecastDate"}
# IRIS reference time fields that are not in the row schema -> the schema's closest field.
REFERENCE_OVERRIDES = {"SMSG": "messageReceivedDateTime"}
# API codes whose spec row schema is a stand-in for an IRIS record shape nobody has verified.
UNVERIFIED_SHAPE = {
    "OCNMFW": "Row schema from /forecast/surplus/weekly (no /datasets endpoint); IRIS record shape unverified.",
    "OCNMFW2": "Row schema from /forecast/margin/weekly (no /datasets endpoint); IRIS record shape unverified.",
    "mibm_mid": "Assumed to share the MID row schema; unverified.",
}


class Spec:
    def __init__(self, doc: dict):
        self.doc = doc
        self.schemas: dict = doc["components"]["schemas"]
        self.paths: dict = doc["paths"]

    def deref(self, node: dict) -> tuple[str | None, dict]:
        if "$ref" in node:
            name = node["$ref"].removeprefix(SCHEMA_PREFIX)
            return name, self.schemas[name]
        return None, node

    def description_of(self, endpoint: str) -> str:
        return self.paths.get(endpoint, {}).get("get", {}).get("description") or ""

    def row_schema_of(self, endpoint: str) -> str | None:
        """The row schema named by an endpoint's 200 response (unwrapping arrays and `data`)."""
        get = self.paths.get(endpoint, {}).get("get", {})
        content = get.get("responses", {}).get("200", {}).get("content", {})
        media = content.get("application/json") or next(iter(content.values()), None)
        node = media and media.get("schema")
        while node:
            node = unwrap(node)
            if node.get("type") == "array":
                node = node.get("items")
                continue
            name, schema = self.deref(node)
            data = schema.get("properties", {}).get("data")
            if data is not None:
                node = data
                continue
            return name if schema.get("properties") else None
        return None

    def best_match(self, code: str, full_name: str, time_fields: list[str]) -> str | None:
        """Fallback: the response row schema sharing most name words and time fields with the csv row."""
        words = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", full_name)}
        best, best_score = None, 0
        for name, schema in sorted(self.schemas.items()):
            props = schema.get("properties", {})
            if ".Responses." not in name or "-1_" in name or not props or "data" in props:
                continue
            tail = name.rsplit(".", 1)[-1]
            parts = {p.lower() for p in re.findall(r"[A-Z][a-z]+|[A-Z]+(?![a-z])", tail)}
            score = (len(words & parts) + len(set(time_fields) & set(props))
                     + (3 if code.lower() in tail.lower() else 0))
            if score > best_score:
                best, best_score = name, score
        return best

    def column_type(self, prop: dict) -> str:
        prop = unwrap(prop)
        name, target = self.deref(prop)
        if name is not None:
            if "enum" in target:
                return "INT64" if target.get("type") == "integer" else "STRING"
            if target.get("type") in ("object", "array") or "properties" in target:
                return "JSON"
            return self.column_type(target)
        kind = prop.get("type")
        if isinstance(kind, list):  # OpenAPI 3.1 style ["string", "null"]
            kind = next((k for k in kind if k != "null"), None)
        fmt = prop.get("format")
        if kind == "string" and fmt == "date-time":
            return "TIMESTAMP"
        if kind == "string" and fmt == "date":
            return "DATE"
        return {"integer": "INT64", "number": "FLOAT64", "boolean": "BOOL",
                "array": "JSON", "object": "JSON"}.get(kind, "STRING")

    def columns(self, schema_name: str) -> list[dict]:
        props = self.schemas[schema_name].get("properties", {})
        return [{"name": name, "type": self.column_type(prop),
                 "description": (prop.get("description") or "").strip()}
                for name, prop in props.items()]


def unwrap(node: dict) -> dict:
    """Strip single-member allOf/anyOf/oneOf wrappers (how nullable $refs are often written)."""
    for key in ("allOf", "anyOf", "oneOf"):
        members = [m for m in node.get(key, []) if m.get("type") != "null"]
        if members:
            return unwrap({**{k: v for k, v in node.items() if k != key}, **members[0]})
    return node


def split(value: str) -> list[str]:
    return [v.strip() for v in value.split(";") if v.strip()]


def cadence(code: str, columns: set[str], has_sp: bool) -> int:
    if code in CADENCE_OVERRIDES:
        return CADENCE_OVERRIDES[code]
    if columns & WEEKLY_FIELDS or ("year" in columns and "settlementDate" not in columns):
        return WEEK
    if columns & DAILY_FIELDS:
        return DAY
    if "bmUnit" in columns and columns & {"timeFrom", "time"}:
        return MINUTE  # BM unit data: bursty, many small files
    if has_sp or "settlementPeriod" in columns:
        return HALF_HOUR
    return HOUR


def build(csv_path: Path, openapi_path: Path, verbose: bool = False) -> dict:
    spec = Spec(json.loads(openapi_path.read_text(encoding="utf-8")))
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    datasets, problems = {}, []
    for row in rows:
        code = row["code"].strip()
        api_code = row["api_code"].strip() or code
        endpoint = row["api_endpoint"].strip() or None
        stream = row["api_stream_endpoint"].strip() or None
        schema_notes = [UNVERIFIED_SHAPE[code]] if code in UNVERIFIED_SHAPE else []

        row_schema = next(filter(None, (spec.row_schema_of(e) for e in (stream, endpoint) if e)), None)
        if row_schema is None:
            row_schema = spec.best_match(api_code, row["full_name"], split(row["record_time_fields"]))
            if row_schema is None:
                problems.append(f"{code}: no row schema found")
                continue
            schema_notes.append(f"No row schema via {endpoint}; best name match {row_schema} used.")
            print(f"warning: {code}: {schema_notes[-1]}", file=sys.stderr)
        columns = spec.columns(row_schema)
        columns += [c for c in EXTRA_COLUMNS.get(code, ()) if c["name"] not in {c["name"] for c in columns}]
        stated = endpoint_unit(next(filter(None, (spec.description_of(e) for e in (endpoint, stream) if e)), ""))
        columns = [c if c["description"] else {**c, "description": column_description(code, c["name"], c["type"], stated)}
                   for c in columns]
        names = {c["name"] for c in columns}
        if not columns:
            problems.append(f"{code}: row schema {row_schema} has no properties")
            continue

        reference = row["iris_timestamp_tag_field"].strip() or None
        if reference and reference not in names:
            substitute = REFERENCE_OVERRIDES.get(code)
            if substitute not in names:
                problems.append(f"{code}: reference time field {reference!r} not in {row_schema}")
            schema_notes.append(f"IRIS timestamp tag field {reference} is not in the row schema; "
                                f"reference_time_field is {substitute}.")
            print(f"warning: {code}: {schema_notes[-1]}", file=sys.stderr)
            reference = substitute
        time_fields = split(row["record_time_fields"])
        for field in time_fields:
            if field not in names:
                problems.append(f"{code}: time field {field!r} not in {row_schema}")

        kind, key, terms = KEYS.get(code, ("record", [], []))
        version_order = [{"column": t} if isinstance(t, str) else {"column": t[0], "ranks": t[1]} for t in terms]
        version = [t["column"] for t in version_order]
        missing = [c for c in key + version if c not in names]
        if missing:
            problems.append(f"{code}: key/version columns {missing} not in {row_schema}")
        if kind == "vintage" and not set(version) <= set(key):
            problems.append(f"{code}: vintage version columns must be part of the natural key")

        has_sp = row["has_settlement_period"].strip() == "yes"
        entry = {
            "code": code,
            "name": row["full_name"].strip(),
            "api_code": api_code,
            "api_endpoint": endpoint,
            "api_stream_endpoint": stream,
            "api_window_params": split(row["api_window_params"]),
            "api_max_range": row["api_max_range"].strip() or None,
            "row_schema": row_schema,
            "columns": columns,
            "reference_time_field": reference,
            "time_fields": time_fields,
            "has_settlement_date": row["has_settlement_date"].strip() == "yes",
            "has_settlement_period": has_sp,
            "key_kind": kind,
            "natural_key": key,
            "version_columns": version,
            "version_order": version_order,
            "cadence_seconds": cadence(code, names, has_sp),
            "event_driven": code in EVENT_DRIVEN,
            "notes": row["notes"].strip(),
        }
        try:
            entry["api"] = classify_api(code, api_code, spec.doc, endpoint, stream, names)
        except UnclassifiableEndpoint as e:
            problems.append(str(e))
        if code in KEY_ASSUMPTIONS:
            entry["key_assumption"] = KEY_ASSUMPTIONS[code]
        if schema_notes:
            entry["schema_note"] = " ".join(schema_notes)
        if code in datasets:
            problems.append(f"{code}: duplicate code in csv")
        datasets[code] = entry
        if verbose:
            print(f"{code:10} {len(columns):3d} columns  {kind:8} cadence={entry['cadence_seconds']:>8}s"
                  f"  {row_schema.rsplit('.', 1)[-1]}")

    for name, table in (("KEYS", KEYS), ("KNOWN_LIMITS", KNOWN_LIMITS), ("EXTRA_COLUMNS", EXTRA_COLUMNS),
                        ("KEY_ASSUMPTIONS", KEY_ASSUMPTIONS), ("EVENT_DRIVEN", dict.fromkeys(EVENT_DRIVEN)),
                        ("UNDOCUMENTED_WINDOWS", UNDOCUMENTED_WINDOWS), ("UNSERVED", UNSERVED)):
        unknown = sorted(set(table) - set(datasets))
        if unknown:
            problems.append(f"{name} rules for codes not in the csv: {unknown}")
    if problems:
        raise SystemExit("registry generation failed:\n  " + "\n  ".join(problems))

    info = spec.doc.get("info", {})
    return {
        "source": {"openapi_title": info.get("title"), "openapi_version": info.get("version"),
                   "csv_rows": len(rows)},
        "datasets": datasets,
    }


def render(registry: dict) -> str:
    return json.dumps(registry, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--openapi", type=Path, default=DEFAULT_OPENAPI)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    text = render(build(args.csv, args.openapi, args.verbose))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(json.loads(text)['datasets'])} datasets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
