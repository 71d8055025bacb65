"""Ray Tune plumbing shared by both phases of a sweep: the trainable, its config, the Tuner, its output.

Phase 1 (orchestrator.search) and phase 2 (orchestrator.sweep) run the same trainable, :func:`tune_trial`,
on a Tune config of one of two shapes, written by :func:`grid_space` / :func:`search_config` and read back by
:func:`decode` alone (the trainable, the trial names, the MLflow callback and the search table all use it):

* phase 2: ``{"trial": <TrialConfig dict>, "trials_root": URI, "stop_uri": URI}`` (a grid over ``trial``);
* phase 1: ``{"base": <TrialConfig dict>, "lr", "weight_decay", "batch_size": sampled, "search": fold<t>,
  "trials_root": URI, "stop_uri": URI}``.

Retries belong to Tune alone (``FailureConfig(max_failures=plan.max_failures)`` in :func:`make_tuner`): it
restarts a trial whose code raised or whose process died, and each restart resumes from the trial's last
checkpoint. Nothing below Tune retries (the trial loop does not; a DDP trial's TorchTrainer gets no budget of
its own), so a crash costs ``max_failures + 1`` attempts at most.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator import storage
from orchestrator.config import TrialConfig, from_dict, to_dict
from orchestrator.study import resource_bundle

# Folders of a results root: Tune's experiment state of each phase, and the phase-2 trials' records.
GRID, SEARCH, TRIALS = "grid", "search", "trials"
MAX_ROUNDS = 50  # Tuner runs of a phase at most: the first, then one more each time trials were preempted


# ---------------------------------------------------------------- the Tune config, written and read


@dataclass(frozen=True)
class TuneTrial:
    """What a Tune config says: the trial to train, where its records go, and its search (phase 1 only)."""

    cfg: TrialConfig
    trials_root: str
    search: str | None = None
    stop_uri: str | None = None


def grid_space(trials: list[TrialConfig], trials_root: str, stop_uri: str) -> dict[str, Any]:
    """Phase 2's ``param_space``: one Tune trial per (already expanded) grid point."""
    from ray import tune

    return {"trial": tune.grid_search([to_dict(t) for t in trials]), "trials_root": trials_root,
            "stop_uri": stop_uri}


def search_config(base: dict[str, Any], search: str, sampled: dict[str, Any]) -> dict[str, Any]:
    """A phase-1 trial's config: the search's base trial and the recipe its searcher sampled."""
    return sampled | {"search": search, "base": base}


def decode(config: dict[str, Any]) -> TuneTrial:
    """The trial a Tune config of either phase describes (the one reader of both shapes)."""
    if "trial" in config:
        cfg, search = from_dict(TrialConfig, config["trial"]), None
    else:
        base = from_dict(TrialConfig, config["base"])
        optim = dataclasses.replace(base.optim, lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
                                    batch_size=int(config["batch_size"]))
        cfg, search = dataclasses.replace(base, optim=optim), config["search"]
    return TuneTrial(cfg, config["trials_root"], search, config.get("stop_uri"))


def trial_name(trial) -> str:
    """Tune trial names from the stable trial id (never timestamps), so reruns map to the same folders; a search
    trial, whose recipe is sampled, keeps Tune's id."""
    from orchestrator.trial import trial_id

    if "trial" in trial.config:
        return trial_id(decode(trial.config).cfg)
    return f"search-{trial.trial_id}"


# ---------------------------------------------------------------- the trainable


def tune_trial(config: dict[str, Any]) -> None:
    """Tune trainable of both phases: train the trial the config describes (or reuse its records).

    A single-worker trial runs the training loop right here, in the Tune trial's own process; only
    multi-worker (DDP) trials build a TorchTrainer (with no retries of its own: see the module docstring).

    A trial that stops on request (preempted: SIGTERM here; interrupted: the driver's stop request) writes its
    checkpoint and reports ``{"stopped": reason}``: not an error, so Tune counts no failure, and the sweep runs
    it again (preempted) or leaves it to ``--resume`` (interrupted). A storage error (a full disk) is reported as
    ``{"storage_error": message}`` and ends the trial without a retry: the driver ends the sweep with that one
    line (raising it here would leave Ray an error object nobody fetches once the sweep stops: a traceback).
    """
    from ray import tune

    from orchestrator.interrupts import TrialStopped, process_stop_reason
    from orchestrator.storage import StorageFullError
    from orchestrator.trial import TuneSession, build_trainer, prepare_trial, read_summary, train_trial

    trial = decode(config)
    prepared = prepare_trial(trial.cfg, trial.trials_root)
    summary = read_summary(trial.trials_root, prepared.trial_id)
    if summary is None:
        if reason := process_stop_reason():  # this node is going away: start nothing on it
            tune.report(_NO_SCORE | {"stopped": reason, "record_id": prepared.trial_id})
            return
        try:
            if trial.cfg.num_workers == 1:
                train_trial(prepared.loop_config(trial.stop_uri), TuneSession.for_trial(trial.cfg))
            else:
                from ray.tune.integration.ray_train import TuneReportCallback

                build_trainer(prepared, callbacks=[TuneReportCallback()]).fit()
        except TrialStopped as stop:
            where = f"epoch {stop.epoch} step {stop.step}" if stop.saved else None  # None: nothing new trained
            tune.report(_NO_SCORE | {"stopped": stop.reason, "stopped_at": where, "record_id": prepared.trial_id})
            return
        except StorageFullError as exc:  # ends the sweep (tune_watch): a retry would fail the same way
            tune.report(_NO_SCORE | {"storage_error": str(exc), "record_id": prepared.trial_id})
            return
        finally:
            _release_gpu_memory()  # the next trial reuses this process (reuse_actors)
        summary = read_summary(trial.trials_root, prepared.trial_id)
    # Final result: the summary, plus valid_acc = the best valid accuracy over epochs, which is what the
    # search optimises (Tune adds its own "trial_id" key, so ours travels as "record_id").
    metrics = {k: v for k, v in summary.items() if k not in ("trial_id", "reused")}
    tune.report(metrics | {"record_id": summary["trial_id"], "valid_acc": summary.get("valid_selected_valid_acc")})


# A trial's last report without a score still names the search's metric: Tune checks every result of a searched
# run for it (and raises without it); the searcher is told the trial has no score (search.FoldSearchers).
_NO_SCORE = {"valid_acc": None}


def _release_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _WatchPreemption:
    """Mixed into the trainable (Tune's ``__mixins__`` hook of function trainables): ``setup`` runs in the trial
    actor's main thread, the only thread where Python lets a SIGTERM handler be installed; the function itself
    runs in a thread of Tune's. See orchestrator.interrupts.watch_sigterm."""

    def setup(self, config):
        from orchestrator.interrupts import watch_sigterm

        watch_sigterm()
        super().setup(config)


tune_trial.__mixins__ = (_WatchPreemption,)


def trial_resources(plan):
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


# ---------------------------------------------------------------- the Tuner


def make_tuner(plan, root: storage.Location, name: str, param_space: dict[str, Any], tune_config, watch,
               quiet: bool = False):
    """The Tuner of either phase: :func:`tune_trial` with the plan's resources, stored under ``root/name``,
    Tune's retry budget (the plan's ``max_failures``), ``watch`` (orchestrator.tune_watch) as callback and
    stopper, and with ``plan.tracking`` the MLflow callback."""
    from ray import tune

    from orchestrator.tracking import mlflow_callback

    _keep_credentials_out_of_runtime_envs()
    tracker = mlflow_callback(plan.tracking, plan.name, root.uri, decode)  # None unless the plan tracks
    run_config = tune.RunConfig(
        name=name, storage_path=root.uri if root.is_s3 else root.path,
        storage_filesystem=None if root.is_s3 else root.fs,
        failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        verbose=0 if quiet else 1, callbacks=[watch] + ([tracker] if tracker else []), stop=watch.stopper(),
    )
    return tune.Tuner(tune.with_resources(tune_trial, trial_resources(plan)), param_space=param_space,
                      tune_config=tune_config, run_config=run_config)


def fit(tuner, watch) -> None:
    """``tuner.fit()``, whose ResultGrid the sweep never reads (outcomes come from ``watch``). Building that grid
    unpickles Tune's error files, which a full disk leaves empty (EOFError): once the run itself has ended,
    such an error is Tune's bookkeeping, not the sweep's, and is ignored."""
    try:
        tuner.fit()
    except Exception:  # noqa: BLE001 - re-raised unless the experiment had already ended
        if not watch.ended:
            raise


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


@contextlib.contextmanager
def quiet_tune(quiet: bool) -> Iterator[None]:
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
