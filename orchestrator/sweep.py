"""Sweeps on Ray Tune: phase 1 Bayesian search, phase 2 the grid of every trial, fault tolerance, resume.

Layout under ``STORAGE/<plan name>/``::

    plan.json            the resolved plan (after --smoke / --storage)
    datasets/            dataset versions preprocessed for this plan
    search/              phase 1 (orchestrator.search): recipes.json, the recipe of every phase-2 test fold
                         and the fold it was scored on; best.json the default recipe (the plan's own
                         when search is off); fold<t>/ each search's result, trials/ its trials' records
    grid/                Ray Tune's experiment state for phase 2; points.json: the trial ids of the last run
    trials/<trial id>/   records + checkpoint of every phase-2 trial (see orchestrator.trial)

Each Tune trial runs ``grid_driver``: a single-worker trial trains inside it (``orchestrator.trial.train_trial``
with per-epoch ``tune.report``); a multi-worker trial builds and fits a ``TorchTrainer`` whose reports reach
Tune through ``TuneReportCallback``. Trials are named by their stable trial id and keep their own checkpoint in
their folder, so a restarted trial (a Tune retry, ``--resume``, a rerun) resumes from it, and a finished one
is never trained twice: phase 2 only queues the trials without a ``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator import spectra, storage
from orchestrator.config import OptimConfig, TrialConfig, from_dict, to_dict
from orchestrator.study import resource_bundle
from orchestrator.errors import ConfigError, RethinkError
from orchestrator.interrupts import SweepInterrupted, SweepStorageError
from orchestrator.plan import Plan, expand_grid
from orchestrator.trial import plan_trial, read_summary

GRID, SEARCH, TRIALS = "grid", "search", "trials"
MAX_ROUNDS = 50  # Tuner runs of a phase at most: the first, then one more each time trials were preempted
POINTS = "points.json"  # under grid/: the trial ids of the last phase-2 run (what --resume compares with)
SEARCH_SPACE_DOC = "lr log-uniform 1e-5..1e-2, weight_decay log-uniform 1e-5..1e-1, batch_size {16, 32, 64}"


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

    def summary(self) -> dict[str, Any]:
        return {"results": self.root, "trials": self.trials, "finished": self.finished,
                "failed": self.failed, "interrupted": self.interrupted, "stopped": self.stopped, "seconds": round(self.seconds, 1), "optim": to_dict(self.optim)}


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


# ---------------------------------------------------------------- Tune driver functions


def _fit_trial(cfg: TrialConfig, trials_root: str, fault: dict | None, stop_uri: str | None = None) -> dict | None:
    """Inside a Tune trial: train the trial (or reuse its records); returns its summary, or None when it stopped.

    A single-worker trial runs the training loop right here, in the Tune trial's own process; only
    multi-worker (DDP) trials build a TorchTrainer. Retries belong to Tune (``FailureConfig`` of the sweep):
    the trainer gets none of its own, so a crash is retried ``max_failures`` times, not (n + 1)^2 - 1. Each
    retry resumes from the trial's last checkpoint.

    A trial that stops on request (preempted: SIGTERM here; interrupted: the driver's stop request) writes its
    checkpoint and reports ``{"stopped": reason}``: not an error, so Tune counts no failure, and the sweep runs
    it again (preempted) or leaves it to ``--resume`` (interrupted). A storage error (a full disk) is reported as
    ``{"storage_error": message}`` and ends the trial without a retry: the driver ends the sweep with that one
    line (raising it here would leave Ray an error object nobody fetches once the sweep stops: a traceback).
    """
    from ray import tune

    from orchestrator.interrupts import TrialStopped, process_stop_reason
    from orchestrator.storage import StorageFullError
    from orchestrator.trial import TuneSession, build_trainer, train_trial

    plan = plan_trial(cfg, trials_root)
    summary = read_summary(trials_root, plan.trial_id)
    if summary is None:
        if reason := process_stop_reason():  # this node is going away: start nothing on it
            tune.report(_no_score | {"stopped": reason, "record_id": plan.trial_id})
            return None
        try:
            if cfg.num_workers == 1:
                train_trial(plan.job(fault, stop_uri), TuneSession.for_trial(cfg))
            else:
                from ray.tune.integration.ray_train import TuneReportCallback

                build_trainer(plan, max_failures=0, fault=fault, callbacks=[TuneReportCallback()]).fit()
        except TrialStopped as stop:
            where = f"epoch {stop.epoch} step {stop.step}" if stop.saved else None  # None: nothing new trained
            tune.report(_no_score | {"stopped": stop.reason, "stopped_at": where, "record_id": plan.trial_id})
            return None
        except StorageFullError as exc:  # ends the sweep (tune_watch): a retry would fail the same way
            tune.report(_no_score | {"storage_error": str(exc), "record_id": plan.trial_id})
            return None
        finally:
            _release_gpu_memory()  # the next trial reuses this process (reuse_actors)
        summary = read_summary(trials_root, plan.trial_id)
    # Final result: the summary, plus valid_acc = the best valid accuracy over epochs, which is what the
    # search optimises (Tune adds its own "trial_id" key, so ours travels as "record_id").
    metrics = {k: v for k, v in summary.items() if k not in ("trial_id", "reused")}
    tune.report(metrics | {"record_id": summary["trial_id"], "valid_acc": summary.get("valid_selected_valid_acc")})
    return summary


# A trial's last report without a score still names the search's metric: Tune checks every result of a searched
# run for it (and raises without it); the searcher is told the trial has no score (search.FoldSearchers).
_no_score = {"valid_acc": None}


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def grid_driver(config: dict[str, Any]) -> None:
    """Tune trainable of phase 2: one grid point = one trial."""
    point = config["point"]
    _fit_trial(from_dict(TrialConfig, point["trial"]), point["trials_root"], point["fault"], config.get("stop_uri"))


def search_driver(config: dict[str, Any]) -> None:
    """Tune trainable of phase 1: the search's base trial with the sampled lr, weight decay, batch size."""
    base = from_dict(TrialConfig, config["base"])
    optim = dataclasses.replace(base.optim, lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
                                batch_size=int(config["batch_size"]))
    _fit_trial(dataclasses.replace(base, optim=optim), config["trials_root"], None, config.get("stop_uri"))


class _WatchPreemption:
    """Mixed into the Tune trainables above (Tune's ``__mixins__`` hook of function trainables): ``setup``
    runs in the trial actor's main thread, the only thread where Python lets a SIGTERM handler be installed;
    the function itself runs in a thread of Tune's. See orchestrator.interrupts.watch_sigterm."""

    def setup(self, config):
        from orchestrator.interrupts import watch_sigterm

        watch_sigterm()
        super().setup(config)


grid_driver.__mixins__ = search_driver.__mixins__ = (_WatchPreemption,)


def _trial_name(trial) -> str:
    """Tune trial names from the stable trial id (never timestamps), so reruns map to the same folders."""
    from orchestrator.trial import trial_id

    if "point" in trial.config:
        return trial_id(from_dict(TrialConfig, trial.config["point"]["trial"]))
    return f"search-{trial.trial_id}"


def _resources(plan: Plan):
    """What each Tune trial reserves. A single-worker trial trains in the Tune trial itself, so the trial
    holds the whole bundle (CPUs, its GPU or share of one, custom resources): exactly what the autoscaler
    must find a node for. A multi-worker trial's Tune trial only drives a TorchTrainer whose workers reserve
    the real resources; the driver asks for 1 byte of memory and no CPU (Tune refuses an empty bundle, and
    even a token 0.01 CPU per driver would leave N workers short of N CPUs and serialise the trials).

    The bundle asks for no ``memory`` yet: autoscaled node types that declare none (the fake autoscaler's in
    tests/test_autoscaling.py) would never be launched for it. ``cluster/fit.py`` and ``rethink-audio plan``
    account for the trial's private memory (``orchestrator.memory.plan_memory``) meanwhile."""
    from ray import tune

    res = plan.resources
    if res.num_workers > 1:
        return {"cpu": 0, "memory": 1}
    return tune.PlacementGroupFactory([resource_bundle(res.cpus_per_worker, res.gpus_per_worker, res.custom)])


# Ray Tune copies AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN from the driver's environment
# into every trial actor's runtime_env (ray.tune.execution.class_cache), which Ray then writes in plain text
# to runtime_env_agent.log and shows in the dashboard. Every node gets S3 credentials from its own AWS chain
# (instance profile, service account, or the env it was started with), so the copy is never needed.
_CREDENTIAL_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"}


def _keep_credentials_out_of_runtime_envs() -> None:
    """Stop Tune from copying AWS credentials into trial runtime envs (no-op if Ray changed this)."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if isinstance(propagated, (set, frozenset)):
        class_cache.ENV_VARS_TO_PROPAGATE = set(propagated) - _CREDENTIAL_VARS


def _concurrency(plan: Plan) -> int | None:
    """``max_concurrent_trials`` when the plan caps it; else None: Tune queues every trial, so the pending
    ones are resource demand Ray's autoscaler sees and adds worker nodes for (up to the cluster config's
    ``max_workers``); a cap computed from the nodes present at start would hold a cluster that starts with no
    GPU workers to one trial at a time."""
    return plan.max_concurrent_trials or None


# ---------------------------------------------------------------- phase 1


def run_search(plan: Plan, uris: dict[str, str], folds: dict[str, list[int]], root: storage.Location,
               quiet: bool = False, stopping=lambda: None):
    """Phase 1 (:func:`orchestrator.search.run_search`): the ``Recipes`` of every phase-2 trial, from searches
    that never score on a fold their recipe is tested on (or the plan's recipe when search is off)."""
    from orchestrator.search import run_search as search

    return search(plan, uris, folds, root, quiet=quiet, stopping=stopping)


# ---------------------------------------------------------------- phase 2


@contextlib.contextmanager
def _quiet_tune(quiet: bool) -> Iterator[None]:
    """With ``quiet``, Tune prints nothing of its own while the body runs: our progress callback speaks.

    ``RunConfig(verbose=0)`` alone is not silent in Ray 2.60: Tune's new output engine still prints its
    "Configuration for experiment" box and "View detailed results here" at every start, whatever the
    verbosity. ``RAY_AIR_NEW_OUTPUT=0`` (read by Tune at each ``fit``) selects its legacy engine, which
    verbosity 0 silences entirely; Tune's INFO log lines ("Wrote the latest version of all result files
    ...") are held back to warnings. Both are restored afterwards, so ``--verbose`` and other callers in
    this process get Tune's default output."""
    if not quiet:
        yield
        return
    logger = logging.getLogger("ray.tune")
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    saved_env, saved_level = os.environ.get("RAY_AIR_NEW_OUTPUT"), logger.level
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    logger.setLevel(max(logging.WARNING, saved_level))
    controller.addFilter(_one_line_trial_failures)
    try:
        yield
    finally:
        controller.removeFilter(_one_line_trial_failures)
        logger.setLevel(saved_level)
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env


def _one_line_trial_failures(record: logging.LogRecord) -> bool:
    """Quiet mode: Tune's "Trial task failed for trial X" record (with a 50-line traceback per attempt) becomes
    one line: the trial and its error's own message (ours when it is one of ours). The traceback stays in the
    trial's error.txt under grid/ or search/."""
    if not record.getMessage().startswith("Trial task failed for trial") or not record.exc_info:
        return True
    from orchestrator.errors import user_message

    exc = record.exc_info[1]
    text = user_message(exc) or (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
    print(f"[sweep] {record.getMessage().split('for trial ', 1)[-1]} failed: {text[:400]}", flush=True)
    return False


def _tune_run_config(plan: Plan, root: storage.Location, name: str, callbacks=(), quiet: bool = False, stop=None):
    """Tune's RunConfig of either phase; with ``plan.tracking`` the MLflow callback joins ``callbacks``;
    ``stop``: a Tune Stopper (orchestrator.tune_watch: the driver stopping, a storage error)."""
    from ray import tune

    from orchestrator.tracking import mlflow_callback

    tracker = mlflow_callback(plan.tracking, plan.name, root.uri)  # None unless the plan tracks

    return tune.RunConfig(
        name=name, storage_path=root.uri if root.is_s3 else root.path,
        storage_filesystem=None if root.is_s3 else root.fs,
        failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        verbose=0 if quiet else 1, callbacks=list(callbacks) + ([tracker] if tracker else []), stop=stop,
    )


def fit_quietly_on_failure(tuner, watch) -> None:
    """``tuner.fit()``, whose ResultGrid the sweep never reads (outcomes come from ``watch``). Building that grid
    unpickles Tune's error files, which a full disk leaves empty (EOFError): once the run itself has ended,
    such an error is Tune's bookkeeping, not the sweep's, and is ignored."""
    try:
        tuner.fit()
    except Exception:  # noqa: BLE001 - re-raised unless the experiment had already ended
        if not watch.ended:
            raise


def run_grid(plan: Plan, trials: list[TrialConfig], root: storage.Location, *, faults: dict[str, dict] | None = None,
             quiet: bool = False, stopping=lambda: None):
    """Phase 2: every trial given as a Tune trial, queued at once (see ``_concurrency``); returns their
    ``tune_watch.Outcomes``. Tune actors are reused from trial to trial (same resources), so a trial pays no
    process start-up or imports, and its dataset is already mapped when the previous trial on that actor read
    the same version. ``stopping``: when the driver began stopping (see ``tune_watch``)."""
    from ray import tune

    from orchestrator.interrupts import STOP_FILE
    from orchestrator.trial import trial_id
    from orchestrator.tune_watch import STOP_GRACE_SECONDS, make_watch

    _keep_credentials_out_of_runtime_envs()
    points = [{"trial": to_dict(t), "trials_root": root.join(TRIALS).uri,
               "fault": (faults or {}).get(trial_id(t))} for t in trials]
    watch = make_watch(len(trials), epochs=quiet, stopping=stopping,
                       grace=0 if plan.resources.num_workers > 1 else STOP_GRACE_SECONDS)
    tuner = tune.Tuner(
        tune.with_resources(grid_driver, _resources(plan)),
        # the plan already expanded the grid
        param_space={"point": tune.grid_search(points), "stop_uri": root.join(STOP_FILE).uri},
        tune_config=tune.TuneConfig(max_concurrent_trials=_concurrency(plan), reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=_tune_run_config(plan, root, GRID, [watch], quiet, stop=watch.stopper()),
    )
    fit_quietly_on_failure(tuner, watch)
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


def run_sweep(plan: Plan, *, resume: bool = False, ray_address: str | None = None,
              faults: dict[str, dict] | None = None, quiet: bool = False) -> SweepResult:
    """Datasets -> phase 1 -> phase 2 for ``plan``; everything under ``STORAGE/<plan name>``. ``quiet``
    replaces Tune's status tables with one line per trial epoch and Ray Data's progress output with a counter
    of clips featurized (pair it with ``log_to_driver=False``).

    SIGINT/SIGTERM (orchestrator.interrupts.DriverSignals): running trials checkpoint at their next step and
    stop, no further trial starts, and the result says ``interrupted`` (a second signal stops at once:
    KeyboardInterrupt). Preempted trials run again, from their checkpoints, until none is left."""
    from orchestrator.interrupts import driver_stopping_since
    from orchestrator.ray_runtime import ensure_ray

    start = time.time()
    root = plan_root(plan)
    storage.check_writable(storage.resolve(plan.storage))  # pre-flight: fail before any compute
    if plan.tracking.mlflow:
        from orchestrator.tracking import require_mlflow

        require_mlflow(plan.tracking.mlflow)  # a plan built in code skipped load_plan's check
    if resume and not storage.exists(root.join("plan.json")):
        raise RethinkError(f"--resume: no sweep to restore at {root.uri}; run without --resume")
    storage.write_json(root.join("plan.json"), to_dict(plan))
    with driver_signals(root) as signals:
        ensure_ray(ray_address, log_to_driver=False if quiet else None, quiet=quiet)  # not quiet: no preference
        with signals.at_once(SweepInterrupted):
            uris, folds = prepare_datasets(plan, root, quiet)
        with _quiet_tune(quiet):
            recipes = run_search(plan, uris, folds, root, quiet, stopping=driver_stopping_since)
        trials = expand_grid(plan, uris, folds, recipes)
        trials_root = root.join(TRIALS).uri
        ids = [plan_trial(t, trials_root).trial_id for t in trials]
        _grid_changes(root, ids, resume)
        failed, stopped = _run_phase2(plan, trials, ids, root, faults, quiet, signals)
    finished = sum(read_summary(trials_root, i) is not None for i in ids)
    result = SweepResult(root.uri, len(trials), finished, failed, time.time() - start, recipes.default,
                         interrupted=signals.signum, stopped=stopped)
    if signals.signum is not None and finished < len(trials):  # a signal that came too late to stop anything
        raise SweepInterrupted(signals.signum, result)            # is not an interruption: the sweep is done
    return result


@contextlib.contextmanager
def driver_signals(root: storage.Location):
    """SIGINT/SIGTERM handling of a driver whose trials write under ``root`` (orchestrator.interrupts): the
    first signal writes the stop request the trials poll (an earlier driver's is cleared first), a second one
    stops at once. Re-entrant: ``run`` holds it around all its stages and the sweep inside uses the same one.
    A search that stopped raises SweepInterrupted without the signal's number: it is filled in here."""
    from orchestrator.interrupts import STOP_FILE, DriverSignals, active_driver_signals, clear_stop

    if (active := active_driver_signals()) is not None:
        yield active
        return
    stop_uri = root.join(STOP_FILE).uri
    clear_stop(stop_uri)  # an earlier driver's request must not stop this run's trials
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours decides; Tune's own prints Tuner.restore hints
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


def _run_phase2(plan: Plan, trials: list[TrialConfig], ids: list[str], root: storage.Location,
                faults: dict[str, dict] | None, quiet: bool, signals) -> tuple[list[str], dict[str, str]]:
    """Run the unfinished trials, again while some were preempted; returns (failed, stopped: id -> reason).
    A storage error in a trial ends the sweep: it is raised here, once, as the trial said it."""
    from orchestrator.interrupts import driver_stopping_since

    trials_root = root.join(TRIALS).uri
    failed: list[str] = []
    stopped: dict[str, str] = {}
    pending = [t for t, i in zip(trials, ids) if read_summary(trials_root, i) is None]
    if not pending:
        print(f"[sweep] phase 2: all {len(trials)} trials already finished in {trials_root}", flush=True)
    else:
        limit = _concurrency(plan)
        print(f"[sweep] phase 2: {len(trials)} trials ({len(trials) - len(pending)} already finished), "
              f"{f'up to {limit}' if limit else 'all queued: as many'} at once"
              f"{'' if limit else ' as the cluster holds (an autoscaler adds nodes for the rest)'}", flush=True)
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        with _quiet_tune(quiet):
            outcomes = run_grid(plan, pending, root, faults=faults, quiet=quiet, stopping=driver_stopping_since)
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
    return failed, stopped
