import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from iris_pipeline.registry import (
    COLUMN_TYPES,
    KEY_KINDS,
    VERSIONS,
    WINDOW_FILTERS,
    WINDOW_KINDS,
    ApiEndpoint,
    Dataset,
    VersionTerm,
    is_valid_dataset_code,
    load_registry,
    table_name_for,
)

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "generate_registry.py"
COMMITTED = ROOT / "iris_pipeline" / "registry_data" / "datasets.json"
REFERENCE = ROOT.parent / "shared" / "reference"

EXPECTED_CODES = {
    "ABUC", "AGPT", "AGWS", "AOBE", "ATL", "BEB", "BOALF", "BOAV", "BOD", "CBS", "CCM", "DAG",
    "DATL", "DCI", "DGWS", "DISBSAD", "DISEBSP", "DISPTAV", "E0361", "EBOCF", "FEIB", "FOU2T14D",
    "FOU2T3YW", "FREQ", "FUELHH", "FUELINST", "IGCA", "IGCPU", "IMBALNGC", "INDDEM", "INDGEN",
    "INDO", "INDOD", "ISPSTACK", "ITSDO", "LOLPDM", "MATL", "MDP", "MDV", "MELNGC", "MELS", "MID",
    "MILS", "MNZT", "MZT", "NDF", "NDFD", "NDFW", "NDZ", "NETBSAD", "NONBM", "NOU2T14D", "NOU2T3YW",
    "NTB", "NTO", "OCNMF3Y", "OCNMF3Y2", "OCNMFD", "OCNMFD2", "OCNMFW", "OCNMFW2", "PBC", "PN",
    "PPBR", "QAS", "QPN", "RDRE", "RDRI", "REMIT", "RURE", "RURI", "SEL", "SIL", "SMSG", "SOSO",
    "SYS_WARN", "TEMP", "TSDF", "TSDFD", "TSDFW", "UOU2T14D", "UOU2T3YW", "WATL", "WINDFOR", "YAFM",
    "YATL", "mibm_mid",
}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_all_87_codes_present(registry):
    assert len(EXPECTED_CODES) == 87
    assert set(registry.codes()) == EXPECTED_CODES
    assert len(registry) == 87 and registry.source["csv_rows"] == 87
    assert [d.code for d in registry] == sorted(EXPECTED_CODES)
    assert "BOALF" in registry and "boalf" not in registry and registry.get("NOPE") is None
    assert load_registry() is registry


def test_every_dataset_is_typed(registry):
    for ds in registry:
        assert ds.registered and ds.columns, ds.code
        assert all(c.type in COLUMN_TYPES for c in ds.columns), ds.code
        assert ds.key_kind in KEY_KINDS and ds.cadence_seconds > 0
        assert ds.reference_time_field in ds.column_names, ds.code
        assert set(ds.time_fields) <= set(ds.column_names), ds.code
        for name in ds.time_fields:
            assert ds.column(name).type in ("TIMESTAMP", "DATE"), (ds.code, name)
        if ds.column("settlementDate"):
            assert ds.column("settlementDate").type == "DATE"
        if ds.column("settlementPeriod"):
            assert ds.column("settlementPeriod").type == "INT64"


def test_boalf_columns(registry):
    boalf = registry["BOALF"]
    types = {c.name: c.type for c in boalf.columns}
    assert boalf.column_names[:3] == ("dataset", "settlementDate", "settlementPeriodFrom")
    assert types["settlementDate"] == "DATE"
    assert types["timeFrom"] == types["acceptanceTime"] == "TIMESTAMP"
    assert types["levelFrom"] == types["acceptanceNumber"] == "INT64"
    assert types["deemedBoFlag"] == "BOOL"
    assert types["amendmentFlag"] == types["bmUnit"] == "STRING"
    assert boalf.column("nope") is None
    assert boalf.api_stream_endpoint == "/datasets/BOALF/stream"
    assert boalf.has_settlement_date and not boalf.has_settlement_period


def test_api_codes(registry):
    assert registry["E0361"].api_code == "CDN"
    assert registry["LOLPDM"].api_code == "LOLPDRM"
    assert registry["SYS_WARN"].api_code == "SYSWARN"
    assert registry["mibm_mid"].api_code == "MID"
    assert registry["BOALF"].api_code == "BOALF"


def test_table_names(registry):
    assert registry["BOALF"].table_name == "bmrs_boalf_iris"
    assert registry["SYS_WARN"].table_name == "bmrs_sys_warn_iris"
    assert registry["mibm_mid"].table_name == "bmrs_mibm_mid_iris"
    assert registry["BOALF"].historic_table_name == "bmrs_boalf"
    assert table_name_for("SYS_WARN") == "bmrs_sys_warn_iris"
    assert len({d.table_name for d in registry}) == len(registry)


def test_keys_reference_existing_columns(registry):
    for ds in registry:
        names = set(ds.column_names)
        assert set(ds.natural_key) <= names and set(ds.version_columns) <= names, ds.code
        if ds.key_kind == "record":
            assert ds.natural_key == () and ds.version_columns == (), ds.code
        else:
            assert ds.natural_key, ds.code
        if ds.key_kind == "vintage":
            assert ds.version_columns and set(ds.version_columns) <= set(ds.natural_key), ds.code


def test_specific_keys(registry):
    assert registry["FUELINST"].natural_key == ("startTime", "fuelType")
    assert registry["FUELINST"].version_columns == ("publishTime",)
    for code in ("MID", "mibm_mid"):
        assert registry[code].natural_key == ("settlementDate", "settlementPeriod", "dataProvider")
        assert registry[code].version_columns == ("sourceFileDateTime", "sourceFileSerialNumber")
        assert registry[code].column("sourceFileDateTime").type == "TIMESTAMP"
        assert registry[code].column("sourceFileSerialNumber").type == "INT64"
    assert registry["BOALF"].natural_key == ("bmUnit", "acceptanceNumber", "timeFrom")
    # acceptanceTime is the same on every row of an acceptance: an amendment wins by its flag
    assert registry["BOALF"].version_order == (VersionTerm("amendmentFlag", ("ORI", "AMD")),)
    assert registry["DISEBSP"].key_kind == "vintage"
    assert registry["DISEBSP"].latest_key == ("settlementDate", "settlementPeriod")
    assert registry["REMIT"].natural_key == ("mrid", "revisionNumber")
    assert registry["REMIT"].latest_key == ("mrid",)
    for code in ("MELS", "MILS"):  # the gate-closure file can repeat all but timeTo
        assert "timeTo" in registry[code].natural_key and "nationalGridBmUnit" in registry[code].natural_key
    for code in ("DISBSAD", "NETBSAD", "QAS"):
        assert registry[code].key_kind == "natural", code
    for code in ("BOAV", "EBOCF", "DISPTAV", "ISPSTACK"):  # settlement re-runs: every run kept
        ds = registry[code]
        assert ds.key_kind == "vintage" and "bidOffer" in ds.natural_key and ds.column("bidOffer"), code
        assert ds.key_assumption, code
    assert registry["INDGEN"].key_kind == "vintage"
    assert registry["INDGEN"].natural_key == ("startTime", "boundary", "publishTime")
    assert registry["SYS_WARN"].key_kind == "record"


def test_event_driven_datasets_have_no_expected_cadence(registry):
    for code in ("SYS_WARN", "DCI", "IGCPU", "E0361", "SEL", "MZT", "RURI"):
        assert registry[code].event_driven and registry[code].expected_cadence_seconds is None, code
    assert registry["FUELINST"].expected_cadence_seconds == 300


def test_remit_outage_profile_is_json(registry):
    remit = registry["REMIT"]
    assert remit.column("outageProfile").type == "JSON"
    assert remit.column("normalCapacity").type == "FLOAT64"
    assert remit.column("eventStartTime").type == "TIMESTAMP"


def test_cadence(registry):
    assert registry["FREQ"].cadence_seconds == 120
    assert registry["FUELINST"].cadence_seconds == 300
    assert registry["BOD"].cadence_seconds == 60
    assert registry["DISEBSP"].cadence_seconds == 1800
    assert registry["NDFD"].cadence_seconds == 86400
    assert registry["REMIT"].cadence_seconds == 3600


@pytest.mark.parametrize("code", ["x; drop table", "", "1ABC", "_X", "A" * 65, "BOALF\n", "BO-ALF", "É", None])
def test_invalid_codes_rejected(registry, code):
    assert not is_valid_dataset_code(code)
    with pytest.raises(ValueError, match="invalid dataset code"):
        table_name_for(code)
    with pytest.raises(ValueError):
        registry.unregistered(code)


def test_unregistered(registry):
    ds = registry.unregistered("NEWTHING")
    assert isinstance(ds, Dataset) and not ds.registered
    assert ds.columns == () and ds.key_kind == "record" and ds.cadence_seconds == 3600
    assert ds.table_name == "bmrs_newthing_iris"
    assert registry.resolve("NEWTHING") == ds and registry.resolve("BOALF") is registry["BOALF"]
    with pytest.raises(ValueError, match="not upper case"):
        registry.unregistered("boalf")


def test_unregistered_codes_differing_only_in_case_never_share_a_table(registry):
    assert registry.unregistered("NEWDS").table_name == "bmrs_newds_iris"
    for code in ("NewDs", "newds"):
        with pytest.raises(ValueError, match="not upper case"):
            registry.resolve(code)


def test_registry_module_is_framework_free():
    tree = ast.parse((ROOT / "iris_pipeline" / "registry.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "dagster" not in imported


@pytest.mark.skipif(not (REFERENCE / "iris_datasets.csv").exists()
                    or not (REFERENCE / "insights-api-openapi.json").exists(),
                    reason=f"shared reference files not found under {REFERENCE}")
def test_generator_reproduces_committed_file(tmp_path):
    out = tmp_path / "datasets.json"
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == COMMITTED.read_bytes(), "datasets.json is stale: re-run the generator"


# --- the historic API endpoint (`api`), classified by scripts/registry_api.py -------------------------

def _load_registry_api():
    spec = importlib.util.spec_from_file_location("registry_api", ROOT / "scripts" / "registry_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


registry_api = _load_registry_api()
MUST_HAVE_API = ("FUELINST", "FUELHH", "FREQ", "MID", "BOALF", "BOD", "PN", "QPN", "MELS", "MILS", "DISBSAD",
                 "NETBSAD", "DISEBSP", "REMIT", "INDGEN", "INDO", "ITSDO", "WINDFOR", "TEMP", "SYS_WARN")


def test_required_datasets_have_an_api(registry):
    missing = [code for code in MUST_HAVE_API if registry[code].api is None]
    assert missing == []
    assert registry["SYS_WARN"].api.path == "/datasets/SYSWARN/stream"
    assert registry["E0361"].api.path == "/datasets/CDN/stream"
    assert registry["LOLPDM"].api.path == "/datasets/LOLPDRM/stream"


def test_only_unserved_datasets_lack_an_api(registry):
    assert {d.code for d in registry if d.api is None} == set(registry_api.UNSERVED)
    assert {"BOAV", "ISPSTACK", "OCNMFW"} <= set(registry_api.UNSERVED)


def test_every_api_is_consistent(registry):
    for ds in registry:
        api = ds.api
        if api is None:
            continue
        assert isinstance(api, ApiEndpoint), ds.code
        assert api.window_kind in WINDOW_KINDS and api.window_filter in WINDOW_FILTERS, ds.code
        assert api.versions in VERSIONS and api.max_window_seconds > 0, ds.code
        assert api.max_window_source.strip(), ds.code
        assert api.max_window_source.startswith(("spec: ", "known limit: ", "no documented limit: ")), ds.code
        assert api.stream == api.path.endswith("/stream"), ds.code
        assert isinstance(api.extra_params, tuple), ds.code
        if api.window_kind == "query_range":
            assert api.from_param and api.to_param and api.path_param is None, ds.code
        else:
            assert api.from_param is None and "{" + api.path_param + "}" in api.path, ds.code


def test_bod_mid_and_freq_windows(registry):
    bod = registry["BOD"].api
    assert (bod.path, bod.from_param, bod.to_param) == ("/datasets/BOD/stream", "from", "to")
    assert bod.max_window_seconds == 3600 and bod.window_filter == "time_from"
    assert "domain.md" in bod.max_window_source
    for code in ("MID", "mibm_mid"):
        assert registry[code].api.max_window_seconds == 7 * 86400
        assert registry[code].api.path == "/datasets/MID/stream"
    freq = registry["FREQ"].api
    assert freq == ApiEndpoint(
        path="/datasets/FREQ/stream", stream=True, window_kind="query_range",
        from_param="measurementDateTimeFrom", to_param="measurementDateTimeTo", path_param=None,
        window_filter="measurement_time", max_window_seconds=86400, max_window_source=freq.max_window_source,
        versions="all")
    assert "24 hours" in freq.max_window_source and freq.max_window_source.startswith("spec: GET /datasets/FREQ ")


def test_spec_limits_and_window_filters(registry):
    assert registry["AGPT"].api.max_window_seconds == 4 * 86400
    assert registry["ABUC"].api.max_window_seconds == 731 * 86400  # "2 years (731 days)"
    assert registry["INDGEN"].api.max_window_seconds == 86400
    assert registry["FUELINST"].api.from_param == "publishDateTimeFrom"
    assert registry["FUELINST"].api.window_filter == "publish_time"
    assert registry["PN"].api.window_filter == "settlement_date"
    assert registry["MELS"].api.window_filter == "time_from"
    assert registry["INDO"].api.path == "/datasets/INDO" and not registry["INDO"].api.stream


def test_disebsp_is_one_settlement_date_per_request(registry):
    api = registry["DISEBSP"].api
    assert api.window_kind == "path_date" and api.path_param == "settlementDate"
    assert api.path == "/balancing/settlement/system-prices/{settlementDate}" and not api.stream
    assert api.window_filter == "settlement_date" and api.max_window_seconds == 86400
    assert api.versions == "latest"  # "only ... the latest settlement run are returned"


def test_resolved_and_latest_run_versions(registry):
    assert registry["MELS"].api.versions == registry["MILS"].api.versions == "latest"
    assert registry["SMSG"].api.versions == "latest"
    assert registry["BOD"].api.versions == registry["FUELINST"].api.versions == "all"


def _fragment(path: str, parameters: list, description: str = "", stream_sibling_description: str | None = None):
    paths = {path: {"get": {"description": description, "parameters": parameters}}}
    if stream_sibling_description is not None:
        paths[path.removesuffix("/stream")] = {"get": {"description": stream_sibling_description}}
    return {"paths": paths, "components": {"schemas": {}}}


def _query(name, required=False, description=""):
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string"}}


def test_unclassifiable_endpoint_names_the_dataset():
    doc = _fragment("/datasets/NEWDS/stream", [_query("bmUnit")])
    with pytest.raises(registry_api.UnclassifiableEndpoint, match=r"NEWDS: .*/datasets/NEWDS/stream.*window"):
        registry_api.classify_api("NEWDS", "NEWDS", doc, None, None)


def test_unfillable_required_parameter_raises_unless_unserved(monkeypatch):
    bid_offer = {"name": "bidOffer", "in": "path", "required": True, "schema": {"enum": ["bid", "offer"]}}
    date = {"name": "settlementDate", "in": "path", "required": True, "description": "settlement date"}
    path = "/balancing/x/{bidOffer}/{settlementDate}"
    doc = _fragment(path, [bid_offer, date])
    with pytest.raises(registry_api.UnclassifiableEndpoint, match="NEWDS: .*bidOffer"):
        registry_api.classify_api("NEWDS", "NEWDS", doc, path, None)
    monkeypatch.setitem(registry_api.UNSERVED, "NEWDS", "needs bid and offer")
    assert registry_api.classify_api("NEWDS", "NEWDS", doc, path, None) is None


def test_classifiable_dataset_listed_as_unserved_fails(monkeypatch):
    doc = _fragment("/datasets/NEWDS/stream", [_query("publishDateTimeFrom"), _query("publishDateTimeTo")],
                    stream_sibling_description="This API endpoint has a maximum range of 7 days.")
    monkeypatch.setitem(registry_api.UNSERVED, "NEWDS", "stale")
    with pytest.raises(registry_api.UnclassifiableEndpoint, match="NEWDS: .*UNSERVED"):
        registry_api.classify_api("NEWDS", "NEWDS", doc, None, None)


def test_missing_limit_fails_and_known_limit_fills_it(monkeypatch):
    doc = _fragment("/datasets/NEWDS/stream", [_query("from", True, 'The "from" start time'), _query("to", True)],
                    description="return any data where TimeFrom is within the requested time range.")
    with pytest.raises(registry_api.UnclassifiableEndpoint, match="NEWDS: .*maximum window"):
        registry_api.classify_api("NEWDS", "NEWDS", doc, None, None)
    monkeypatch.setitem(registry_api.KNOWN_LIMITS, "NEWDS", (1800, "known limit: test"))
    api = registry_api.classify_api("NEWDS", "NEWDS", doc, None, None)
    assert (api["window_filter"], api["max_window_seconds"], api["max_window_source"]) == (
        "time_from", 1800, "known limit: test")


def test_stream_inherits_the_non_stream_limit_and_required_single_enum_is_filled():
    fmt = {"name": "format", "in": "query", "required": True, "schema": {"enum": ["json"]}}
    doc = _fragment("/datasets/NEWDS/stream",
                    [_query("publishDateTimeFrom"), _query("publishDateTimeTo"), fmt],
                    stream_sibling_description="Intro. This API endpoint provides a maximum data output range "
                                               "of 2 years (731 days). More.")
    api = registry_api.classify_api("NEWDS", "NEWDS", doc, None, None)
    assert api["max_window_seconds"] == 731 * 86400 and api["extra_params"] == [["format", "json"]]
    assert api["max_window_source"] == ('spec: GET /datasets/NEWDS (non-stream endpoint of the same dataset): '
                                        '"This API endpoint provides a maximum data output range of 2 years '
                                        '(731 days)"')
    assert api["window_kind"] == "query_range" and api["window_filter"] == "publish_time"


@pytest.mark.parametrize("text, seconds", [
    ("This API endpoint provides a maximum data output range of 7 days.", 7 * 86400),
    ("A maximum limit of 24 hours is applied to this endpoint to limit response size.", 86400),
    ("It has a maximum date range of 1 hour.", 3600),
    ("This API endpoint has a maximum range of 1 year (367 days).", 367 * 86400),
    ("This API endpoint has a maximum range of 2 years.", None),  # years without a day count: ambiguous
    ("This endpoint is subject to a limit of 100 requests per minute.", None),
])
def test_parse_max_window(text, seconds):
    parsed = registry_api.parse_max_window(text)
    assert (parsed[0] if parsed else None) == seconds


def test_quantities_carry_their_units(registry):
    """The spec describes no row property; units come from the column's name and the endpoint's own words."""
    unit = lambda code, col: registry[code].column(col).description.split(":")[0]  # noqa: E731
    assert unit("FUELINST", "generation") == "MW" and "average MW values" in registry["FUELINST"].column("generation").description
    assert unit("MID", "price") == unit("DISEBSP", "systemSellPrice") == unit("BOD", "offer") == "£/MWh"
    assert unit("MID", "volume") == unit("DISBSAD", "volume") == unit("INDOD", "demand") == "MWh"
    assert unit("FREQ", "frequency") == "Hz" and unit("TEMP", "temperature") == "°C"
    assert unit("DISBSAD", "cost") == "£" and unit("RURE", "rate1") == "MW/min"
    assert registry["BOD"].column("pairId").description == ""  # no rule, no guess
