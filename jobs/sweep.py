"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/sweep.py PLAN [--smoke] [--storage URI]`

Thin entrypoint for one plan's sweep (datasets -> phase 1 search -> phase 2 grid, see orchestrator.sweep):
checks the storage before anything else, connects to the cluster the job runs on (``RAY_ADDRESS``, set by
the job supervisor; a private local Ray otherwise), logs where results go and ends with a one-line JSON
summary. Exit status: 0 all trials finished, 1 some failed (rerun with --resume), 2 a user-fixable error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working dir, when not pip-installed

from jobs._shared import connect, load, log, log_cost, preflight, print_json, run  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The job's command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(prog="jobs/sweep.py", description="one plan's sweep on the job's cluster")
    parser.add_argument("plan", help="plan YAML, e.g. plans/paper.yaml (relative to the job's working dir)")
    parser.add_argument("--storage", default=None, help="override the plan's storage (local path or s3://)")
    parser.add_argument("--smoke", action="store_true", help="one seed, one fold, one epoch, tiny inputs")
    parser.add_argument("--resume", action="store_true", help="restore an interrupted sweep (Tuner.restore)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else local)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; returns the exit status."""
    args = parse_args(argv)
    plan = load(args.plan, args.storage, args.smoke)
    preflight(plan.storage)  # before the heavy imports below: a wrong bucket fails in seconds

    from orchestrator.sweep import plan_root, run_sweep

    log(f"plan {plan.name}: results -> {plan_root(plan).uri}")
    log_cost(plan)  # GPU-hours and dollars in the job log; submitting the job was the confirmation
    connect(args.address)
    result = run_sweep(plan, resume=args.resume)
    log(f"sweep {'finished' if not result.failed else 'ended with failures'}: {result.finished}/{result.trials} "
        f"trials done, {len(result.failed)} failed, {result.seconds / 60:.1f} min; results: {result.root}")
    for name in result.failed:
        log(f"failed: {name} (submit again with --resume; finished trials are kept)")
    print_json(result.summary())
    return 0 if not result.failed else 1


if __name__ == "__main__":
    sys.exit(run(main))
