"""A whole plan, start to finish: **preprocess** -> **search** -> **grid** -> **tables** (``rethink-audio run``,
and ``jobs/paper.py`` under ``ray job submit``).

Each stage is skipped when its outputs already exist, so running the same command again after an
interruption, or after a finished run, redoes only what is missing:

* preprocess: a dataset version is reused when its ``dataset.json`` exists (same inputs, same hash);
* search: ``search/best.json`` exists (or the plan has search off: the plan's recipe is used);
* grid: every trial of the plan has its ``summary.json``; otherwise the sweep runs, reusing finished
  trials and resuming started ones from their last checkpoint (``resume`` restores Tune's own state);
* tables: ``report/report.md`` exists and no trial finished in this run.

Each stage says what it did in one ``[run]`` line; :func:`run_plan` returns the stages and counts.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator import spectra, storage
from orchestrator.config import to_dict

REPORT_DIR = "report"


def log(message: str) -> None:
    """One ``[run]`` line, flushed at once (job logs are streamed)."""
    print(f"[run] {message}", flush=True)


def run_plan(plan, report: str | None = None, *, resume: bool = False, smoke: bool = False, svcca: bool = True,
             attribution: bool = True) -> dict[str, Any]:
    """Run the four stages of ``plan`` on the Ray this process is connected to; ``report`` defaults to
    ``<results>/report``; ``smoke`` turns SVCCA and Integrated Gradients off. Returns the JSON summary."""
    from orchestrator.interrupts import SweepInterrupted
    from orchestrator.sweep import driver_signals, plan_root

    start = time.time()
    root = plan_root(plan)
    report = report or root.join(REPORT_DIR).uri
    log(f"plan {plan.name}: results -> {root.uri}, report -> {report}")
    storage.write_json(root.join("plan.json"), to_dict(plan))  # what produced the results, even if all is skipped
    with driver_signals(root) as signals:  # Ctrl-C: trials checkpoint at a step, the CLI prints how to resume
        with signals.at_once(SweepInterrupted):
            uris, folds, pre_state = stage_preprocess(plan, root)
        recipes, search_state = stage_search(plan, uris, folds, root)
        grid_state, counts = stage_grid(plan, uris, folds, recipes, root, resume)
    stages = {"preprocess": pre_state, "search": search_state, "grid": grid_state}
    if grid_state == "skipped" and storage.exists(storage.resolve(report).join("report.md")):
        log(f"stage tables skipped: {report}/report.md exists and no trial finished in this run")
        stages["tables"] = "skipped"
    else:
        svcca, attribution = (False, False) if smoke else (svcca, attribution)
        stages["tables"] = "ran" if make_report(root.uri, report, svcca=svcca, attribution=attribution) else \
            "unavailable"
    return {"results": root.uri, "report": report, "stages": stages, **counts,
            "minutes": round((time.time() - start) / 60, 1)}


def finished_trials(trials_uri: str, ids: list[str]) -> set[str]:
    """The ids among ``ids`` whose records are complete (summary.json exists); parallel: S3 latency."""
    from orchestrator.trial import read_summary

    with ThreadPoolExecutor(max_workers=16) as pool:
        done = pool.map(lambda t: read_summary(trials_uri, t) is not None, ids)
    return {t for t, ok in zip(ids, done) if ok}


def stage_preprocess(plan, root) -> tuple[dict, dict, str]:
    """Dataset versions of the plan (built unless they exist); returns uris, folds and what happened."""
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

    if not storage.exists(datasets):
        return []
    infos = datasets.fs.get_file_info(pafs.FileSelector(datasets.path, recursive=False))
    return [datasets.join(i.base_name).uri for i in infos if i.type == pafs.FileType.Directory]


def stage_search(plan, uris, folds, root):
    """Phase 1 (or the plan's recipe); returns the recipes (orchestrator.search.Recipes) and what happened."""
    from orchestrator.sweep import SEARCH, run_search

    from orchestrator.interrupts import driver_stopping_since

    existed = storage.exists(root.join(SEARCH, "best.json"))
    recipes = run_search(plan, uris, folds, root, stopping=driver_stopping_since)
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


def make_report(results_uri: str, out_uri: str, *, svcca: bool, attribution: bool) -> dict | None:
    """Every table and figure of ``results_uri`` into ``out_uri``; None (with the reason logged) when the
    analysis package is not installed: the trial records are complete and the tables can be built later."""
    try:
        from analysis.report import build_report
    except ImportError as exc:
        log(f"tables stage unavailable: cannot import analysis.report.build_report ({exc}); the trial records "
            f"are complete, build the tables later with `rethink-audio tables --results {results_uri}`")
        return None
    log(f"tables: {results_uri} -> {out_uri} (SVCCA {'on' if svcca else 'off'}, "
        f"Integrated Gradients {'on' if attribution else 'off'})")
    written = build_report(results_uri, out_uri, svcca=svcca, attribution=attribution)
    log(f"report: {written['report_html']} ({written['trials']} finished trials, {len(written['tables'])} "
        f"tables, {len(written['figures'])} figures, {len(written['skipped'])} items skipped)")
    return written
