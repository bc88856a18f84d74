"""`iris-pipeline`: client (IRIS → spool), simulate (synthetic IRIS → spool), ingest (spool → warehouse),
query (read the warehouse), backfill (Insights API history → warehouse)."""

from __future__ import annotations

import argparse
import logging
import sys

from iris_pipeline.config import Settings
from iris_pipeline.iris_client import add_client_arguments
from iris_pipeline.simulate import add_simulate_arguments
from iris_pipeline.loader import DEFAULT_CHUNK_FILES


def _ingest(args: argparse.Namespace) -> int:
    from iris_pipeline.loader import load_spool
    from iris_pipeline.workers import without_pandas

    without_pandas()
    from iris_pipeline.spool import Spool, SpoolLocked
    from iris_pipeline.warehouse import WarehouseError, open_warehouse

    settings = Settings.from_env()
    spool = Spool(settings.spool_dir)
    try:
        with open_warehouse(settings) as warehouse:
            parallel = {} if args.workers is None else {"workers": args.workers, "parallel_min_files": 0}
            report = load_spool(
                spool, warehouse, datasets=args.dataset or None, chunk_files=args.chunk_files,
                max_message_bytes=settings.max_message_bytes, **parallel,
            )
            usage = warehouse.usage()
    except (SpoolLocked, WarehouseError) as exc:  # held too long by another process: say who, in a line
        print(f"iris-pipeline ingest: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if usage:  # BigQuery: what the drain cost
        print("warehouse: " + ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in sorted(usage.items())))
    if args.prune_archive:
        pruned = spool.prune_archive(settings.archive_retention_days)
        print(f"pruned {pruned.removed} archived files older than {settings.archive_retention_days} days")
        for problem in pruned.skipped:
            print(f"left in the archive: {problem}")
    return 1 if report.failed else 0


def _query(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from iris_pipeline.warehouse import QueryRefused, WarehouseError, read_query
    from iris_pipeline.warehouse.duckdb_warehouse import LOCK_TIMEOUT_S

    # Rows go to a temporary file first: the warehouse is released before printing, so a reader
    # that stops reading (`query ... | less`) never holds up ingestion.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as rows:
        try:
            wait = LOCK_TIMEOUT_S if args.wait is None else args.wait
            read_query(Settings.from_env(), args.sql, rows, timeout_s=wait)
        except QueryRefused as exc:
            print(f"iris-pipeline query: refused: {exc}", file=sys.stderr)
            return 2
        except WarehouseError as exc:
            print(f"iris-pipeline query: {exc}", file=sys.stderr)
            return 1
        rows.seek(0)
        shutil.copyfileobj(rows, sys.stdout)
    return 0


def _backfill(args: argparse.Namespace) -> int:
    """Historic settlement days from the Insights API into bmrs_<code>, through the same core as the
    partitioned assets: each range of days replaces those days atomically, so a rerun adds nothing."""
    from iris_pipeline.historic import load_days, split_days
    from iris_pipeline.insights_api import InsightsApiError, InsightsClient
    from iris_pipeline.registry import load_registry
    from iris_pipeline.warehouse import WarehouseError, open_warehouse

    if args.to_day < args.from_day:
        print("iris-pipeline backfill: --to is before --from", file=sys.stderr)
        return 2
    registry = load_registry()
    datasets = []
    for code in args.dataset:
        dataset = registry.get(code) or next((d for d in registry if d.api_code == code), None)
        if dataset is None or dataset.api is None:
            print(f"iris-pipeline backfill: {code}: no historic endpoint in the registry", file=sys.stderr)
            return 2
        datasets.append(dataset)
    settings = Settings.from_env()
    ranges = split_days(args.from_day, args.to_day, args.days_per_range)
    total, done, failed = len(ranges) * len(datasets), 0, 0
    progress = sys.stderr.isatty()
    with InsightsClient(settings.elexon_api_base_url) as client:
        for dataset in datasets:
            for first, last in ranges:
                try:
                    # the warehouse is opened per range: DuckDB admits one writer, and ingest goes on between
                    with open_warehouse(settings) as warehouse:
                        loaded = load_days(warehouse, dataset, first, last, client.fetch)
                except (InsightsApiError, WarehouseError, ValueError) as exc:
                    failed += 1
                    print(f"{dataset.code} {first}..{last} FAILED: {exc}")
                    continue
                finally:
                    done += 1
                    if progress:
                        print(f"\r[{'#' * (30 * done // total):<30}] {done}/{total} ranges", end="", file=sys.stderr, flush=True)
                for day, rows in loaded.rows_by_day.items():
                    print(f"{dataset.code:<10} {day}  rows={rows}")
    if progress:
        print(file=sys.stderr)
    return 1 if failed else 0


def _simulate(args: argparse.Namespace) -> int:
    from iris_pipeline.simulate import main_simulate

    return main_simulate(args)


def _client(args: argparse.Namespace) -> int:
    from iris_pipeline.iris_client import main_client

    return main_client(args)


def _day(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iris-pipeline", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="drain the spool once into the warehouse and print a summary")
    ingest.add_argument("--dataset", action="append", help="only this dataset code (repeatable)")
    ingest.add_argument("--prune-archive", action="store_true", help="also delete archived files past retention")
    ingest.add_argument("--chunk-files", type=int, default=DEFAULT_CHUNK_FILES, help="files per transaction")
    ingest.add_argument(
        "--workers", type=int, default=None,
        help="processes preparing chunks (0: none); default: one per CPU once 5,000+ files are pending",
    )
    ingest.set_defaults(func=_ingest)

    query = sub.add_parser("query", help="run one read-only SQL statement on the warehouse, print tab-separated rows")
    query.add_argument("sql", help='e.g. "SELECT count(*) FROM bmrs_freq_iris"')
    query.add_argument(
        "--wait", type=float, default=None, metavar="SECONDS",
        help="how long to wait while a load holds the warehouse (default: 600)",
    )
    query.set_defaults(func=_query)

    backfill = sub.add_parser("backfill", help="load historic settlement days from the Insights API into bmrs_<code>")
    backfill.add_argument("--dataset", action="append", required=True, help="dataset code, e.g. FUELINST (repeatable)")
    backfill.add_argument("--from", dest="from_day", type=_day, required=True, help="first settlement day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="to_day", type=_day, required=True, help="last settlement day (inclusive)")
    backfill.add_argument("--days-per-range", type=int, default=7, help="days fetched and replaced per transaction")
    backfill.set_defaults(func=_backfill)

    simulate = sub.add_parser("simulate", help="write realistic synthetic IRIS messages into the spool")
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=_simulate)

    client = sub.add_parser("client", help="receive IRIS messages from Azure Service Bus into the spool")
    add_client_arguments(client)
    client.set_defaults(func=_client)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
