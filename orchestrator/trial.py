"""One trial: a model, an init mode, a seed and a test fold, trained by one loop on any of three paths.

``train_trial`` is the whole training loop, top to bottom; a ``Session`` says where it runs:

* in the calling process (``rethink-audio train`` on a laptop: no Ray at all),
* inside a Ray Tune function trainable (a sweep's single-device trial: no Ray Train scaffolding),
* on each rank of a Ray Train ``TorchTrainer`` (multi-GPU DDP trials, ``num_workers > 1``).

The loop maps the dataset version from the node's data cache (``orchestrator.trial_data``: one read-only copy
per node, split by fold into row indices; batches gathered by ``training.DataFeed``), trains, evaluates valid
and test every epoch, reports each epoch's metrics to the session, and keeps its own checkpoint,
``checkpoint.pt``, in the trial folder every ``checkpoint_every`` epochs and after the last one. Any rerun of
the same trial (a restart by Ray, ``--resume``, the same CLI call) resumes from it; a finished trial
(``summary.json`` present) is never trained again.

Records in ``<trials root>/<trial id>/``:

* ``config.json``: the resolved TrialConfig, dataset card summary, splits, trial id.
* ``epochs.parquet``: epoch, train_loss, valid_loss, valid_acc, test_acc, lr, seconds, train_samples (clips
  trained on that epoch, augmented draws included), samples_per_s (valid_* null for split "paper").
* ``summary.json``: test accuracy under best_epoch / last_epoch / valid_selected (split "nested" only),
  the chosen epochs, timing, and ``provenance`` (orchestrator.provenance: code version, git commit, library
  versions, CUDA, device, host, start and end times of the process that finished the trial).
* ``predictions.parquet``: trial_id, clip_id, fold, label, protocol (valid_selected, or best_epoch for split
  "paper" trials, which have no validation fold; and last_epoch),
  epoch, probs (list<float32>) — the per-clip softmax ensembles are built from.
* ``checkpoint.pt``: weights, optimizer, scheduler, RNG and the curve so far (``torch.load(weights_only=True)``),
  and how far into an epoch a stopped trial got (orchestrator.checkpoints).
* ``running.json``: the host and PID of the process that runs (or last ran) the trial, its start point, when it
  started and when the trial's first attempt started.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from orchestrator import spectra, storage
from orchestrator.config import TrialConfig, from_dict, stable_hash, standardize_mode, to_dict
from orchestrator.checkpoints import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, unwrap
from orchestrator.errors import ConfigError, StorageError
from orchestrator.interrupts import StopCheck, TrialStopped
from orchestrator.memory import ceil_mib, host_private_bytes
from orchestrator.provenance import trial_provenance, utc_now
from orchestrator.trial_data import EvalSplit, load_trial_data
from orchestrator.training import (DataFeed, EpochProgress, TrialState, TrainStep, build_network,
                                   evaluate, make_optimizer, make_scheduler, protocol_summary, seed_everything,
                                   shuffled, train_epoch)
from orchestrator.study import (EXECUTION_ONLY, ID_DEFAULTS, PROTOCOLS, fold_roles, resource_bundle,
                                selected_protocol, without_defaults)

EVAL_BATCH = 64
RUNNING_FILE = "running.json"  # host, pid and start point of the process running the trial (see _write_running)


FAULTS_ENV = "RETHINK_AUDIO_TEST_FAULTS"  # a test seam: see _injected_fault


class InjectedFault(RuntimeError):
    """The crash a test asked for through :data:`FAULTS_ENV` (tests of retry and resume)."""


def _identity(cfg: TrialConfig) -> dict[str, Any]:
    """What a trial's id hashes: its config without execution-only keys and without new fields at their
    backward-compatible defaults (``orchestrator.study``)."""
    return without_defaults({k: v for k, v in to_dict(cfg).items() if k not in EXECUTION_ONLY}, ID_DEFAULTS)


def trial_id(cfg: TrialConfig) -> str:
    """Stable, readable id: the same config always maps to the same folder (so reruns resume)."""
    init = cfg.init.replace(":", "")
    return f"{cfg.model}-{init}-{cfg.loss.name}-fold{cfg.fold}-seed{cfg.seed}-{stable_hash(_identity(cfg), 8)}"


@dataclass(frozen=True)
class PreparedTrial:
    """A trial config resolved against its dataset before any training starts: id, folds, classes, input
    channels and statistics, memory request (a Plan is the whole study; this is one of its trials)."""

    cfg: TrialConfig
    trial_id: str
    trials_root: str  # URI of the folder holding all trial folders
    num_classes: int
    folds: dict[str, list[int]]  # train / valid / test fold numbers
    dataset_version: str  # from the card, read once here: the loop config and the trial's data cache use it
    input_channels: int = 3  # the dataset's spectrogram channels (card spec shape; 1 for 1-channel features)
    # with cfg.standardize: [mean, std] of the training folds per channel or band (spectra.input_stats); else None
    input_stats: list | None = None
    memory_bytes: int = 0  # host memory private to each worker (orchestrator.memory): what it asks Ray for

    @property
    def records(self) -> storage.Location:
        return storage.resolve(self.trials_root).join(self.trial_id)

    def loop_config(self, stop_uri: str | None = None) -> dict[str, Any]:
        """The JSON-able description every path hands to ``train_trial`` (Ray Train's ``train_loop_config``);
        ``stop_uri``: the sweep's stop request the trial polls (``orchestrator.interrupts``)."""
        return {"trial": to_dict(self.cfg), "trial_id": self.trial_id, "num_classes": self.num_classes,
                "folds": self.folds, "records_uri": self.records.uri, "stop_uri": stop_uri,
                "dataset": {"uri": self.cfg.data, "version": self.dataset_version, "channels": self.input_channels,
                            "input_stats": self.input_stats}}


def prepare_trial(cfg: TrialConfig, trials_root: str) -> PreparedTrial:
    """Validate the trial before any training starts (model name, init mode, weights, folds) and fix the
    folds: valid is a whole fold, never the test fold."""
    from orchestrator.models import get_spec, parse_init, resolve_weights_file

    get_spec(cfg.model)
    if parse_init(cfg.init)[0] != "random":
        # offline without weights: fail now, clearly (downloads, if allowed, happen once here too)
        resolve_weights_file(cfg.model, cfg.weights or True, allow_download=cfg.download_weights)
    card = spectra.read_card(cfg.data)
    try:
        roles = fold_roles(card["folds"], cfg.fold, cfg.valid_fold, cfg.split)
    except ConfigError as exc:
        raise ConfigError(f"{cfg.data}: {exc}") from None
    num_classes = card.get("num_classes") or _max_label(cfg.data) + 1  # cards written before num_classes
    folds = {"train": list(roles.train), "valid": list(roles.valid), "test": [roles.test]}
    channels = int(card.get("spec", {}).get("shape", [3])[0])
    # resolved here, from the card in hand: every rank and analysis read the same numbers from the loop config
    stats = ([a.tolist() for a in spectra.input_stats(cfg.data, roles.train, card, standardize_mode(cfg.standardize))]
             if cfg.standardize else None)
    pixels = int(np.prod(card.get("spec", {}).get("shape", [3, 128, 250])[1:]))
    memory = ceil_mib(host_private_bytes(cfg.model, cfg.optim.batch_size, pixels, channels, on_gpu=cfg.use_gpu))
    return PreparedTrial(cfg, trial_id(cfg), trials_root, num_classes, folds, card["version"], channels, stats, memory)


def _max_label(data_uri: str) -> int:
    return max(spectra.read_table(data_uri, columns=["label"])["label"].to_pylist())


# ---------------------------------------------------------------- where the loop runs


class Session(Protocol):
    """Where ``train_trial`` runs: its rank among DDP workers, its device, and where metrics go."""

    rank: int
    world_size: int
    device: torch.device

    def prepare(self, network: torch.nn.Module) -> torch.nn.Module: ...

    def report(self, metrics: dict[str, Any]) -> None: ...


@dataclass
class LocalSession:
    """The calling process: one worker, the GPU when the trial asks for one, metrics only printed."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def for_trial(cls, cfg: TrialConfig) -> "LocalSession":
        if cfg.use_gpu and not torch.cuda.is_available():
            raise ConfigError("the trial asks for a GPU (use_gpu / --gpu) but torch sees none on this machine")
        return cls(device=torch.device("cuda" if cfg.use_gpu else "cpu"))

    def prepare(self, network):
        return network.to(self.device)

    def report(self, metrics):
        pass


class TuneSession(LocalSession):
    """A Ray Tune function trainable (a sweep's single-device trial): every epoch's metrics go to Tune; the
    trial watches its node's drain state (a preemption notice, see orchestrator.interrupts)."""

    def report(self, metrics):
        from ray import tune

        tune.report(metrics)

    @property
    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def node_draining(self) -> bool:
        from orchestrator.ray_runtime import node_draining

        return node_draining(self.node_id)


class TrainSession:
    """One rank of a Ray Train ``TorchTrainer`` (DDP); reports reach Tune through TuneReportCallback."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare(self, network):
        import ray.train.torch

        return ray.train.torch.prepare_model(network)

    def report(self, metrics):
        import ray.train

        ray.train.report(metrics)  # every rank must call it; only rank 0's metrics are filled in


# ---------------------------------------------------------------- test seam


def _injected_fault(trial_id: str, epoch: int) -> None:
    """Test seam, inert unless the environment names a faults file (:data:`FAULTS_ENV`: a JSON object, trial
    id -> ``{"after_epoch": k, "log": path, "times": n}``): then raise InjectedFault after epoch k (or later)
    while the log has fewer than n lines (default 1), adding a line each time, so ``times`` 1 crashes once
    and a large ``times`` on every attempt.

    An environment variable, not a parameter or a patched function, because it must reach every process a
    trial runs in (a Tune actor, a Ray task, each Train worker): Ray's workers inherit the environment Ray
    was started with. Tests set it before Ray starts and rewrite the file it names (tests/faults.py)."""
    path = os.environ.get(FAULTS_ENV)
    fault = json.loads(Path(path).read_text()).get(trial_id) if path and os.path.exists(path) else None
    if not fault or epoch < fault["after_epoch"]:
        return
    log = Path(fault["log"])
    fired = len(log.read_text().splitlines()) if log.exists() else 0
    if fired < fault.get("times", 1):
        with log.open("a") as stream:
            stream.write(f"epoch {epoch}\n")
        raise InjectedFault(f"injected fault after epoch {epoch}")


# ---------------------------------------------------------------- the training loop


def train_trial(loop_config: dict[str, Any], session: Session) -> TrialState:
    """Build (or resume), train for the configured epochs, report every epoch, checkpoint, write records."""
    cfg, dataset = from_dict(TrialConfig, loop_config["trial"]), loop_config["dataset"]
    attempt_started = utc_now()
    seed_everything(cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights
    network = session.prepare(build_network(cfg, loop_config["num_classes"], dataset.get("input_stats"),
                                            dataset.get("channels", 3)))
    optimizer, records = make_optimizer(network, cfg.optim), storage.resolve(loop_config["records_uri"])
    scheduler = make_scheduler(optimizer, cfg.optim)
    # from here on, a preemption notice (SIGTERM, a drain) or the sweep's stop request is held until the next
    # training step, which checkpoints and stops; DDP ranks would have to agree on the step, so a multi-worker
    # trial does not stop at a step: it resumes from its last epoch checkpoint
    with StopCheck(loop_config.get("stop_uri"), getattr(session, "node_draining", None)) as stop_check:
        state = load_checkpoint(records, network, optimizer, scheduler) or TrialState()
        first_started = _write_running(records, state, session, attempt_started) if session.rank == 0 else None
        data = load_trial_data(cfg.data, cfg.fold, (loop_config["folds"]["valid"] or [None])[0], split=cfg.split,
                               max_train_rows=cfg.max_train_clips, seed=cfg.seed, rank=session.rank,
                               world_size=session.world_size, version=dataset["version"],
                               cache_gb=cfg.data_cache_gb)
        feed = DataFeed(data.specs, data.rows_used(evaluates=session.rank == 0), session.device,
                        device_data_budget(cfg, session.device, data.specs.shape))
        step = TrainStep(network, optimizer, cfg, session.device)
        per_worker_batch = max(1, cfg.optim.batch_size // session.world_size)
        should_stop = stop_check if session.world_size == 1 else None
        started_at = (state.next_epoch, state.partial.steps if state.partial else 0)
        for epoch in range(state.next_epoch, cfg.optim.epochs + 1):
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            # the paper's fresh augmented draw per epoch, in a fresh order per epoch; a resumed epoch skips the
            # batches its checkpoint already trained on
            progress = state.partial or EpochProgress(epoch)
            assert progress.epoch == epoch, f"checkpoint stopped in epoch {progress.epoch}, not {epoch}"
            order = shuffled(data.epoch_rows(cfg.augmented, cfg.seed, epoch), cfg.seed * 10_007 + epoch)
            order = order[progress.steps * per_worker_batch:]
            progress = train_epoch(step, feed.batches(data.train_rows[order], data.train_labels[order],
                                                      per_worker_batch), progress, should_stop)
            progress.seconds += time.perf_counter() - start
            if progress.stopped:
                trained = (epoch, progress.steps) != started_at  # else the checkpoint on disk (if any) is as good
                if trained:
                    state.partial = progress
                    save_checkpoint(records, network, optimizer, scheduler, state)
                raise TrialStopped(progress.stopped, epoch, progress.steps, saved=trained)
            state.partial = None
            scheduler.step()
            metrics = _evaluate_epoch(loop_config, session, network, feed, data, state, lr, progress)
            if session.rank == 0 and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.optim.epochs):
                save_checkpoint(records, network, optimizer, scheduler, state)
            session.report(metrics)
            _injected_fault(loop_config["trial_id"], epoch)
        _injected_fault(loop_config["trial_id"], state.next_epoch - 1)  # a restart that finds every epoch done too
        if session.rank == 0:
            write_records(loop_config, state, trial_provenance(session.device, attempt_started, first_started))
    return state


def _write_running(records: storage.Location, state: TrialState, session: Session, started: str) -> str:
    """``running.json``: the host and process that run (or last ran) the trial and where it started from, so a
    person (or a test) can find the process to inspect or signal. Returns when the trial's first attempt
    started: kept from the running.json an earlier attempt left, else ``started``."""
    import socket

    loc = records.join(RUNNING_FILE)
    earlier = _read_quietly(loc)
    first = earlier.get("first_started") or earlier.get("started") or started
    storage.write_json(loc, {
        "host": socket.gethostname(), "pid": os.getpid(), "ray_node": getattr(session, "node_id", None),
        "from_epoch": state.next_epoch, "from_step": state.partial.steps if state.partial else 0,
        "started": started, "first_started": first})
    return first


def _read_quietly(loc: storage.Location) -> dict[str, Any]:
    """A JSON object at ``loc``, or {} when it is missing or unreadable (provenance must not fail a trial)."""
    try:
        found = storage.read_json(loc)
    except StorageError:  # RecordError (missing, forbidden, not JSON) included
        return {}
    return found if isinstance(found, dict) else {}


def _evaluate_epoch(loop_config, session, network, feed, data, state: TrialState, lr: float,
                    progress: EpochProgress) -> dict[str, Any]:
    """Valid and test after an epoch (rank 0 evaluates the whole folds: they are not split across workers),
    recorded into ``state`` and printed; returns the epoch's metrics (just the epoch on other ranks)."""
    start, epoch = time.perf_counter(), progress.epoch
    metrics: dict[str, Any] = {"epoch": epoch}
    if session.rank != 0:
        return metrics
    valid_result = (evaluate(unwrap(network), _eval_batches(feed, data.valid), session.device)
                    if data.valid is not None else None)
    test_result = evaluate(unwrap(network), _eval_batches(feed, data.test), session.device)
    world = session.world_size
    metrics |= {"train_loss": progress.mean_loss, "valid_loss": valid_result and valid_result.loss,
                "valid_acc": valid_result and valid_result.accuracy, "test_acc": test_result.accuracy,
                "lr": lr, "seconds": progress.seconds + time.perf_counter() - start,
                "train_samples": progress.samples * world, "samples_per_s": progress.samples * world / progress.seconds}
    state.record(metrics, valid_result, test_result)  # no valid fold: selects by test (best_epoch)
    print(f"[{loop_config['trial_id']}] epoch {epoch}/{loop_config['trial']['optim']['epochs']}: train_loss "
          f"{progress.mean_loss:.4f} {_accuracies(metrics)} ({metrics['seconds']:.1f} s, "
          f"{metrics['samples_per_s']:.1f} samples/s)", flush=True)
    return metrics


def _accuracies(metrics: dict[str, Any]) -> str:
    valid = f"valid_acc {metrics['valid_acc']:.3f} " if metrics["valid_acc"] is not None else ""
    return f"{valid}test_acc {metrics['test_acc']:.3f}"


def _eval_batches(feed: DataFeed, split: EvalSplit):
    """An evaluation split as (inputs, labels, clip ids) batches, in clip-id order, gathered chunk by chunk."""
    for k, (inputs, labels) in enumerate(feed.batches(split.rows, split.labels, EVAL_BATCH)):
        yield inputs, labels, split.clip_ids[k * EVAL_BATCH : (k + 1) * EVAL_BATCH]


def device_data_budget(cfg: TrialConfig, device: torch.device, spec_shape: tuple[int, ...]) -> int | None:
    """Bytes of data a GPU trial may keep on its device: its share of the GPU (``gpus_per_worker`` of the total,
    at most what is free now) less the model's footprint (``orchestrator.memory.gpu_bytes``). None on CPU."""
    if device.type != "cuda":
        return None
    from orchestrator.memory import gpu_bytes

    free, total = torch.cuda.mem_get_info(device)
    share = min(total * min(cfg.gpus_per_worker, 1.0), free)
    return int(share - gpu_bytes(cfg.model, cfg.optim.batch_size, int(np.prod(spec_shape[2:]))))


# ---------------------------------------------------------------- records


def write_records(config: dict[str, Any], state: TrialState, provenance: dict[str, Any] | None = None) -> None:
    """Write config.json, epochs.parquet, summary.json and predictions.parquet into the trial folder.

    ``provenance`` (:func:`orchestrator.provenance.trial_provenance`) goes into summary.json, not config.json:
    config.json says what the trial is (its id and recipe come from it), summary.json what happened when it
    ran and who finished it."""
    records = storage.resolve(config["records_uri"])
    summary = protocol_summary(state.epochs) | {
        "trial_id": config["trial_id"], "epochs": len(state.epochs), "resumed_at_epoch": state.resumed_at_epoch,
        "train_seconds": sum(r["seconds"] for r in state.epochs),
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in state.epochs])),
    } | ({"provenance": provenance} if provenance is not None else {})
    storage.write_json(records.join("config.json"), {k: config[k] for k in ("trial", "trial_id", "folds",
                                                                          "num_classes", "dataset")})
    storage.write_parquet(records.join("epochs.parquet"), pa.Table.from_pylist(state.epochs))
    storage.write_parquet(records.join("predictions.parquet"), _predictions_table(config, state))
    storage.write_json(records.join("summary.json"), summary)  # last: marks the records complete


def _predictions_table(config: dict[str, Any], state: TrialState) -> pa.Table:
    frames = []
    selected = selected_protocol(config["trial"].get("split"))
    for protocol, snap in ((selected, state.selected), ("last_epoch", state.last)):
        frames.append(pd.DataFrame({
            "trial_id": config["trial_id"], "clip_id": snap["clip_ids"], "fold": config["trial"]["fold"],
            "label": snap["labels"], "protocol": protocol, "epoch": snap["epoch"],
            "probs": list(snap["probs"].astype(np.float32)),
        }))
    frame = pd.concat(frames, ignore_index=True)
    schema = pa.schema([("trial_id", pa.string()), ("clip_id", pa.string()), ("fold", pa.int64()),
                        ("label", pa.int64()), ("protocol", pa.string()), ("epoch", pa.int64()),
                        ("probs", pa.list_(pa.float32()))])
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def read_summary(trials_root: str, trial: str) -> dict[str, Any] | None:
    """A finished trial's summary.json, or None while it is missing (trial not finished)."""
    loc = storage.resolve(trials_root).join(trial, "summary.json")
    return storage.read_json(loc) if storage.exists(loc) else None


# ---------------------------------------------------------------- running one trial


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker entry point (multi-worker DDP trials): the same loop on each rank."""
    train_trial(loop_config, TrainSession())


def build_trainer(prepared: PreparedTrial, *, max_failures: int = 0, callbacks=()):
    """The TorchTrainer of a multi-worker (DDP) trial: named by the trial id, stored under the trials root.
    ``max_failures``: Ray Train's restarts of the trial (``rethink-audio train``); in a sweep Tune restarts
    the whole trial, so the trainer gets none of its own.

    Single-worker trials never build one (``run_trial``/the sweep run ``train_trial`` directly): a trainer
    adds a controller, a worker group and its placement group to every trial.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    cfg, trials = prepared.cfg, storage.resolve(prepared.trials_root)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=prepared.loop_config(),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker=worker_resources(cfg, prepared.memory_bytes)),
        run_config=ray.train.RunConfig(
            name=prepared.trial_id, storage_path=trials.path if not trials.is_s3 else trials.uri,
            storage_filesystem=None if trials.is_s3 else trials.fs,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            callbacks=list(callbacks),  # e.g. TuneReportCallback when a sweep drives this trial
        ),
    )


def worker_resources(cfg: TrialConfig, memory_bytes: int = 0) -> dict[str, float]:
    """What one worker of the trial reserves: CPUs, the GPU (or a fraction of one), custom resources, and
    its private host memory when given (``PreparedTrial.memory_bytes``)."""
    return resource_bundle(cfg.cpus_per_worker, cfg.gpus_per_worker if cfg.use_gpu else 0.0, cfg.custom_resources,
                           memory_bytes)


def run_in_process(prepared: PreparedTrial, session: Session | None = None) -> None:
    """A single-worker trial in this process (once: restarts belong to Ray, see :func:`run_trial`)."""
    train_trial(prepared.loop_config(), session or LocalSession.for_trial(prepared.cfg))


def run_trial(cfg: TrialConfig, trials_root: str, *, max_failures: int = 0,
              ray_address: str | None = None) -> dict[str, Any]:
    """Run (or resume, or reuse if finished) one trial; returns its summary.

    One worker: in this process, without Ray, unless a cluster is named (``ray_address`` or RAY_ADDRESS),
    where it runs as one Ray task holding the trial's resources. Several workers: a Ray Train TorchTrainer.

    Retries belong to Ray, as in a sweep (where Tune owns them): on Ray, a crashed trial is restarted
    ``max_failures`` times (the task's retries, or the TorchTrainer's), each restart resuming from the last
    checkpoint. In this process a crash ends the call; calling it again resumes from the checkpoint.
    """
    prepared = prepare_trial(cfg, trials_root)
    done = read_summary(trials_root, prepared.trial_id)
    if done is not None:
        return done | {"reused": True}
    storage.check_writable(storage.resolve(trials_root))
    if cfg.num_workers == 1 and not (ray_address or os.environ.get("RAY_ADDRESS")):
        run_in_process(prepared)
    else:
        from orchestrator.ray_runtime import ensure_ray

        ensure_ray(ray_address)
        _run_on_ray(prepared, max_failures)
    return read_summary(trials_root, prepared.trial_id) | {"reused": False}


def _run_on_ray(prepared: PreparedTrial, max_failures: int) -> None:
    if prepared.cfg.num_workers > 1:
        build_trainer(prepared, max_failures=max_failures).fit()
        return
    import ray

    resources = worker_resources(prepared.cfg, prepared.memory_bytes)
    task = ray.remote(run_in_process).options(num_cpus=resources.pop("CPU"), num_gpus=resources.pop("GPU", 0),
                                              memory=resources.pop("memory"), resources=resources,
                                              max_retries=max_failures, retry_exceptions=True)
    ray.get(task.remote(prepared))


__all__ = ["CHECKPOINT_FILE", "PROTOCOLS", "LocalSession", "TrainSession", "PreparedTrial", "TuneSession",
           "build_trainer", "load_checkpoint", "prepare_trial", "read_summary", "run_in_process", "run_trial",
           "save_checkpoint", "train_trial", "trial_id", "worker_resources", "write_records"]
