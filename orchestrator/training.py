"""The training step, evaluation, the three reporting protocols and trial state: pure torch, no Ray.

Everything a Ray Train worker does per epoch lives here, so it can be benchmarked and tested alone (the
GPU benchmark machine has torch/torchvision/timm but no Ray). ``orchestrator.trial`` runs the loop: data,
checkpoints and reporting.

Protocols (how a trial's test accuracy is read off its per-epoch curve):

* ``best_epoch``: the maximum test-fold accuracy over epochs. What the paper reports; optimistic, since
  the test fold picks the epoch.
* ``last_epoch``: test accuracy after the last epoch.
* ``valid_selected``: test accuracy at the epoch with the best validation accuracy (ties: the earlier
  epoch). The honest choice: the test fold never influences it. Only trials with split "nested" have a
  validation fold; split "paper" trials (the paper's protocol) report best_epoch and last_epoch.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.config import OptimConfig, TrialConfig
from orchestrator.losses import make_loss, split_outputs
from orchestrator.models import ClassifierWithProjection, create_model, parse_init, standardize_input, unit_embeddings
from orchestrator.spec_augment import SpecMask
Batch = tuple[torch.Tensor, torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_network(cfg: TrialConfig, num_classes: int, input_stats=None, in_chans: int = 3) -> nn.Module:
    """The trial's model: backbone per ``cfg.init``; wrapped with a projection head for SupCon/hybrid; its
    pooled features L2-normalised before head and projection with ``cfg.loss.l2_embedding`` (SoundCLR).

    ``input_stats``: per-channel (mean, std) of the training folds (``spectra.input_stats``, as arrays or as
    the job's lists), required with ``cfg.standardize``: the backbone's stem then starts with that
    standardisation. ``in_chans``: the dataset's channels (3, or 1 for a 1-channel representation).
    """
    kind, _ = parse_init(cfg.init)
    pretrained = False if kind == "random" else (cfg.weights or True)
    backbone = create_model(cfg.model, num_classes=num_classes, pretrained=pretrained, init=cfg.init,
                            allow_download=cfg.download_weights, in_chans=in_chans)
    if cfg.standardize:
        if input_stats is None:
            raise ValueError("standardize needs the training folds' input_stats (orchestrator.spectra.input_stats)")
        backbone = standardize_input(backbone, *input_stats)
    if cfg.loss.l2_embedding:
        backbone = unit_embeddings(backbone)
    if cfg.loss.name == "ce":
        return backbone
    return ClassifierWithProjection(backbone, proj_dim=cfg.loss.projection_dim, kind=cfg.loss.projection)


def make_optimizer(network: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """Adam (the paper: L2 weight decay in the gradient) or AdamW (SoundCLR: decoupled weight decay) over the
    trainable parameters (frozen blocks excluded)."""
    params = [p for p in network.parameters() if p.requires_grad]
    kind = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=optim.lr, weight_decay=optim.weight_decay)


def lr_factor(optim: OptimConfig, epoch: int) -> float:
    """The learning-rate multiplier of 0-based ``epoch`` (the formula in :class:`OptimConfig`'s docstring).

    Warm-up is SoundCLR's ``WarmUpExponentialLR`` with cold_epochs 0 (utils/utils.py): 0.1 + 0.9 (e + 1) / W,
    so the last warm-up epoch and the first one after it both run at the full rate.
    """
    warm = optim.warmup_epochs
    if epoch < warm:
        return 0.1 + 0.9 * (epoch + 1) / warm
    after = epoch - warm
    if optim.schedule == "cosine":
        # half a cosine over the epochs after warm-up: 1 at their first, ~0 (never 0) at their last
        return 0.5 * (1 + math.cos(math.pi * after / max(1, optim.epochs - warm)))
    if optim.schedule == "exponential":
        return optim.gamma ** after
    if optim.milestones:
        return optim.gamma ** sum(after >= m for m in optim.milestones)
    return optim.gamma ** (after // max(1, optim.step_size))


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch schedule (stepped once per epoch). The paper's recipes (no warm-up, schedule step) are
    StepLR every ``step_size`` epochs or MultiStepLR at ``milestones``, as always (their checkpoints' scheduler
    state still loads); anything else is a LambdaLR of :func:`lr_factor`, whose state dict holds no function
    (LambdaLR skips plain functions), so it round-trips through ``torch.load(weights_only=True)``."""
    if optim.warmup_epochs == 0 and optim.schedule == "step":
        if optim.milestones:
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(optim.milestones), gamma=optim.gamma)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, optim.step_size), gamma=optim.gamma)

    def factor(epoch: int) -> float:
        return lr_factor(optim, epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def mixup(inputs: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(lam * x + (1 - lam) * x[perm], perm, lam)``, lam ~ Beta(alpha, alpha), perm a random permutation.

    Both draws come from torch's CPU generator, whatever the device: the trial seeds it and its checkpoint
    saves it, so a resumed trial mixes the same pairs, and CPU and GPU runs mix alike.
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(inputs.shape[0]).to(inputs.device)
    return lam * inputs + (1 - lam) * inputs.index_select(0, perm), perm, lam


class TrainStep:
    """One optimisation step: mixup, SpecAugment masks, channels_last + bf16 autocast on GPU, loss, backward,
    step. Mixup comes before the masks (AST's order), so a mixed image is masked as one image.

    On CPU it is a plain fp32 step (bf16 autocast would only slow a CPU down), so the CPU benchmark
    compares like with like.
    """

    def __init__(self, network: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrialConfig,
                 device: torch.device):
        self.network, self.optimizer, self.device = network, optimizer, device
        self.objective = make_loss(cfg.loss.name, alpha=cfg.loss.alpha, temperature=cfg.loss.temperature,
                                   positiveless=cfg.loss.positiveless,
                                   label_smoothing=cfg.optim.label_smoothing)
        self.mixup_alpha = cfg.optim.mixup_alpha
        self.mask = SpecMask(**vars(cfg.mask)) if cfg.mask is not None else None
        self.on_gpu = device.type == "cuda"
        if self.on_gpu:
            self.network.to(memory_format=torch.channels_last)

    def _precision(self):
        # bf16 autocast on GPU only; on CPU no autocast context at all (even a disabled one cost ~7 %
        # on DenseNet-201 in benchmarks/train_step.py)
        if self.on_gpu:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Train on one batch; returns the (detached) loss."""
        inputs = inputs.to(self.device, non_blocking=True).float()
        labels = labels.to(self.device, non_blocking=True)
        mixed = None
        if self.mixup_alpha > 0:
            inputs, perm, lam = mixup(inputs, self.mixup_alpha)
            mixed = (labels.index_select(0, perm), lam)
        if self.mask is not None:
            inputs = self.mask.train()(inputs)
        if self.on_gpu:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)  # before forward: last step's grads are freed first
        with self._precision():
            outputs = self.network(inputs)
            loss = self.objective(outputs, labels)
            if mixed is not None:  # the same mix of the two labels' losses as of the inputs
                loss = mixed[1] * loss + (1 - mixed[1]) * self.objective(outputs, mixed[0])
        loss.backward()
        self.optimizer.step()
        return loss.detach()


@dataclass
class EpochProgress:
    """How far a training epoch got: what a checkpoint written inside an epoch keeps, so that the resumed run
    continues at the next step with the same running loss (the sum is float32, as it is accumulated)."""

    epoch: int
    steps: int = 0  # batches trained
    loss_sum: float = 0.0  # sum over samples of the batch losses
    samples: int = 0
    seconds: float = 0.0  # training time of the parts before a stop
    stopped: str | None = None  # why the epoch stopped early (orchestrator.interrupts), else None

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.samples if self.samples else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("epoch", "steps", "loss_sum", "samples", "seconds")}


def train_epoch(step: TrainStep, batches: Iterable[Batch], progress: EpochProgress | None = None,
                should_stop: Callable[[], str | None] | None = None) -> EpochProgress:
    """Train on ``batches`` (the rest of the epoch when ``progress`` comes from a checkpoint); before each step
    ``should_stop`` may return a reason, which ends the epoch early with ``progress.stopped`` set."""
    step.network.train()
    progress = progress or EpochProgress(epoch=0)
    total = torch.tensor(progress.loss_sum, dtype=torch.float32, device=step.device)
    for inputs, labels in batches:
        if should_stop is not None and (reason := should_stop()):
            progress.stopped = reason
            break
        total += step(inputs, labels) * len(labels)  # stays on device: no sync per step
        progress.steps += 1
        progress.samples += len(labels)
    progress.loss_sum = total.item()
    return progress


@dataclass
class EvalResult:
    """Cross-entropy, accuracy and per-clip softmax of one evaluation pass."""

    loss: float
    accuracy: float
    probs: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    clip_ids: list[str]


@torch.no_grad()
def evaluate(network: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor, list[str]]],
             device: torch.device) -> EvalResult:
    """Softmax predictions over ``(inputs, labels, clip_ids)`` batches; the loss is cross-entropy."""
    network.eval()
    probs, labels, clip_ids, loss_sum = [], [], [], 0.0
    for inputs, batch_labels, batch_ids in batches:
        inputs = inputs.to(device).float()
        if device.type == "cuda":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, _ = split_outputs(network(inputs))
        logits = logits.float().cpu()
        loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").item()
        probs.append(logits.softmax(dim=1).numpy())
        labels.append(batch_labels.numpy())
        clip_ids.extend(batch_ids)
    if not labels:
        raise ValueError("evaluation split is empty")
    probs_all, labels_all = np.concatenate(probs), np.concatenate(labels)
    accuracy = float((probs_all.argmax(axis=1) == labels_all).mean())
    return EvalResult(loss_sum / len(labels_all), accuracy, probs_all.astype(np.float32), labels_all, clip_ids)


@dataclass
class TrialState:
    """Everything needed to resume a trial and to write its records: the per-epoch curve and the test
    predictions at the valid-selected epoch so far (the last epoch's are kept as they come)."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    selected: dict[str, Any] | None = None  # {"epoch", "select_acc", "probs", "labels", "clip_ids"}
    last: dict[str, Any] | None = None
    resumed_at_epoch: int | None = None  # the first epoch run after a resume, if any
    partial: EpochProgress | None = None  # the epoch a stop interrupted (its next step is where to go on)

    @property
    def next_epoch(self) -> int:
        """1-based number of the epoch to run next."""
        return len(self.epochs) + 1

    def record(self, row: dict[str, Any], valid: EvalResult | None, test: EvalResult) -> None:
        """Append one epoch's metrics; keep the test predictions of the selected epoch so far and of the last.

        Selected = the best validation accuracy (split "nested": valid_selected), or, without a validation
        fold (split "paper"), the best test accuracy (best_epoch, the paper's choice); ties keep the earlier.
        """
        self.epochs.append(row)
        score = valid.accuracy if valid is not None else test.accuracy
        snapshot = {"epoch": row["epoch"], "select_acc": score, "probs": test.probs,
                    "labels": test.labels, "clip_ids": test.clip_ids}
        self.last = snapshot
        if self.selected is None or score > self.selected["select_acc"]:
            self.selected = snapshot

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors for ``torch.save``, JSON-able rest): loadable with ``weights_only=True``, no pickles."""
        tensors, meta = {}, {"epochs": self.epochs, "resumed_at_epoch": self.resumed_at_epoch}
        if self.partial is not None:
            meta["partial"] = self.partial.to_dict()
        for name in ("selected", "last"):
            snap = getattr(self, name)
            if snap is not None:
                tensors[f"{name}_probs"] = torch.from_numpy(snap["probs"])
                tensors[f"{name}_labels"] = torch.from_numpy(snap["labels"])
                meta[name] = {k: snap[k] for k in ("epoch", "select_acc", "clip_ids")}
        return tensors, meta

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> "TrialState":
        state = cls(epochs=meta["epochs"], resumed_at_epoch=meta.get("resumed_at_epoch"))
        if meta.get("partial"):
            state.partial = EpochProgress(**meta["partial"])
        for name in ("selected", "last"):
            if name in meta:
                if "valid_acc" in meta[name]:  # checkpoints written before split modes existed
                    meta[name]["select_acc"] = meta[name].pop("valid_acc")
                setattr(state, name, {**meta[name], "probs": tensors[f"{name}_probs"].numpy(),
                                      "labels": tensors[f"{name}_labels"].numpy()})
        return state


def protocol_summary(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Test accuracy under ``best_epoch``, ``last_epoch`` and, when the trial had a validation fold,
    ``valid_selected``, with the chosen epochs (split "paper" trials have no valid_selected keys)."""
    if not epochs:
        raise ValueError("no epochs recorded")
    best = max(epochs, key=lambda r: (r["test_acc"], -r["epoch"]))
    last = epochs[-1]
    summary = {"best_epoch": best["test_acc"], "best_epoch_epoch": best["epoch"],
               "last_epoch": last["test_acc"], "last_epoch_epoch": last["epoch"]}
    if epochs[0].get("valid_acc") is None:
        return summary
    selected = max(epochs, key=lambda r: (r["valid_acc"], -r["epoch"]))
    return summary | {"valid_selected": selected["test_acc"], "valid_selected_epoch": selected["epoch"],
                      "valid_selected_valid_acc": selected["valid_acc"]}


def shuffled(rows: np.ndarray, shuffle_seed: int | None) -> np.ndarray:
    """``rows`` in a fresh full permutation when seeded (numpy's generator, so the same seed gives the same
    order on CPU and GPU and from any data source), else as they are."""
    rows = np.asarray(rows)
    return rows[np.random.default_rng(shuffle_seed).permutation(len(rows))] if shuffle_seed is not None else rows


def batched(arrays: tuple, batch_size: int, shuffle_seed: int | None = None,
            rows: np.ndarray | None = None) -> Iterator[tuple]:
    """Minibatches of in-memory arrays (numpy, or tensors already on their device) over ``rows`` (default:
    all rows), permuted by :func:`shuffled`."""
    order = shuffled(np.arange(len(arrays[0])) if rows is None else rows, shuffle_seed)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield tuple(_take(a, idx) for a in arrays)


def _take(array, idx: np.ndarray) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.index_select(0, torch.from_numpy(idx).to(array.device))
    return torch.from_numpy(np.ascontiguousarray(array[idx]))


class DataFeed:
    """A trial's spectrograms as batches on its device, gathered by row index from ``specs`` (the dataset
    version mapped read-only from the node's cache: one copy per node, never a private copy per trial).

    How, chosen once per trial:

    * ``host`` (CPU trials): each batch is gathered from the mapping into a batch-sized array.
    * ``resident`` (GPU, when the rows the trial reads fit ``device_budget``: its share of the GPU less the
      model's footprint): gathered onto the device once, chunk by chunk, so no step copies from the host.
    * ``staged`` (GPU, when they do not fit): each batch is gathered into one of two pinned buffers and
      copied on a side stream while the step before it computes (double buffering); the buffer is reused only
      once its copy has finished. No pinned copy of the dataset, ever.

    Every way yields the same batches for the same rows, so results do not depend on which one ran.
    """

    CHUNK_ROWS = 256  # rows gathered at once when filling device memory

    def __init__(self, specs: np.ndarray, rows_used: np.ndarray, device: torch.device,
                 device_budget: int | None = None):
        self.specs, self.device = specs, device
        self.row_bytes = int(np.prod(specs.shape[1:])) * specs.dtype.itemsize
        needed = len(rows_used) * self.row_bytes
        if device.type != "cuda":
            self.mode = "host"
        elif device_budget is not None and needed <= device_budget:
            self.mode = "resident"
            self._fill_device(np.asarray(rows_used))
        else:
            self.mode = "staged"
            self._stream = torch.cuda.Stream(device)
        self.needed_bytes = needed

    def _fill_device(self, rows_used: np.ndarray) -> None:
        self.resident = torch.empty((len(rows_used), *self.specs.shape[1:]), dtype=torch.float16, device=self.device)
        for start in range(0, len(rows_used), self.CHUNK_ROWS):
            chunk = rows_used[start : start + self.CHUNK_ROWS]
            self.resident[start : start + len(chunk)] = torch.from_numpy(self.specs[chunk]).to(self.device)
        self.position = np.full(len(self.specs), -1, dtype=np.int64)
        self.position[rows_used] = np.arange(len(rows_used))

    def batches(self, rows: np.ndarray, labels: np.ndarray, batch_size: int) -> Iterator[Batch]:
        """``(inputs, labels)`` of ``rows`` in the order given, ``batch_size`` at a time; labels stay on the host."""
        chunks = [slice(s, s + batch_size) for s in range(0, len(rows), batch_size)]
        if self.mode == "staged":
            yield from self._staged(rows, labels, chunks)
            return
        for chunk in chunks:
            idx = rows[chunk]
            if self.mode == "resident":
                inputs = self.resident.index_select(0, torch.from_numpy(self.position[idx]).to(self.device))
            else:
                inputs = torch.from_numpy(self.specs[idx])  # fancy indexing copies: a writable batch
            yield inputs, torch.from_numpy(np.array(labels[chunk]))  # a writable copy

    def _staged(self, rows: np.ndarray, labels: np.ndarray, chunks: list[slice]) -> Iterator[Batch]:
        batch = max((c.stop - c.start for c in chunks), default=0)
        pinned = [torch.empty((batch, *self.specs.shape[1:]), dtype=torch.float16, pin_memory=True)
                  for _ in range(2)]
        copied: list[torch.cuda.Event | None] = [None, None]  # when the copy out of each buffer finished
        compute = torch.cuda.current_stream(self.device)
        for k, chunk in enumerate(chunks):
            idx, slot = rows[chunk], k % 2
            if copied[slot] is not None:
                copied[slot].synchronize()  # batch k - 2 has left this buffer
            staging = pinned[slot][: len(idx)]
            # host gather while the GPU runs step k - 1 (mode "clip": unbuffered; the indices are valid)
            np.take(self.specs, idx, axis=0, out=staging.numpy(), mode="clip")
            with torch.cuda.stream(self._stream):
                inputs = staging.to(self.device, non_blocking=True)
                copied[slot] = torch.cuda.Event()
                copied[slot].record(self._stream)
            compute.wait_stream(self._stream)
            inputs.record_stream(compute)  # allocated on the copy stream, used on the compute stream
            yield inputs, torch.from_numpy(np.array(labels[chunk]))  # a writable copy
