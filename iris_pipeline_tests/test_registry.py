import ast
import subprocess
import sys
from pathlib import Path

import pytest

from iris_pipeline.registry import (
    COLUMN_TYPES,
    KEY_KINDS,
    Dataset,
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
    assert registry["BOALF"].natural_key == ("bmUnit", "acceptanceNumber", "timeFrom")
    assert registry["BOALF"].version_columns == ("acceptanceTime",)
    assert registry["DISEBSP"].version_columns == ("createdDateTime",)
    assert registry["REMIT"].natural_key == ("mrid", "revisionNumber")
    assert registry["INDGEN"].key_kind == "vintage"
    assert registry["INDGEN"].natural_key == ("startTime", "boundary", "publishTime")
    assert registry["SYS_WARN"].key_kind == "record"


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
