"""A google-cloud-bigquery client for the configured project, or for the emulator at BIGQUERY_EMULATOR_HOST."""

from __future__ import annotations

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import bigquery

from iris_pipeline.warehouse.base import WarehouseError


def make_client(
    project: str | None, location: str, emulator_host: str | None = None, credentials: Credentials | None = None
) -> bigquery.Client:
    """With `emulator_host` (http://host:port): anonymous credentials and that endpoint, as the emulator
    wants. Otherwise Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity,
    `gcloud auth application-default login`) unless `credentials` are given."""
    if emulator_host:
        return bigquery.Client(
            project=project or "iris-local",
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=emulator_host),
        )
    if not project:
        raise WarehouseError("IRIS_WAREHOUSE=bigquery needs BQ_PROJECT (the Google Cloud project id)")
    return bigquery.Client(project=project, location=location, credentials=credentials)
