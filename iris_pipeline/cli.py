"""`iris-pipeline`: client (IRIS → spool), simulate (synthetic IRIS → spool), ingest (spool → warehouse),
query (read the warehouse), backfill (Insights API history → warehouse)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from iris_pipeline.arg_types import non_negative_int, non_negative_number, positive_int
from iris_pipeline.config import Settings
from iris_pipeline.iris_client import add_client_arguments
from iris_pipeline.simulate import add_simulate_arguments
from iris_pipeline.loader import DEFAULT_CHUNK_FILES
from iris_pipeline.query_output import FORMATS


def _ingest(args: argparse.Namespace) -> int:
    from iris_pipeline.loader import load_spool
    from iris_pipeline.workers import without_pandas

    without_pandas()
    from iris_pipeline.spool import Spool, SpoolLocked
    from iris_pipeline.warehouse import WarehouseError, open_warehouse

    settings = Settings.from_env()
    spool = Spool(settings.spool_dir)
    if not spool.root.is_dir():  # run from the wrong directory: say so rather than create a warehouse here
        print(
            f"iris-pipeline ingest: no spool at {spool.root.absolute()}: nothing to ingest"
            " (set IRIS_SPOOL_DIR to the spool the simulator or client writes, e.g. the project's data/spool)",
            file=sys.stderr,
        )
        return 1
    if args.dataset:
        from iris_pipeline.registry import load_registry

        # a code pending in the spool but not (yet) in the registry is loaded too, into its own table
        known = {*load_registry().codes(), *spool.datasets_pending()}
        args.dataset = [resolve_code(code, known) for code in args.dataset]
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
    from iris_pipeline.query_output import WRITERS, ResultSpill
    from iris_pipeline.warehouse import QueryRefused, WarehouseError, read_query
    from iris_pipeline.warehouse.duckdb_warehouse import LOCK_TIMEOUT_S

    if not args.sql.strip():
        raise UsageError('the query is empty: give one read statement, e.g. "SELECT count(*) FROM iris_ingest_log"')
    # Rows are spilled to a temporary file first: the warehouse is released before printing, so a
    # reader that stops reading (`query ... | less`) never holds up ingestion.
    with ResultSpill() as result:
        try:
            wait = LOCK_TIMEOUT_S if args.wait is None else args.wait
            read_query(Settings.from_env(), args.sql, result, timeout_s=wait)
        except QueryRefused as exc:
            print(f"iris-pipeline query: refused: {_one_line(exc)}", file=sys.stderr)
            return 2
        except WarehouseError as exc:
            print(f"iris-pipeline query: {_one_line(exc)}", file=sys.stderr)
            return 1
        WRITERS[args.format](result, sys.stdout)
    return 0


def _backfill(args: argparse.Namespace) -> int:
    """Historic settlement days from the Insights API into bmrs_<code>, through the same core as the
    partitioned assets: each range of days replaces those days atomically, so a rerun adds nothing."""
    from iris_pipeline.historic import load_days, split_days
    from iris_pipeline.insights_api import InsightsApiError, InsightsClient
    from iris_pipeline.registry import load_registry
    from iris_pipeline.warehouse import WarehouseError, open_warehouse

    if args.to_day < args.from_day:
        raise UsageError(f"--to {args.to_day} is before --from {args.from_day}")
    registry = load_registry()
    datasets = [historic_dataset(registry, code) for code in args.dataset]
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

    return main_simulate(args)  # its options are range-checked by argparse


def _client(args: argparse.Namespace) -> int:
    from iris_pipeline.iris_client import main_client

    _check_options(args, positive=("batch_size", "writers"), non_negative=("max_idle", "prefetch"))
    return main_client(args)


class UsageError(ValueError):
    """A command line that cannot mean anything: one line on stderr, exit status 2."""


def resolve_code(code: str, known) -> str:
    """`code` if it is a known dataset code; else the one known code equal to it but for case
    (`fuelinst` → FUELINST; exact matches first, as `mibm_mid` is a real code); else a UsageError."""
    known = set(known)
    if code in known:
        return code
    same_but_case = [k for k in known if k.lower() == code.lower()]
    if len(same_but_case) == 1:
        return same_but_case[0]
    import difflib

    close = sorted(same_but_case) or difflib.get_close_matches(code.upper(), sorted(known), n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UsageError(f"unknown dataset code {code!r}{hint}: the registry and the spool have no such dataset")


def _check_options(args: argparse.Namespace, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """Numeric options another module declares (simulate, client), checked before anything starts."""
    for names, ok, what in ((positive, lambda v: v > 0, "above 0"), (non_negative, lambda v: v >= 0, "0 or more")):
        for name in names:
            value = getattr(args, name, None)
            if value is not None and not ok(value):  # NaN fails both
                raise UsageError(f"--{name.replace('_', '-')} must be {what}, not {value}")


def historic_dataset(registry, code: str):
    """The dataset `backfill --dataset CODE` means: an IRIS code first (MID is a code of its own), then
    an Insights API code (SYSWARN → SYS_WARN), each also in another case; it must have an endpoint."""
    if code not in registry:
        by_api_code = {d.api_code: d.code for d in registry}
        code = by_api_code.get(code) or by_api_code.get(code.upper()) or code
    dataset = registry[resolve_code(code, registry.codes())]
    if dataset.api is None:
        raise UsageError(f"{dataset.code}: the registry has no historic (Insights API) endpoint for it")
    return dataset


def _one_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _day(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a command line it cannot parse is one line on stderr (exit status 2), not a usage
    block: the line names the problem and where help is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="iris-pipeline", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="drain the spool once into the warehouse and print a summary")
    ingest.add_argument("--dataset", action="append", help="only this dataset code (repeatable)")
    ingest.add_argument("--prune-archive", action="store_true", help="also delete archived files past retention")
    ingest.add_argument(
        "--chunk-files", type=positive_int, default=DEFAULT_CHUNK_FILES,
        help=f"files per transaction (default {DEFAULT_CHUNK_FILES:,})",
    )
    ingest.add_argument(
        "--workers", type=non_negative_int, default=None,
        help="processes preparing chunks (0: none); default: one per CPU once 5,000+ files are pending",
    )
    ingest.set_defaults(func=_ingest)

    query = sub.add_parser("query", help="run one read-only SQL statement on the warehouse and print the result")
    query.add_argument("sql", help='e.g. "SELECT count(*) FROM bmrs_freq_iris"')
    query.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table: aligned columns under a header (default); csv: a header row, then RFC 4180 rows;"
        " json: one JSON array of objects, one per row",
    )
    query.add_argument(
        "--wait", type=non_negative_number, default=None, metavar="SECONDS",
        help="how long to wait while a load holds the warehouse (default: 600)",
    )
    query.set_defaults(func=_query)

    backfill = sub.add_parser("backfill", help="load historic settlement days from the Insights API into bmrs_<code>")
    backfill.add_argument("--dataset", action="append", required=True, help="dataset code, e.g. FUELINST (repeatable)")
    backfill.add_argument("--from", dest="from_day", type=_day, required=True, help="first settlement day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="to_day", type=_day, required=True, help="last settlement day (inclusive)")
    backfill.add_argument(
        "--days-per-range", type=positive_int, default=7, help="days fetched and replaced per transaction (default 7)"
    )
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
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
        return status
    except UsageError as exc:
        print(f"iris-pipeline {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a setting from the environment that cannot be used (Settings.from_env)
        print(f"iris-pipeline {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `query ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush fails quietly
        return 141


if __name__ == "__main__":
    sys.exit(main())
