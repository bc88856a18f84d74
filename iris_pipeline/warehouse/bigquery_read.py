"""User SQL on BigQuery (`iris-pipeline query`): one read statement, checked by a dry run first.

Results come back through pandas-gbq: a DataFrame is the natural shape of a query result, and it
pages through large results (and uses the Storage Read API where it is enabled) on its own.
"""

from __future__ import annotations

import pandas_gbq
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from iris_pipeline.query_output import ResultSpill
from iris_pipeline.warehouse.base import QueryRefused, WarehouseError
from iris_pipeline.warehouse.bigquery_client import make_client


def read_statement_type(client: bigquery.Client, sql: str) -> str:
    """The statement's type, from a dry run (free); anything but one SELECT is refused."""
    try:
        dry = client.query(sql, job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False))
    except gexc.BadRequest as exc:
        raise QueryRefused(str(exc).strip().splitlines()[0][:300]) from None
    statement = dry.statement_type or "SELECT"
    if statement != "SELECT":
        raise QueryRefused(f"read-only: {statement} statements are refused (SELECT is accepted)")
    return statement


def read_query(settings, sql: str, out: ResultSpill, *, timeout_s: float) -> int:
    client = make_client(settings.bq_project, settings.bq_location, settings.bigquery_emulator_host)
    try:
        read_statement_type(client, sql)
        frame = pandas_gbq.read_gbq(
            sql, project_id=client.project, location=settings.bq_location, bigquery_client=client,
            progress_bar_type=None, configuration={"query": {"timeoutMs": int(timeout_s * 1000)}},
        )
    except gexc.GoogleAPIError as exc:
        raise WarehouseError(str(exc).strip().splitlines()[0][:300]) from None
    finally:
        client.close()
    out.set_columns(list(frame.columns))
    # NaN, NaT and pd.NA are how a DataFrame holds NULL
    out.add_rows([None if _is_missing(v) else v for v in row] for row in frame.itertuples(index=False, name=None))
    return len(frame)


def _is_missing(value) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays (REPEATED columns) are never missing as a whole
        return False
