"""The IRIS feed into the spool, and a check on the client that keeps it flowing."""

import datetime as dt
import os

import dagster as dg

from iris_pipeline.config import Settings
from iris_pipeline.defs.resources import SpoolResource
from iris_pipeline.iris_client import client_health, read_status

IRIS_FEED_KEY = dg.AssetKey("iris_spool_feed")
CLIENT_HEALTH = "client_health"
_CREDENTIAL_VARS = ("IRIS_CONNECTION_STRING", "IRIS_CLIENT_SECRET")

iris_feed = dg.AssetSpec(
    IRIS_FEED_KEY,
    description=(
        "IRIS messages as received from Elexon's Azure Service Bus queue by `iris-pipeline client`: one"
        " file per message in spool/incoming/<DATASET>/, written durably before the message is completed;"
        " what the broker dead-letters is moved to spool/quarantine/<DATASET>/ with the broker's reason."
        " The client runs outside Dagster (one connection per queue); its status file feeds the check."
    ),
    group_name="iris_feed",
    kinds={"azure"},
)


def client_health_result(spool_root: str, max_silence_s: float) -> dg.AssetCheckResult:
    status = read_status(spool_root)
    passed, description, metadata = client_health(status, dt.datetime.now(dt.timezone.utc), max_silence_s)
    severity = dg.AssetCheckSeverity.ERROR
    if status is None and not any(os.environ.get(var) for var in _CREDENTIAL_VARS):
        severity = dg.AssetCheckSeverity.WARN
        description += " (no IRIS credentials configured: `make dev` feeds the simulator instead)"
    elif passed and "warning" in metadata:
        passed, severity = False, dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=IRIS_FEED_KEY,
        check_name=CLIENT_HEALTH,
        passed=passed,
        severity=severity,
        description=description,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def build_client_health_check(settings: Settings) -> dg.AssetChecksDefinition:
    max_silence_s = settings.client_max_silence_s

    @dg.asset_check(
        asset=IRIS_FEED_KEY,
        name=CLIENT_HEALTH,
        description=f"Fails when the IRIS client is down, disconnected, or silent for over {max_silence_s:.0f} s,"
        " or when its spool writes have kept failing for over a minute;"
        " warns 30 days before the client secret expires.",
    )
    def client_health_check(spool: SpoolResource) -> dg.AssetCheckResult:
        return client_health_result(spool.root, max_silence_s)

    return client_health_check
