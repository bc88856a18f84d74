"""What the last loads left in each table, kept in a small file in the spool root.

The ingest step writes it while it holds the warehouse; the health job reads it, so evaluating
freshness never opens the warehouse (DuckDB admits one writer process and no reader beside it) and
never waits for, or fails because of, a running ingest. Replaced atomically (tmp file + rename).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from iris_pipeline.registry import Registry
from iris_pipeline.warehouse.base import TableFreshness, Warehouse

STATUS_FILE = "ingest_status.json"


@dataclass(frozen=True)
class IngestStatus:
    tables: dict[str, TableFreshness] = field(default_factory=dict)  # by dataset code
    unregistered_codes: frozenset[str] = frozenset()

    def freshness(self, code: str) -> TableFreshness:
        return self.tables.get(code) or TableFreshness(None, None, 0)


def status_path(spool_root: str | os.PathLike[str]) -> Path:
    return Path(spool_root) / STATUS_FILE


def read_status(spool_root: str | os.PathLike[str]) -> IngestStatus | None:
    """The last written status, or None when there is none yet (or it cannot be read)."""
    try:
        raw = json.loads(status_path(spool_root).read_text(encoding="utf-8"))
        tables = {
            code: TableFreshness(
                _time(t.get("last_ingested_at")), _time(t.get("latest_reference_time")), int(t["rows"])
            )
            for code, t in raw["tables"].items()
        }
        return IngestStatus(tables, frozenset(raw.get("unregistered_codes", [])))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # damaged: the next ingest rewrites it whole


def update_status(
    spool_root: str | os.PathLike[str],
    tables: Mapping[str, TableFreshness],
    unregistered_codes: Iterable[str] = (),
) -> IngestStatus:
    """Merge these tables' freshness into the status file. Callers hold the warehouse writer lock,
    which serialises the read-modify-write."""
    old = read_status(spool_root) or IngestStatus()
    status = IngestStatus({**old.tables, **tables}, old.unregistered_codes | frozenset(unregistered_codes))
    body = {
        "tables": {
            code: {
                "last_ingested_at": _iso(f.last_ingested_at),
                "latest_reference_time": _iso(f.latest_reference_time),
                "rows": f.rows,
            }
            for code, f in sorted(status.tables.items())
        },
        "unregistered_codes": sorted(status.unregistered_codes),
    }
    target = status_path(spool_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{STATUS_FILE}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return status


def refresh_status(
    spool_root: str | os.PathLike[str], warehouse: Warehouse, registry: Registry, codes: Iterable[str]
) -> IngestStatus:
    """Re-read the freshness of these datasets (those a load just wrote to) into the status file; the
    first time, of every registered dataset plus the ledger's unregistered codes, so the file starts
    complete. Codes the registry does not know are recorded by name (the `all_codes_registered` check)."""
    codes = set(codes)
    first = not status_path(spool_root).exists()
    tables = warehouse.freshness_many(
        [(ds.code, ds.table_name, ds.reference_time_field) for ds in registry if first or ds.code in codes]
    )
    unregistered = {code for code in codes if code not in registry}
    if first:
        ledger_codes = warehouse.ledger_datasets()
        unregistered |= ledger_codes - set(registry.codes())
    return update_status(spool_root, tables, unregistered)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
