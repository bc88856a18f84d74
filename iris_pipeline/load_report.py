"""What a drain did, per dataset: the CLI prints it, the assets turn it into materialisation metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DatasetReport:
    dataset: str
    table: str | None
    registered: bool
    files_loaded: int = 0
    rows_loaded: int = 0
    files_already_loaded: int = 0
    files_quarantined: int = 0
    quarantine_reasons: dict[str, str] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)
    oldest_file_age_s: float | None = None
    error: str | None = None
    archive_error: str | None = None  # loaded, but not yet moved to archive/ (done by the next run)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "files_loaded": self.files_loaded,
            "rows_loaded": self.rows_loaded,
            "files_already_loaded": self.files_already_loaded,
            "files_quarantined": self.files_quarantined,
            "lag_seconds": round(self.oldest_file_age_s or 0.0, 1),
            "registered": self.registered,
            "schema_changes": "; ".join(self.schema_changes) or "none",
        } | ({"archive_error": self.archive_error} if self.archive_error else {})


@dataclass
class LoadReport:
    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def files_loaded(self) -> int:
        return sum(r.files_loaded for r in self.datasets.values())

    @property
    def rows_loaded(self) -> int:
        return sum(r.rows_loaded for r in self.datasets.values())

    @property
    def files_quarantined(self) -> int:
        return sum(r.files_quarantined for r in self.datasets.values())

    @property
    def failed(self) -> dict[str, str]:
        return {code: r.error for code, r in self.datasets.items() if r.error}

    def summary(self) -> str:
        lines = [
            f"{code:<12} files={r.files_loaded:<7} rows={r.rows_loaded:<9} dup={r.files_already_loaded:<5}"
            f" quarantined={r.files_quarantined:<4}{' UNREGISTERED' if not r.registered else ''}"
            f"{' ERROR: ' + r.error if r.error else ''}"
            f"{' NOT ARCHIVED: ' + r.archive_error if r.archive_error else ''}"
            for code, r in sorted(self.datasets.items())
        ]
        rate = self.files_loaded / self.seconds if self.seconds else 0.0
        lines.append(
            f"total: {self.files_loaded} files, {self.rows_loaded} rows, {self.files_quarantined} quarantined,"
            f" {len(self.failed)} datasets failed, {self.seconds:.2f}s ({rate:,.0f} files/s)"
        )
        return "\n".join(lines)
