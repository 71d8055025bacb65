"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/analyze.py TARGET [--smoke] [--out URI]`

Thin entrypoint for the tables/figures/report of finished trials (``analysis.report.build_report``).
TARGET is a plan YAML (results = STORAGE/<plan name>, ``--storage``/``--smoke`` as for jobs/sweep.py) or a
results URI (local path or s3://). The report goes to ``--out`` (default: ``<results>/report``).
``--smoke`` turns off SVCCA and Integrated Gradients, which rebuild networks on CPU.

Analysis reads trial records only, in this job's driver process: under ``ray job submit`` it joins the
cluster (``RAY_ADDRESS``) just to log it; run by hand it starts no Ray at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working dir, when not pip-installed

from jobs._shared import connect, load, log, make_report, preflight, print_json, run  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The job's command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(prog="jobs/analyze.py", description="tables and figures of a sweep")
    parser.add_argument("target", help="plan YAML, or a results URI (STORAGE/<plan name>, local or s3://)")
    parser.add_argument("--storage", default=None, help="with a plan: override its storage")
    parser.add_argument("--smoke", action="store_true", help="with a plan: its --smoke results; SVCCA/IG off")
    parser.add_argument("--out", default=None, help="report folder (default <results>/report)")
    parser.add_argument("--no-svcca", action="store_true", help="skip SVCCA (Fig. 2a)")
    parser.add_argument("--no-ig", action="store_true", help="skip Integrated Gradients (Fig. 3)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS; none needed)")
    return parser.parse_args(argv)


def results_of(target: str, storage_uri: str | None, smoke: bool) -> str:
    """The results URI of ``target``: a plan file's STORAGE/<plan name>, or ``target`` itself."""
    if target.endswith((".yaml", ".yml")) and Path(target).is_file():
        from orchestrator.sweep import plan_root

        return plan_root(load(target, storage_uri, smoke)).uri
    return target


def main(argv: list[str] | None = None) -> int:
    """Build the report; returns the exit status (2 when the analysis package is missing)."""
    from orchestrator import storage

    args = parse_args(argv)
    results = results_of(args.target, args.storage, args.smoke)
    out = args.out or storage.resolve(results).join("report").uri
    log(f"results {results} -> report {out}")
    preflight(out)
    if args.address or os.environ.get("RAY_ADDRESS"):
        connect(args.address)
    written = make_report(results, out, smoke=args.smoke, svcca=not args.no_svcca, attribution=not args.no_ig)
    if written is None:
        return 2
    print_json({"results": results, "report": written["report_html"], "trials": written["trials"],
                "tables": sorted(written["tables"]), "skipped": written["skipped"]})
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
