"""One trial on Ray Train: Ray Data splits of a dataset version -> TorchTrainer workers -> trial records.

A trial is one model, one init mode, one seed and one test fold. ``run_trial`` builds the fold splits as
Ray Datasets, runs ``train_loop_per_worker`` on ``num_workers`` DDP workers (CPU or one GPU each), reports
metrics with a checkpoint every epoch, and leaves these files in ``<trials root>/<trial id>/``:

* ``config.json``: the resolved TrialConfig, dataset card summary, splits, trial id.
* ``epochs.parquet``: epoch, train_loss, valid_loss, valid_acc, test_acc, lr, seconds, samples_per_s.
* ``summary.json``: test accuracy under best_epoch / last_epoch / valid_selected, chosen epochs, timing.
* ``predictions.parquet``: trial_id, clip_id, fold, label, protocol (valid_selected | last_epoch),
  epoch, probs (list<float32>) — the per-clip softmax ensembles are built from.
* Ray Train's own run folder (checkpoints) under the same trial folder.

Rerunning a trial with the same id and storage resumes from its latest checkpoint (Ray Train V2 restores
a run from ``(storage_path, name)``).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from orchestrator import spectra, storage
from orchestrator.config import TrialConfig, from_dict, stable_hash, to_dict
from orchestrator.datasets.folds import default_valid_fold
from orchestrator.errors import ConfigError
from orchestrator.training import (PROTOCOLS, TrialState, TrainStep, batched, build_network, evaluate,
                                   make_optimizer, make_scheduler, protocol_summary, seed_everything,
                                   train_epoch)

STATE_FILE, PROGRESS_FILE = "state.pt", "progress.json"


class InjectedFault(RuntimeError):
    """Raised by the fault-injection hook (tests of retry and resume)."""


def trial_id(cfg: TrialConfig) -> str:
    """Stable, readable id: the same config always maps to the same folder (so reruns resume)."""
    init = cfg.init.replace(":", "")
    return f"{cfg.model}-{init}-{cfg.loss.name}-fold{cfg.fold}-seed{cfg.seed}-{stable_hash(to_dict(cfg), 8)}"


@dataclass(frozen=True)
class TrialPlan:
    """What the driver resolves before any worker starts."""

    cfg: TrialConfig
    trial_id: str
    trials_root: str  # URI of the folder holding all trial folders
    num_classes: int
    folds: dict[str, list[int]]  # train / valid / test fold numbers

    @property
    def records(self) -> storage.Location:
        return storage.resolve(self.trials_root).join(self.trial_id)


def plan_trial(cfg: TrialConfig, trials_root: str) -> TrialPlan:
    """Validate the trial before any worker starts (model name, init mode, weights, folds) and fix the
    folds: valid is a whole fold, never the test fold."""
    from orchestrator.models import get_spec, parse_init, resolve_weights_file

    get_spec(cfg.model)
    if parse_init(cfg.init)[0] != "random":
        # offline without weights: fail now, clearly (downloads, if allowed, happen once here too)
        resolve_weights_file(cfg.model, cfg.weights or True, allow_download=cfg.download_weights)
    card = spectra.read_card(cfg.data)
    folds = [int(f) for f in card["folds"]]
    if cfg.fold not in folds:
        raise ConfigError(f"--fold {cfg.fold} is not in {cfg.data}; its folds are {folds}")
    valid = cfg.valid_fold if cfg.valid_fold is not None else default_valid_fold(folds, cfg.fold)
    if valid == cfg.fold or valid not in folds:
        raise ConfigError(f"valid fold {valid} must be one of {folds} other than the test fold {cfg.fold}")
    train = [f for f in folds if f not in (cfg.fold, valid)]
    num_classes = card.get("num_classes") or _max_label(cfg.data) + 1  # cards written before num_classes
    return TrialPlan(cfg, trial_id(cfg), trials_root, num_classes,
                     {"train": train, "valid": [valid], "test": [cfg.fold]})


def _max_label(data_uri: str) -> int:
    return max(spectra.read_table(data_uri, columns=["label"])["label"].to_pylist())


def split_datasets(plan: TrialPlan) -> dict[str, Any]:
    """Ray Datasets of the three splits; augmented copies only in train. Materialised once: each worker loads
    its train shard into memory (``load_train_rows``) and streams valid/test every epoch."""
    import ray.data
    from ray.data.datasource import Partitioning
    from ray.data.expressions import col

    loc = storage.resolve(plan.cfg.data).join(spectra.DATA_DIR)
    source = ray.data.read_parquet(loc.path, filesystem=loc.fs,
                                   partitioning=Partitioning("hive", field_types={"fold": int}))
    out = {}
    for split, folds in plan.folds.items():
        expr = col("fold").is_in(folds)
        if split != "train":
            expr = expr & col("aug_copy").is_null()
        columns = ["spec", "label", "clip_id"] + (["aug_copy"] if split == "train" else [])
        out[split] = source.filter(expr=expr).select_columns(columns).materialize()
    return out


# ---------------------------------------------------------------- worker side


def load_train_rows(shard, max_rows: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """This worker's training rows in memory, (specs float16, labels), in a canonical order.

    Why in memory and sorted: preprocessing stores rows grouped by class and in whatever order its parallel
    writers finished, so a streaming shuffle buffer would both mix only neighbours (class-correlated
    batches) and depend on the file order. Sorted by (clip id, augmented copy) and then fully permuted per
    epoch, the same seed gives the same batches on any copy of the dataset. ``max_rows`` (smoke runs) keeps
    a seeded random subset. Memory: the shard at float16, e.g. ~0.3 GB for an ESC-50 training split.
    """
    specs, labels, clip_ids, copies = [], [], [], []
    for batch in shard.iter_batches(batch_size=1024, batch_format="numpy"):
        specs.append(np.asarray(batch["spec"]))
        labels.append(batch["label"].astype(np.int64))
        clip_ids.extend(str(c) for c in batch["clip_id"])
        copies.extend(-1 if c is None or c != c else int(c) for c in batch["aug_copy"])  # None/NaN: original
    if not specs:
        raise ConfigError("this trial's training split is empty: check the dataset's folds and the trial's fold")
    order = np.lexsort((np.asarray(copies), np.asarray(clip_ids)))
    if max_rows and max_rows < len(order):
        order = order[np.sort(np.random.default_rng(seed).choice(len(order), max_rows, replace=False))]
    return np.concatenate(specs)[order], np.concatenate(labels)[order]


def _eval_batches(shard, batch_size: int):
    """(spec, label, clip ids) minibatches in a fixed order; clip ids stay strings for the records."""
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield (torch.from_numpy(np.asarray(batch["spec"], dtype=np.float32)),
               torch.from_numpy(batch["label"].astype(np.int64)), [str(c) for c in batch["clip_id"]])


def _save_checkpoint(folder: Path, network, optimizer, scheduler, state: TrialState) -> None:
    tensors, meta = state.to_checkpoint()
    torch.save({"model": _unwrap(network).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), **tensors},
               folder / STATE_FILE)
    (folder / PROGRESS_FILE).write_text(json.dumps(meta))


def _load_checkpoint(folder: Path, network, optimizer, scheduler) -> TrialState:
    blob = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    _unwrap(network).load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"])
    state = TrialState.from_checkpoint(blob, json.loads((folder / PROGRESS_FILE).read_text()))
    state.resumed_at_epoch = state.next_epoch
    return state


def _unwrap(network):
    return getattr(network, "module", network)  # DDP wraps the model in .module


def _maybe_fail(fault: dict | None, epoch: int) -> None:
    """Test hook: raise once after ``fault['after_epoch']`` (a marker file makes it fire only once)."""
    if fault and epoch == fault["after_epoch"]:
        marker = Path(fault["marker"])
        if not marker.exists():
            marker.write_text("fired")
            raise InjectedFault(f"injected fault after epoch {epoch}")


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: build, (resume,) train for the configured epochs, report and checkpoint each epoch."""
    import ray.train
    import ray.train.torch

    cfg = from_dict(TrialConfig, config["trial"])
    rank = ray.train.get_context().get_world_rank()
    seed_everything(cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights
    device = ray.train.torch.get_device()
    network = ray.train.torch.prepare_model(build_network(cfg, config["num_classes"]))
    optimizer = make_optimizer(network, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.optim)
    state = TrialState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = _load_checkpoint(Path(folder), network, optimizer, scheduler)
    step = TrainStep(network, optimizer, cfg, device)
    per_worker_batch = max(1, cfg.optim.batch_size // cfg.num_workers)
    max_rows = cfg.max_train_clips and max(1, cfg.max_train_clips // cfg.num_workers)
    train_rows = load_train_rows(ray.train.get_dataset_shard("train"), max_rows, cfg.seed)
    for epoch in range(state.next_epoch, cfg.optim.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        batches = batched(train_rows, per_worker_batch, shuffle_seed=cfg.seed * 10_007 + epoch)
        train_loss, seen = train_epoch(step, batches)
        train_seconds = time.perf_counter() - start
        scheduler.step()
        metrics: dict[str, Any] = {"epoch": epoch}
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:  # valid/test are not split across workers: rank 0 evaluates the whole folds
                valid = evaluate(_unwrap(network), _eval_batches(ray.train.get_dataset_shard("valid"), 64), device)
                test = evaluate(_unwrap(network), _eval_batches(ray.train.get_dataset_shard("test"), 64), device)
                metrics |= {"train_loss": train_loss, "valid_loss": valid.loss, "valid_acc": valid.accuracy,
                            "test_acc": test.accuracy, "lr": lr, "seconds": time.perf_counter() - start,
                            "samples_per_s": seen * cfg.num_workers / train_seconds}
                state.record(metrics, valid, test)
                print(f"[{config['trial_id']}] epoch {epoch}/{cfg.optim.epochs}: train_loss {train_loss:.4f} "
                      f"valid_acc {valid.accuracy:.3f} test_acc {test.accuracy:.3f} "
                      f"({metrics['seconds']:.1f} s, {metrics['samples_per_s']:.1f} samples/s)", flush=True)
                _save_checkpoint(Path(folder), network, optimizer, scheduler, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)
        _maybe_fail(config.get("fault"), epoch)
    if rank == 0:
        write_records(config, state)


# ---------------------------------------------------------------- records


def write_records(config: dict[str, Any], state: TrialState) -> None:
    """Write config.json, epochs.parquet, summary.json and predictions.parquet into the trial folder."""
    records = storage.resolve(config["records_uri"])
    summary = protocol_summary(state.epochs) | {
        "trial_id": config["trial_id"], "epochs": len(state.epochs), "resumed_at_epoch": state.resumed_at_epoch,
        "train_seconds": sum(r["seconds"] for r in state.epochs),
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in state.epochs])),
    }
    storage.write_json(records.join("config.json"), {k: config[k] for k in ("trial", "trial_id", "folds",
                                                                          "num_classes", "dataset")})
    storage.write_parquet(records.join("epochs.parquet"), pa.Table.from_pylist(state.epochs))
    storage.write_parquet(records.join("predictions.parquet"), _predictions_table(config, state))
    storage.write_json(records.join("summary.json"), summary)  # last: marks the records complete


def _predictions_table(config: dict[str, Any], state: TrialState) -> pa.Table:
    frames = []
    for protocol, snap in (("valid_selected", state.selected), ("last_epoch", state.last)):
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


# ---------------------------------------------------------------- driver side


def build_trainer(plan: TrialPlan, *, max_failures: int = 0, fault: dict | None = None, callbacks=()):
    """The TorchTrainer of one trial: named by the trial id, stored under the trials root.

    ``fault`` is a test hook ({"after_epoch": k, "marker": path}): raise once after epoch k.
    """
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # same seed, same batches
    context.enable_progress_bars = False  # per-epoch lines from the worker are the progress display
    cfg = plan.cfg
    trials = storage.resolve(plan.trials_root)
    config = {"trial": to_dict(cfg), "trial_id": plan.trial_id, "num_classes": plan.num_classes,
              "folds": plan.folds, "records_uri": plan.records.uri, "fault": fault,
              "dataset": {"uri": cfg.data, "version": spectra.read_card(cfg.data)["version"]}}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker=_worker_resources(cfg)),
        datasets=split_datasets(plan),
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=plan.trial_id, storage_path=trials.path if not trials.is_s3 else trials.uri,
            storage_filesystem=None if trials.is_s3 else trials.fs,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks),  # e.g. TuneReportCallback when a sweep drives this trial
        ),
    )


def _worker_resources(cfg: TrialConfig) -> dict[str, float]:
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    return resources


def run_trial(cfg: TrialConfig, trials_root: str, *, max_failures: int = 0, fault: dict | None = None,
              ray_address: str | None = None) -> dict[str, Any]:
    """Run (or resume, or reuse if finished) one trial; returns its summary."""
    from orchestrator.ray_runtime import ensure_ray

    plan = plan_trial(cfg, trials_root)
    done = read_summary(trials_root, plan.trial_id)
    if done is not None:
        return done | {"reused": True}
    storage.check_writable(storage.resolve(trials_root))
    ensure_ray(ray_address)
    build_trainer(plan, max_failures=max_failures, fault=fault).fit()
    return read_summary(trials_root, plan.trial_id) | {"reused": False}


__all__ = ["PROTOCOLS", "TrialPlan", "build_trainer", "plan_trial", "run_trial", "trial_id",
           "train_loop_per_worker", "write_records"]
