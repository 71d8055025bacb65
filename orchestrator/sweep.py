"""Sweeps on Ray Tune: datasets, phase 1 Bayesian search, phase 2 the grid of every trial, fault tolerance, resume.

:func:`run_sweep` is the one path of ``sweep``, ``run`` and ``demo`` (orchestrator.pipeline adds the report):
preprocess -> phase 1 search -> phase 2 grid -> records, each stage reusing what exists. Layout under
``STORAGE/<plan name>/``::

    plan.json            the resolved plan (after --smoke / --storage), written once per run
    datasets/            dataset versions preprocessed for this plan
    search/              phase 1 (orchestrator.search): recipes.json, the recipe of every phase-2 test fold
                         and the fold it was scored on; best.json the default recipe (the plan's own
                         when search is off); fold<t>/ each search's result, trials/ its trials' records
    grid/                Ray Tune's experiment state for phase 2; points.json: the trial ids of the last run
    trials/<trial id>/   records + checkpoint of every phase-2 trial (see orchestrator.trial)

Every Tune trial runs ``orchestrator.tune_run.tune_trial``. Trials are named by their stable trial id and keep
their own checkpoint in their folder, so a restarted trial (a Tune retry, ``--resume``, a rerun) resumes from
it, and a finished one is never trained twice: phase 2 only queues the trials without a ``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator import spectra, storage, tune_run
from orchestrator.config import OptimConfig, TrialConfig, to_dict
from orchestrator.errors import ConfigError, RethinkError
from orchestrator.interrupts import SweepInterrupted, SweepStorageError
from orchestrator.plan import Plan, expand_grid
from orchestrator.trial import prepare_trial, read_summary
from orchestrator.tune_run import GRID, MAX_ROUNDS, SEARCH, TRIALS

POINTS = "points.json"  # under grid/: the trial ids of the last phase-2 run (what --resume compares with)


@dataclass
class SweepResult:
    """What a sweep did and where it put it."""

    root: str
    trials: int
    finished: int
    failed: list[str]
    seconds: float
    optim: OptimConfig  # the default recipe; search/recipes.json has each test fold's
    interrupted: int | None = None  # the signal that stopped the driver (SIGINT 2, SIGTERM 15), if one did
    stopped: dict[str, str] = dataclasses.field(default_factory=dict)  # trial id -> why it stopped early
    stages: dict[str, str] = dataclasses.field(default_factory=dict)  # preprocess / search / grid -> ran | skipped

    def summary(self) -> dict[str, Any]:
        return {"results": self.root, "trials": self.trials, "finished": self.finished,
                "failed": self.failed, "interrupted": self.interrupted, "stopped": self.stopped,
                "seconds": round(self.seconds, 1), "optim": to_dict(self.optim)}


def plan_root(plan: Plan) -> storage.Location:
    """``STORAGE/<plan name>``: everything the sweep writes lives below it."""
    return storage.resolve(plan.storage).join(plan.name)


# ---------------------------------------------------------------- datasets


def prepare_datasets(plan: Plan, root: storage.Location,
                     quiet: bool = False) -> tuple[dict[str, str], dict[str, list[int]]]:
    """Version URI and folds of every plan dataset, preprocessing those given as settings (reused if done);
    ``quiet`` shows only our counter of clips featurized, not Ray Data's own progress output."""
    from orchestrator.preprocess import PreprocessRequest, preprocess

    uris, folds = {}, {}
    for name, ds in plan.datasets.items():
        if ds.data is not None:
            uris[name] = ds.data
        else:
            pre = ds.preprocess
            request = PreprocessRequest(dataset=pre.dataset, root=pre.root, out=root.join("datasets").uri,
                                        features=pre.features, augment=pre.augment, dataset_options=pre.options)
            result = preprocess(request, verbose=not quiet)  # root may be s3://: every node reads it there
            uris[name] = result.uri
            rejected = len(result.card["rejected"])  # content problems only: I/O problems fail above
            print(f"[sweep] dataset {name}: {result.uri} ({'reused' if result.reused else 'built'}, "
                  f"{rejected} file(s) rejected; card: {result.uri}/{spectra.CARD})", flush=True)
        spectra.verify_version(uris[name])  # footers and row counts: a damaged version fails here, not in trials
        card_folds = [int(f) for f in spectra.read_card(uris[name])["folds"]]
        missing = sorted(set(ds.folds) - set(card_folds))
        if missing:
            raise ConfigError(f"plan.datasets.{name}.folds {missing} not in {uris[name]} (folds {card_folds})")
        folds[name] = card_folds
    return uris, folds


def _built_versions(plan: Plan, root: storage.Location, uris: dict[str, str], before: set[str]) -> list[str]:
    """The plan datasets whose version this run preprocessed (their card was not there before)."""
    return [name for name, ds in plan.datasets.items() if ds.preprocess is not None and uris[name] not in before]


def _versions(root: storage.Location) -> set[str]:
    """URIs of the finished dataset versions (with a card) under ``root/datasets``."""
    datasets = root.join("datasets")
    return {datasets.join(name).uri for name in storage.list_dirs(datasets)
            if storage.exists(datasets.join(name, spectra.CARD))}


# ---------------------------------------------------------------- phase 2


def _concurrency(plan: Plan) -> int | None:
    """``max_concurrent_trials`` when the plan caps it; else None: Tune queues every trial, so the pending
    ones are resource demand Ray's autoscaler sees and adds worker nodes for (up to the cluster config's
    ``max_workers``); a cap computed from the nodes present at start would hold a cluster that starts with no
    GPU workers to one trial at a time."""
    return plan.max_concurrent_trials or None


def run_grid(plan: Plan, trials: list[TrialConfig], root: storage.Location, *, quiet: bool = False,
             stopping=lambda: None):
    """Phase 2: every trial given as a Tune trial, queued at once (see ``_concurrency``); returns their
    ``tune_watch.Outcomes``. Tune actors are reused from trial to trial (same resources), so a trial pays no
    process start-up or imports, and its dataset is already mapped when the previous trial on that actor read
    the same version. ``stopping``: when the driver began stopping (see ``tune_watch``)."""
    from ray import tune

    from orchestrator.interrupts import STOP_FILE
    from orchestrator.tune_watch import STOP_GRACE_SECONDS, make_watch

    watch = make_watch(len(trials), epochs=quiet, stopping=stopping,
                       grace=0 if plan.resources.num_workers > 1 else STOP_GRACE_SECONDS)
    space = tune_run.grid_space(trials, root.join(TRIALS).uri, root.join(STOP_FILE).uri)  # the grid, expanded
    tune_config = tune.TuneConfig(max_concurrent_trials=_concurrency(plan), reuse_actors=True,
                                  trial_name_creator=tune_run.trial_name, trial_dirname_creator=tune_run.trial_name)
    tune_run.fit(tune_run.make_tuner(plan, root, GRID, space, tune_config, watch, quiet), watch)
    return watch.outcomes


def _grid_changes(root: storage.Location, ids: list[str], resume: bool) -> None:
    """Record this run's grid in ``grid/points.json``; with ``resume``, say how it differs from the last one.

    Phase 2 always runs the grid of the plan as it is now: finished trials are reused by id, unfinished
    ones resume from their checkpoints, new grid points run, and points no longer in the plan are not
    started (their folders are kept). So a plan edited between runs is applied, never silently ignored.
    """
    saved = root.join(GRID, POINTS)
    if resume and storage.exists(saved):  # absent when the last run stopped before phase 2
        before = storage.read_json(saved)["trial_ids"]
        added, removed = [i for i in ids if i not in before], [i for i in before if i not in ids]
        if added or removed:
            print(f"[sweep] --resume: the plan changed since the last run: {len(added)} new trial(s) will run, "
                  f"{len(removed)} trial(s) no longer in the plan will not be started "
                  f"(new: {', '.join(added[:5]) or '-'}; dropped: {', '.join(removed[:5]) or '-'})", flush=True)
        else:
            print(f"[sweep] --resume: same grid as the last run ({len(ids)} trials)", flush=True)
    storage.write_json(saved, {"trial_ids": ids})


# ---------------------------------------------------------------- the whole sweep


def run_sweep(plan: Plan, *, resume: bool = False, ray_address: str | None = None, quiet: bool = False,
              stage_log: Callable[[str], None] | None = None) -> SweepResult:
    """Datasets -> phase 1 -> phase 2 -> records for ``plan``; everything under ``STORAGE/<plan name>``.
    ``quiet`` replaces Tune's status tables with one line per trial epoch and Ray Data's progress output with a
    counter of clips featurized (pair it with ``log_to_driver=False``); ``stage_log`` gets one line per stage
    saying whether it ran or was skipped (``rethink-audio run`` prints them).

    SIGINT/SIGTERM (orchestrator.interrupts.DriverSignals): running trials checkpoint at their next step and
    stop, no further trial starts, and the result says ``interrupted`` (a second signal stops at once:
    KeyboardInterrupt). Preempted trials run again, from their checkpoints, until none is left."""
    from orchestrator.ray_runtime import ensure_ray

    start, root = time.time(), plan_root(plan)
    say = stage_log or (lambda line: None)
    _preflight(plan, root, resume)
    storage.write_json(root.join("plan.json"), to_dict(plan))  # what produced the results, even if all is reused
    stages: dict[str, str] = {}
    with driver_signals(root) as signals:
        ensure_ray(ray_address, log_to_driver=False if quiet else None, quiet=quiet)  # not quiet: no preference
        with signals.at_once(SweepInterrupted):
            uris, folds, stages["preprocess"] = _stage_preprocess(plan, root, quiet, say)
        with tune_run.quiet_tune(quiet):
            recipes, stages["search"] = _stage_search(plan, uris, folds, root, quiet, say)
        trials = expand_grid(plan, uris, folds, recipes)
        trials_root = root.join(TRIALS).uri
        ids = [prepare_trial(t, trials_root).trial_id for t in trials]
        _grid_changes(root, ids, resume)
        failed, stopped, stages["grid"] = _run_phase2(plan, trials, ids, root, quiet, signals, say)
    finished = sum(read_summary(trials_root, i) is not None for i in ids)
    if stages["grid"] == "ran":
        say(f"stage grid ran: {finished}/{len(trials)} finished, {len(failed)} failed")
    result = SweepResult(root.uri, len(trials), finished, failed, time.time() - start, recipes.default,
                         interrupted=signals.signum, stopped=stopped, stages=stages)
    if signals.signum is not None and finished < len(trials):  # a signal that came too late to stop anything
        raise SweepInterrupted(signals.signum, result)            # is not an interruption: the sweep is done
    return result


def _preflight(plan: Plan, root: storage.Location, resume: bool) -> None:
    """What fails before any compute: unwritable storage, a tracking backend not installed, nothing to resume."""
    storage.check_writable(storage.resolve(plan.storage))
    if plan.tracking.mlflow:
        from orchestrator.tracking import require_mlflow

        require_mlflow(plan.tracking.mlflow)  # a plan built in code skipped load_plan's check
    if resume and not storage.exists(root.join("plan.json")):
        raise RethinkError(f"--resume: no sweep to restore at {root.uri}; run without --resume")


def _stage_preprocess(plan: Plan, root: storage.Location, quiet: bool, say) -> tuple[dict, dict, str]:
    """The plan's dataset versions (built unless they exist), their folds, and whether any was built."""
    before = _versions(root)
    uris, folds = prepare_datasets(plan, root, quiet)
    built = [n for n, ds in plan.datasets.items() if ds.preprocess is not None and uris[n] not in before]
    state = "ran" if built else "skipped"
    say(f"stage preprocess {state}: " + (", ".join(f"{n} -> {uris[n]}" for n in uris) or "no datasets"))
    return uris, folds, state


def _stage_search(plan: Plan, uris, folds, root: storage.Location, quiet: bool, say):
    """Phase 1 (orchestrator.search; the plan's recipe when search is off): the recipes and the stage state."""
    from orchestrator.interrupts import driver_stopping_since
    from orchestrator.search import BEST, run_search

    existed = storage.exists(root.join(SEARCH, BEST))
    recipes = run_search(plan, uris, folds, root, quiet=quiet, stopping=driver_stopping_since)
    state = "skipped" if existed or not plan.search.enabled else "ran"
    reason = "search off in the plan, its recipe is used" if not plan.search.enabled else \
        (f"{SEARCH}/{BEST} exists" if existed else "HyperOpt search done")
    optim = recipes.default
    say(f"stage search {state} ({reason}): lr {optim.lr:g}, weight decay {optim.weight_decay:g}, "
        f"batch {optim.batch_size}, {optim.epochs} epochs"
        + ("; each test fold's recipe: search/recipes.json" if plan.search.enabled else ""))
    return recipes, state


@contextlib.contextmanager
def driver_signals(root: storage.Location):
    """SIGINT/SIGTERM handling of a driver whose trials write under ``root`` (orchestrator.interrupts): the
    first signal writes the stop request the trials poll (an earlier driver's is cleared first), a second one
    stops at once. A search that stopped raises SweepInterrupted without the signal's number: it is filled in
    here."""
    from orchestrator.interrupts import STOP_FILE, DriverSignals, clear_stop

    stop_uri = root.join(STOP_FILE).uri
    clear_stop(stop_uri)  # an earlier driver's request must not stop this run's trials
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours decides; Tune's own prints hints about Tuner.restore
    with DriverSignals(lambda signum: _ask_trials_to_stop(stop_uri, signum)) as signals:
        try:
            yield signals
        except SweepInterrupted as stop:
            if stop.signum or signals.signum is None:
                raise
            raise SweepInterrupted(signals.signum, stop.result, stop.detail) from None


def _ask_trials_to_stop(stop_uri: str, signum: int) -> None:
    """The driver's first SIGINT/SIGTERM: say what happens now and write the stop request the trials poll."""
    import signal
    import socket
    import sys

    from orchestrator.interrupts import POLL_SECONDS, request_stop

    name = signal.Signals(signum).name
    print(f"[sweep] {name}: stopping; running trials write their checkpoints at their next step (within "
          f"~{POLL_SECONDS:.0f} s + one step), no new trial starts; send it again to stop at once",
          file=sys.stderr, flush=True)
    request_stop(stop_uri, {"signal": name, "host": socket.gethostname(), "pid": os.getpid(),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _run_phase2(plan: Plan, trials: list[TrialConfig], ids: list[str], root: storage.Location, quiet: bool,
                signals, say) -> tuple[list[str], dict[str, str], str]:
    """Run the unfinished trials, again while some were preempted; returns (failed, stopped: id -> reason, the
    stage state). A storage error in a trial ends the sweep: it is raised here, once, as the trial said it."""
    from orchestrator.interrupts import driver_stopping_since

    trials_root = root.join(TRIALS).uri
    failed: list[str] = []
    stopped: dict[str, str] = {}
    pending = [t for t, i in zip(trials, ids) if read_summary(trials_root, i) is None]
    if not pending:
        say(f"stage grid skipped: all {len(trials)} trials finished")
        print(f"[sweep] phase 2: all {len(trials)} trials already finished in {trials_root}", flush=True)
        return failed, stopped, "skipped"
    say(f"stage grid: {len(pending)} of {len(trials)} trials to run")
    limit = _concurrency(plan)
    print(f"[sweep] phase 2: {len(trials)} trials ({len(trials) - len(pending)} already finished), "
          f"{f'up to {limit}' if limit else 'all queued: as many'} at once"
          f"{'' if limit else ' as the cluster holds (an autoscaler adds nodes for the rest)'}", flush=True)
    for _ in range(MAX_ROUNDS):
        with tune_run.quiet_tune(quiet):
            outcomes = run_grid(plan, pending, root, quiet=quiet, stopping=driver_stopping_since)
        if outcomes.storage_errors:
            raise SweepStorageError(outcomes.storage_errors[0])
        failed += outcomes.failed
        stopped = outcomes.stopped
        preempted = outcomes.preempted()
        if signals.signum is not None or not preempted:
            break
        print(f"[sweep] {len(preempted)} trial(s) preempted ({', '.join(preempted[:3])}"
              f"{', ...' if len(preempted) > 3 else ''}): running them again from their checkpoints", flush=True)
        pending = [t for t, i in zip(trials, ids) if read_summary(trials_root, i) is None and i not in failed]
        if not pending:
            break
    return failed, stopped, "ran"
