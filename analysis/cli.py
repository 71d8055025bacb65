"""The ``tables`` and ``query`` subcommands, for the main ``rethink-audio`` parser.

``orchestrator.cli`` calls :func:`register` with its subparsers; each subcommand sets
``handler=fn(args) -> int``. User-fixable problems raise ``RethinkError`` subclasses (printed by the main
CLI as one line, exit status 2). Heavy modules (torch, captum, matplotlib) load only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add ``tables`` and ``query`` to an argparse subparsers object."""
    tables = subparsers.add_parser("tables", help="results -> paper tables, figures and report.md/html")
    tables.add_argument("--results", required=True, help="results root (STORAGE/<plan name>/) or trials folder, "
                                                         "local path or s3:// URI; or a plan YAML (its results)")
    tables.add_argument("--out", default=None, help="output folder: local path or s3:// URI (default "
                                                    "<results>/report)")
    tables.add_argument("--storage", default=None, help="with a plan: override its storage")
    tables.add_argument("--smoke", action="store_true", help="with a plan: the results of its --smoke run")
    tables.add_argument("--json", action="store_true", help="a one-line JSON summary on stdout")
    tables.add_argument("--no-svcca", action="store_true", help="skip SVCCA (Fig. 2a): it runs networks on CPU")
    tables.add_argument("--no-ig", action="store_true", help="skip Integrated Gradients (Fig. 3)")
    tables.add_argument("--max-clips", type=int, default=10, help="clips per Integrated Gradients figure (10)")
    tables.add_argument("--ig-steps", type=int, default=64, help="Integrated Gradients path steps (64)")
    tables.add_argument("--svcca-clips", type=svcca_clips, default=None, metavar="N|auto",
                        help="test-fold clips SVCCA runs on; auto (default): per network, enough for 10x more "
                             "data points (clip x position) than neurons (channels) in every block, capped by "
                             "the fold")
    tables.set_defaults(handler=cmd_tables)

    query = subparsers.add_parser("query", help="filter / group / aggregate the results table")
    query.add_argument("--results", required=True, help="results root or trials folder (local or s3://)")
    query.add_argument("--where", default=None,
                       help="filter: columns, literals, comparisons, in [...], and/or/not (no code runs), "
                            "e.g. \"dataset == 'esc50' and 0 <= seed < 3\"")
    query.add_argument("--group-by", nargs="+", default=None, metavar="COL", help="columns to group by")
    query.add_argument("--metric", default=None, help="column to aggregate (default valid_selected)")
    query.add_argument("--format", default="md", choices=["md", "csv", "json"], help="output format (md)")
    query.add_argument("--strict", action="store_true",
                       help="exit 2 if any trial record is missing or unreadable (unfinished trials are listed)")
    query.set_defaults(handler=cmd_query)


def svcca_clips(text: str) -> int | None:
    """``--svcca-clips`` value: ``auto`` -> None (chosen per network), else a positive clip count."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of clips or 'auto', got {text!r}")
    return value


def results_of(target: str, storage: str | None, smoke: bool) -> str:
    """The results URI of ``target``: a plan file's STORAGE/<plan name> (``--smoke``: its smoke name), or
    ``target`` itself."""
    if target.endswith((".yaml", ".yml")) and Path(target).is_file():
        from orchestrator.plan import load_plan, smoke as shrink
        from orchestrator.sweep import plan_root

        plan = load_plan(target, storage=storage)
        return plan_root(shrink(plan) if smoke else plan).uri
    return target


def cmd_tables(args: argparse.Namespace) -> int:
    """Build the report; print where it is and what was skipped."""
    from analysis.records import describe_skipped
    from analysis.report import build_report
    from orchestrator import storage

    results = results_of(args.results, args.storage, args.smoke)
    out = args.out or storage.resolve(results).join("report").uri
    storage.check_writable(storage.resolve(out))  # before any work: a wrong bucket fails in seconds
    svcca, attribution = not args.no_svcca, not args.no_ig
    print(f"tables: {results} -> {out} (SVCCA {'on' if svcca else 'off'}, Integrated Gradients "
          f"{'on' if attribution else 'off'})", file=sys.stderr if args.json else sys.stdout)
    written = build_report(results, out, svcca=svcca, attribution=attribution, max_clips=args.max_clips,
                           svcca_clips=args.svcca_clips, ig_steps=args.ig_steps)
    for line in describe_skipped(written["skipped_trials"]):
        print(line, file=sys.stderr)
    for reason in written["skipped"][len(written["skipped_trials"]):]:
        print(f"skipped: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({"results": results, "report": written["report_html"], "trials": written["trials"],
                          "tables": sorted(written["tables"]), "skipped": written["skipped"]}, default=str))
        return 0
    print(f"{written['trials']} finished trials ({written['unfinished']} skipped): "
          f"{len(written['tables'])} tables, {len(written['figures'])} figures")
    print(f"  -> {written['report_md']}")
    print(f"  -> {written['report_html']}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Print the query result; trial folders not counted in it go to stderr (count, path, reason)."""
    from analysis.query import query_results
    from analysis.records import describe_skipped

    result = query_results(args.results, args.where, args.group_by, args.metric, args.format,
                           strict=args.strict)
    for line in describe_skipped(result.skipped):
        print(line, file=sys.stderr)
    print(result.text, end="")
    return 0
