"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/paper.py PLAN [--smoke] [--storage URI]`

A whole plan, start to finish, as one job: **preprocess** (every dataset the plan builds) -> **search**
(phase 1, when the plan enables it) -> **grid** (phase 2, every trial) -> **tables** (report). Each stage
is skipped when its outputs already exist, so submitting the same command again after an interruption, or
after a finished run, redoes only what is missing:

* preprocess: a dataset version is reused when its ``dataset.json`` exists (same inputs, same hash);
* search: ``search/best.json`` exists (or the plan has search off: the plan's recipe is used);
* grid: every trial of the plan has its ``summary.json``; otherwise the sweep runs, reusing finished
  trials and resuming started ones from their last checkpoint (``--resume`` restores Tune's own state);
* tables: ``report/report.md`` exists and no trial finished in this run.

Storage is checked before any compute; the last line of the log is a JSON summary of the stages.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working dir, when not pip-installed

from jobs._shared import connect, load, log, log_cost, make_report, preflight, print_json, run  # noqa: E402

REPORT_DIR = "report"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The job's command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(prog="jobs/paper.py", description="preprocess -> search -> grid -> tables")
    parser.add_argument("plan", help="plan YAML, e.g. plans/paper.yaml")
    parser.add_argument("--storage", default=None, help="override the plan's storage (local path or s3://)")
    parser.add_argument("--smoke", action="store_true", help="one seed, one fold, one epoch, tiny inputs; "
                                                             "tables without SVCCA/IG")
    parser.add_argument("--resume", action="store_true", help="grid: restore the interrupted Tune experiment")
    parser.add_argument("--report", default=None, help="report folder (default <results>/report)")
    parser.add_argument("--no-svcca", action="store_true", help="skip SVCCA (Fig. 2a)")
    parser.add_argument("--no-ig", action="store_true", help="skip Integrated Gradients (Fig. 3)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else local)")
    return parser.parse_args(argv)


def finished_trials(trials_uri: str, ids: list[str]) -> set[str]:
    """The ids among ``ids`` whose records are complete (summary.json exists); parallel: S3 latency."""
    from orchestrator.trial import read_summary

    with ThreadPoolExecutor(max_workers=16) as pool:
        done = pool.map(lambda t: read_summary(trials_uri, t) is not None, ids)
    return {t for t, ok in zip(ids, done) if ok}


def stage_preprocess(plan, root) -> tuple[dict, dict, str]:
    """Dataset versions of the plan (built unless they exist); returns uris, folds and what happened."""
    from orchestrator import spectra, storage
    from orchestrator.sweep import prepare_datasets

    datasets = root.join("datasets")
    built_here = [name for name, ds in plan.datasets.items() if ds.preprocess is not None]
    before = {uri for uri in _versions(datasets) if storage.exists(storage.resolve(uri).join(spectra.CARD))}
    uris, folds = prepare_datasets(plan, root)  # reuses every version whose dataset.json exists
    new = [name for name in built_here if uris[name] not in before]
    state = "ran" if new else "skipped"
    log(f"stage preprocess {state}: " + (", ".join(f"{n} -> {uris[n]}" for n in uris) or "no datasets"))
    return uris, folds, state


def _versions(datasets) -> list[str]:
    """URIs of the version folders under ``datasets`` (none if it does not exist yet)."""
    import pyarrow.fs as pafs

    from orchestrator import storage

    if not storage.exists(datasets):
        return []
    infos = datasets.fs.get_file_info(pafs.FileSelector(datasets.path, recursive=False))
    return [datasets.join(i.base_name).uri for i in infos if i.type == pafs.FileType.Directory]


def stage_search(plan, uris, folds, root):
    """Phase 1 (or the plan's recipe); returns the recipes (orchestrator.search.Recipes) and what happened."""
    from orchestrator import storage
    from orchestrator.sweep import SEARCH, run_search

    existed = storage.exists(root.join(SEARCH, "best.json"))
    recipes = run_search(plan, uris, folds, root)
    optim = recipes.default
    state = "skipped" if existed or not plan.search.enabled else "ran"
    reason = "search off in the plan, its recipe is used" if not plan.search.enabled else \
        ("search/best.json exists" if existed else "HyperOpt search done")
    log(f"stage search {state} ({reason}): lr {optim.lr:g}, weight decay {optim.weight_decay:g}, "
        f"batch {optim.batch_size}, {optim.epochs} epochs" + ("" if not plan.search.enabled else
                                                               "; each test fold's recipe: search/recipes.json"))
    return recipes, state


def stage_grid(plan, uris, folds, recipes, root, resume: bool) -> tuple[str, dict]:
    """Phase 2 unless every trial is finished; returns what happened and the counts."""
    from orchestrator.plan import expand_grid
    from orchestrator.sweep import TRIALS, run_sweep
    from orchestrator.trial import trial_id

    ids = [trial_id(t) for t in expand_grid(plan, uris, folds, recipes)]
    done = finished_trials(root.join(TRIALS).uri, ids)
    if len(done) == len(ids):
        log(f"stage grid skipped: all {len(ids)} trials finished")
        return "skipped", {"trials": len(ids), "finished": len(ids), "failed": []}
    log(f"stage grid: {len(ids) - len(done)} of {len(ids)} trials to run")
    result = run_sweep(plan, resume=resume)
    log(f"stage grid ran: {result.finished}/{result.trials} finished, {len(result.failed)} failed")
    return "ran", {"trials": result.trials, "finished": result.finished, "failed": result.failed}


def main(argv: list[str] | None = None) -> int:
    """Run the four stages; returns the exit status (1 if a trial failed, 2 for a user-fixable error)."""
    from orchestrator import storage
    from orchestrator.config import to_dict

    args = parse_args(argv)
    start = time.time()
    plan = load(args.plan, args.storage, args.smoke)
    preflight(plan.storage)  # before the heavy imports below: a wrong bucket fails in seconds
    if args.report:
        preflight(args.report)

    from orchestrator.sweep import plan_root

    root = plan_root(plan)
    report = args.report or root.join(REPORT_DIR).uri
    log(f"plan {plan.name}: results -> {root.uri}, report -> {report}")
    log_cost(plan)  # GPU-hours and dollars in the job log; submitting the job was the confirmation
    connect(args.address)
    storage.write_json(root.join("plan.json"), to_dict(plan))  # what produced the results, even if all is skipped
    uris, folds, pre_state = stage_preprocess(plan, root)
    recipes, search_state = stage_search(plan, uris, folds, root)
    grid_state, counts = stage_grid(plan, uris, folds, recipes, root, args.resume)
    stages = {"preprocess": pre_state, "search": search_state, "grid": grid_state}
    if grid_state == "skipped" and storage.exists(storage.resolve(report).join("report.md")):
        log(f"stage tables skipped: {report}/report.md exists and no trial finished in this run")
        stages["tables"] = "skipped"
    else:
        written = make_report(root.uri, report, smoke=args.smoke, svcca=not args.no_svcca,
                              attribution=not args.no_ig)
        stages["tables"] = "ran" if written else "unavailable"
    print_json({"results": root.uri, "report": report, "stages": stages, **counts,
                "minutes": round((time.time() - start) / 60, 1)})
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(run(main))
