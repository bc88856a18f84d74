"""Classify each dataset's Insights API endpoint from the OpenAPI spec (stdlib only).

Used by generate_registry.py; the result is the registry's `api` object (iris_pipeline.registry.ApiEndpoint).
Everything is decided here, at generation time, so nothing parses free text at run time.

    classify_api(code, api_code, doc, csv_endpoint, csv_stream, row_fields) -> dict | None

raises UnclassifiableEndpoint (naming the dataset and the endpoint) when the spec does not say how to
ask the endpoint for a window of history, unless the dataset is in UNSERVED.
"""
from __future__ import annotations

import re

MINUTE, HOUR, DAY = 60, 3600, 86400

# Query parameter pairs that select a window, in order of preference (FUELINST/FUELHH accept both
# publishDateTime and settlementDate, not together: publish time also finds late revisions).
WINDOW_PAIRS = (
    ("publishDateTimeFrom", "publishDateTimeTo"),
    ("measurementDateTimeFrom", "measurementDateTimeTo"),
    ("from", "to"),
    ("settlementDateFrom", "settlementDateTo"),
)
DATE_PATH_PARAMS = ("settlementDate", "date")
MAX_RANGE_RE = re.compile(
    r"maximum (?:data output |date )?(?:range|limit) of (\d+) (hour|day|year)s?(?: \((\d+) days\))?", re.I)
UNIT_SECONDS = {"hour": HOUR, "day": DAY}

# Limits the spec leaves out, documented elsewhere. Used only when the spec has none for the dataset.
KNOWN_LIMITS: dict[str, tuple[int, str]] = {
    "BOD": (HOUR, "known limit: shared/docs/domain.md §3 (BOD 1 hour)"),
    "MID": (7 * DAY, "known limit: shared/docs/domain.md §3 (MID 7 d)"),
    "mibm_mid": (7 * DAY, "known limit: shared/docs/domain.md §3 (MID 7 d); mibm_mid is served by MID"),
}

# No limit documented anywhere (spec, domain.md): a request size the registry chose, small enough that one
# response stays a few MB at today's volumes. Verify against the live API before relying on larger ones.
_PER_BMU = "no documented limit: chosen 1 hour, every BM unit's half-hourly data (BOD-like volume)"
_SPARSE_BMU = "no documented limit: chosen 1 day, sparse per-BM-unit dynamic data"
_SYSTEM = "no documented limit: chosen 1 day, system-level data published at most every few minutes"
_BMU_FORECAST = "no documented limit: chosen 1 day, every BM unit's forecast, published daily or weekly"
_RARE = "no documented limit: chosen 7 days, a few records a day"
UNDOCUMENTED_WINDOWS: dict[str, tuple[int, str]] = {
    **{c: (HOUR, _PER_BMU) for c in ("PN", "QPN", "MELS", "MILS")},
    **{c: (DAY, _SPARSE_BMU) for c in ("BOALF", "QAS", "MDP", "MDV", "MNZT", "MZT", "NDZ", "NTB", "NTO",
                                       "RDRE", "RDRI", "RURE", "RURI", "SEL", "SIL")},
    **{c: (DAY, _BMU_FORECAST) for c in ("UOU2T14D", "UOU2T3YW")},
    **{c: (DAY, _SYSTEM) for c in ("FUELINST", "FUELHH", "REMIT", "INDO", "ITSDO", "WINDFOR", "LOLPDM",
                                   "NONBM", "DISBSAD", "NETBSAD", "NOU2T14D", "FOU2T14D")},
    **{c: (7 * DAY, _RARE) for c in ("TEMP", "SYS_WARN", "DCI", "E0361", "NOU2T3YW", "FOU2T3YW")},
}

# The API serves only the resolved/latest version of these, whatever the spec's wording.
LATEST_ONLY: dict[str, str] = {
    # domain.md §3: IRIS MELS/MILS are raw redeclarations; the API returns the resolved position.
    "MELS": "domain.md §3: the API serves the resolved position",
    "MILS": "domain.md §3: the API serves the resolved position",
}
# Spec wording that means an endpoint serves only the latest settlement/calculation run (DISEBSP, SMSG).
LATEST_RUN_RE = re.compile(r"latest (?:settlement|calculation) run", re.I)

# Datasets with no `api`, and why. The generator fails if one of these becomes classifiable (stale entry)
# or if any other dataset is not.
UNSERVED: dict[str, str] = {
    # Per settlement date AND side: one request per bid/offer. ApiEndpoint has one path, so the registry
    # cannot describe the two requests a day needs.
    "BOAV": "path parameter bidOffer (bid|offer) needs two requests per date",
    "DISPTAV": "path parameter bidOffer (bid|offer) needs two requests per date",
    "EBOCF": "path parameter bidOffer (bid|offer) needs two requests per date",
    "ISPSTACK": "path parameters bidOffer and settlementPeriod: 96 requests per date",
    # Only the latest forecast (range=52W|156W), no time window: the API has no history here.
    "OCNMFW": "/forecast/surplus/weekly serves only the latest forecast (no time window)",
    "OCNMFW2": "/forecast/margin/weekly serves only the latest forecast (no time window)",
}


class UnclassifiableEndpoint(ValueError):
    def __init__(self, code: str, path: str | None, reason: str):
        super().__init__(f"{code}: cannot classify API endpoint {path}: {reason}")
        self.code, self.path, self.reason = code, path, reason


def choose_path(doc: dict, api_code: str, csv_endpoint: str | None, csv_stream: str | None) -> str | None:
    """The dataset's /stream endpoint if the spec has one, else its /datasets endpoint, else the csv's."""
    paths = doc.get("paths", {})
    for path in (f"/datasets/{api_code}/stream", f"/datasets/{api_code}", csv_stream, csv_endpoint):
        if path and "get" in paths.get(path, {}):
            return path
    return None


def parse_max_window(text: str) -> tuple[int, str] | None:
    """(seconds, quoted sentence) for a "maximum ... range of N unit" phrase, else None."""
    m = MAX_RANGE_RE.search(text or "")
    if not m:
        return None
    number, unit, days = int(m.group(1)), m.group(2).lower(), m.group(3)
    if days:  # "2 years (731 days)": the day count is the exact limit
        seconds = int(days) * DAY
    elif unit in UNIT_SECONDS:
        seconds = number * UNIT_SECONDS[unit]
    else:
        return None  # years without a day count: ambiguous, leave to KNOWN_LIMITS
    start = text.rfind(".", 0, m.start()) + 1
    end = text.find(".", m.end())
    sentence = " ".join(text[start:end if end >= 0 else len(text)].split())
    return seconds, sentence


def _is_stream(doc: dict, get: dict) -> bool:
    """A bare JSON array in the 200 response (stream endpoints); else a {"data": [...]} object."""
    content = get.get("responses", {}).get("200", {}).get("content", {})
    media = content.get("application/json") or next(iter(content.values()), {})
    schema = media.get("schema", {})
    if "$ref" in schema:
        schema = doc.get("components", {}).get("schemas", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema.get("type") == "array"


def _window_filter(code: str, path: str, get: dict, params: dict, from_param: str, row_fields: set) -> str:
    description = " ".join((get.get("description") or "").split())
    from_text = (params[from_param].get("description") or "").lower()
    if from_param.startswith("publishDateTime") or "publish time" in from_text:
        return "publish_time"
    if from_param.startswith("measurementDateTime"):
        return "measurement_time"
    if from_param.startswith("settlementDate") or from_text.startswith("the settlement date"):
        return "settlement_date"  # PN/QPN: from/to resolve to settlement periods
    if from_param == "from":
        # "...return any data where TimeFrom is within the requested time range" (BOD, BOALF), or
        # "filter the data by time" on records whose time is timeFrom (MELS) or a period start (MID).
        if "TimeFrom is within" in description or "timeFrom" in row_fields:
            return "time_from"
        if "start time" in from_text or "time window" in from_text:
            return "start_time"
    raise UnclassifiableEndpoint(code, path, f"cannot tell what {from_param!r} filters on")


def _max_window(code: str, path: str, get: dict, doc: dict) -> tuple[int, str]:
    parsed = parse_max_window(get.get("description", ""))
    if parsed:
        if code in KNOWN_LIMITS:
            raise UnclassifiableEndpoint(code, path, "KNOWN_LIMITS entry is stale: the spec documents a limit")
        return parsed[0], f'spec: GET {path}: "{parsed[1]}"'
    if code in KNOWN_LIMITS:
        return KNOWN_LIMITS[code]
    if path.endswith("/stream"):
        # The spec documents limits on the /datasets endpoint only; the stream of the same dataset is
        # assumed to be no looser (domain.md: "FREQ 24 h non-stream").
        sibling = path.removesuffix("/stream")
        parsed = parse_max_window(doc["paths"].get(sibling, {}).get("get", {}).get("description", ""))
        if parsed:
            return parsed[0], f'spec: GET {sibling} (non-stream endpoint of the same dataset): "{parsed[1]}"'
    if code in UNDOCUMENTED_WINDOWS:
        return UNDOCUMENTED_WINDOWS[code]
    raise UnclassifiableEndpoint(code, path, "no maximum window in the spec, KNOWN_LIMITS or UNDOCUMENTED_WINDOWS")


def _fill_required(code: str, path: str, param: dict) -> tuple[str, str]:
    """A fixed value for a required non-window parameter: only a single-valued enum can be filled."""
    enum = param.get("schema", {}).get("enum", [])
    if param.get("in") == "query" and len(enum) == 1:
        return param["name"], str(enum[0])
    raise UnclassifiableEndpoint(code, path, f"required {param.get('in')} parameter {param['name']!r}"
                                             f" cannot be filled (enum={enum})")


def classify_endpoint(code: str, path: str, doc: dict, row_fields: set[str] = frozenset()) -> dict:
    """The ApiEndpoint fields for `path`, from its parameters and descriptions in the spec."""
    get = doc.get("paths", {}).get(path, {}).get("get")
    if get is None:
        raise UnclassifiableEndpoint(code, path, "not a GET path in the spec")
    params = {p["name"]: p for p in get.get("parameters", [])}
    path_params = [p for p in params.values() if p.get("in") == "path"]

    window_kind = from_param = to_param = path_param = None
    date_params = [p for p in path_params if p["name"] in DATE_PATH_PARAMS]
    if date_params:
        window_kind, path_param, window_filter = "path_date", date_params[0]["name"], "settlement_date"
        # A bare {date} is a settlement date only if the spec says so.
        said = (date_params[0].get("description") or "") + (get.get("description") or "")
        if path_param == "date" and "settlement" not in said.lower():
            raise UnclassifiableEndpoint(code, path, "{date} path parameter of unknown meaning")
    else:
        pair = next((p for p in WINDOW_PAIRS if p[0] in params and p[1] in params
                     and params[p[0]].get("in") == params[p[1]].get("in") == "query"), None)
        if pair is None:
            raise UnclassifiableEndpoint(code, path, f"no window parameters among {sorted(params)}")
        window_kind, (from_param, to_param) = "query_range", pair
        window_filter = _window_filter(code, path, get, params, from_param, row_fields)

    window_names = {from_param, to_param, path_param}
    extra = sorted(_fill_required(code, path, p) for p in params.values()
                   if p["name"] not in window_names and (p.get("required") or p.get("in") == "path"))

    if path_param:  # one date per request
        max_seconds = DAY
        max_source = (f'spec: GET {path}: path parameter {path_param} '
                      f'("{" ".join((params[path_param].get("description") or "").split())}"): one day per request')
    else:
        max_seconds, max_source = _max_window(code, path, get, doc)

    if code in LATEST_ONLY:
        versions = "latest"
    elif LATEST_RUN_RE.search(get.get("description") or ""):
        versions = "latest"  # "only messages generated for the latest settlement run are returned"
    else:
        versions = "all"

    return {
        "path": path,
        "stream": _is_stream(doc, get),
        "window_kind": window_kind,
        "from_param": from_param,
        "to_param": to_param,
        "path_param": path_param,
        "window_filter": window_filter,
        "max_window_seconds": max_seconds,
        "max_window_source": max_source,
        "versions": versions,
        "extra_params": [list(p) for p in extra],
    }


def classify_api(code: str, api_code: str, doc: dict, csv_endpoint: str | None, csv_stream: str | None,
                 row_fields: set[str] = frozenset()) -> dict | None:
    """The dataset's `api` object; None for an UNSERVED dataset; raises UnclassifiableEndpoint otherwise."""
    path = choose_path(doc, api_code, csv_endpoint, csv_stream)
    try:
        if path is None:
            raise UnclassifiableEndpoint(code, csv_stream or csv_endpoint, "no such GET path in the spec")
        api = classify_endpoint(code, path, doc, row_fields)
    except UnclassifiableEndpoint:
        if code in UNSERVED:
            return None
        raise
    if code in UNSERVED:
        raise UnclassifiableEndpoint(code, path, "classifiable, but listed in UNSERVED: remove the entry")
    return api
