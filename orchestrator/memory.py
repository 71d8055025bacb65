"""How much memory a trial needs, as numbers the scheduler, the plan preview and the cluster check share.

No torch, no Ray. Three quantities:

* **host memory private to a trial's process** (:func:`host_private_bytes`): what a trial's Ray Train workers
  or Ray task ask Ray for (``memory``), and what ``orchestrator.cluster_fit`` packs nodes by. The process itself
  (Python, torch, timm, pyarrow, pandas, a Ray worker),
  the model's weights, gradients and Adam moments, activations (on CPU), the checkpoint being serialised, a few
  batch buffers. Not the dataset: a dataset version is mapped read-only from the node's data cache
  (``orchestrator.data_cache``), one copy per node shared by every trial there.
* **GPU memory of a trial** (:func:`gpu_bytes`): weights + gradients + Adam + bf16 activations + the CUDA
  context. A trial keeps its data on the device only when they fit its share of the GPU minus this.
* **shared dataset bytes per node** (:func:`dataset_bytes`): rows x one spectrogram; counted once per node
  whatever the number of trials mapping it.

The per-model figures come from ``data/footprint.csv``, written by ``benchmarks/trial_footprint.py`` at batch 32
on 3 x 128 x 250 inputs; activations scale linearly with batch size and input pixels.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orchestrator.errors import ConfigError

FOOTPRINT_FILE = Path(__file__).resolve().parent / "data" / "footprint.csv"
GIB = 2**30
MIB = 2**20
REFERENCE_BATCH = 32  # the footprint table's batch size
REFERENCE_PIXELS = 128 * 250  # and its input (height x width)
SPEC_ITEMSIZE = 2  # dataset versions store float16 spectrograms

# A trial process before its model exists: a Ray worker with torch, timm, pyarrow and pandas imported held
# 0.94 GB private memory (smaps_rollup Private_Clean + Private_Dirty with the pinned wheels; benchmarks/trial_memory.py).
PROCESS_BASE_BYTES = 1 * GIB
# Host memory a CUDA process adds for its context, cuBLAS and cuDNN (an estimate: no GPU was lent to measure it).
CUDA_HOST_BYTES = int(1.5 * GIB)
# Device memory for the CUDA context and the caching allocator's slack (benchmarks/trial_footprint.py's rule).
CUDA_CONTEXT_BYTES = 1 * GIB
# Staging buffers of one batch, kept twice over (double buffering), plus the float32 copy a step makes of it.
BATCH_BUFFERS = 3


@dataclass(frozen=True)
class ModelFootprint:
    """One row of ``data/footprint.csv``: a model at batch 32 on 3 x 128 x 250 inputs, 50 classes."""

    model: str
    params_m: float  # parameters, millions
    state_mb: float  # fp32 weights + Adam's two moments (= a checkpoint's size)
    activations_fp32_mb: float  # tensors autograd saves for backward in one fp32 forward pass

    @property
    def weights_bytes(self) -> int:
        return int(self.params_m * 1e6 * 4)

    @property
    def state_bytes(self) -> int:
        return int(self.state_mb * MIB)

    def activation_bytes(self, batch_size: int, pixels: int, *, bf16: bool) -> int:
        """Saved activations at ``batch_size`` and ``pixels`` per input (half of them under bf16 autocast)."""
        scale = batch_size / REFERENCE_BATCH * pixels / REFERENCE_PIXELS
        return int(self.activations_fp32_mb * MIB * scale / (2 if bf16 else 1))


@lru_cache(maxsize=None)
def load_footprints(path: Path = FOOTPRINT_FILE) -> dict[str, ModelFootprint]:
    """model -> footprint, from the shipped CSV."""
    try:
        with open(path, newline="") as handle:
            return {r["model"]: ModelFootprint(r["model"], float(r["params_m"]), float(r["state_mb"]),
                                               float(r["activations_fp32_mb"])) for r in csv.DictReader(handle)}
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the footprint table (columns model, params_m, state_mb, "
                          f"activations_fp32_mb): {exc}; rerun benchmarks/trial_footprint.py") from None


def footprint(model: str) -> ModelFootprint:
    """The footprint of ``model``; a clear error naming the table when it has no row."""
    table = load_footprints()
    if model not in table:
        raise ConfigError(f"no memory footprint for model {model!r} in {FOOTPRINT_FILE} (models: "
                          f"{', '.join(sorted(table))}): run benchmarks/trial_footprint.py --models {model} "
                          "and add its row")
    return table[model]


def row_bytes(channels: int, pixels: int) -> int:
    """Bytes of one stored spectrogram (float16)."""
    return channels * pixels * SPEC_ITEMSIZE


def dataset_bytes(rows: int, channels: int, pixels: int) -> int:
    """Bytes of a dataset version's spectrograms: what one node maps once, however many trials use it."""
    return int(rows) * row_bytes(channels, pixels)


def gpu_bytes(model: str, batch_size: int, pixels: int) -> int:
    """Device memory of one trial without its data: weights, gradients, Adam, bf16 activations, context."""
    fp = footprint(model)
    return (fp.state_bytes + fp.weights_bytes + fp.activation_bytes(batch_size, pixels, bf16=True)
            + CUDA_CONTEXT_BYTES)


def host_private_bytes(model: str, batch_size: int, pixels: int, channels: int = 3, *, on_gpu: bool) -> int:
    """Host memory private to one trial's process (one DDP rank), the dataset excepted.

    On CPU the model trains in host memory: weights + gradients + Adam + fp32 activations. On a GPU the host
    keeps the CUDA runtime and a copy of the weights while the model is built. Either way a checkpoint is
    serialised in memory before it is written (twice its size at the peak: the buffer and its bytes).
    """
    fp = footprint(model)
    batches = BATCH_BUFFERS * batch_size * row_bytes(channels, pixels) * 3  # float16 gather + float32 copy
    checkpoint = 2 * fp.state_bytes
    if on_gpu:
        model_bytes = CUDA_HOST_BYTES + 2 * fp.weights_bytes
    else:
        model_bytes = fp.state_bytes + fp.weights_bytes + fp.activation_bytes(batch_size, pixels, bf16=False)
    return PROCESS_BASE_BYTES + model_bytes + checkpoint + batches


def gib(value: int | float | None) -> str:
    """Bytes as GiB with one decimal ("unknown" for None), the unit the plan preview and the fit table use."""
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"


def ceil_mib(value: int) -> int:
    """Bytes rounded up to a whole MiB: Ray's ``memory`` requests stay readable in ``ray status``."""
    return int(math.ceil(value / MIB) * MIB)


# ---------------------------------------------------------------- a whole plan


@dataclass(frozen=True)
class PlanMemory:
    """The memory of a plan's trials: one request for every trial (the largest trial's, so Tune can reuse a
    trial's process for the next one), and the bytes of each dataset version, shared per node."""

    trial_private_bytes: int  # host memory private to each trial (each DDP rank)
    trial_gpu_bytes: int  # device memory of the largest trial, its data excepted (0: CPU trials)
    datasets: dict[str, int | None]  # plan dataset name -> bytes of its version (None: size unknown)
    largest: str  # "model at batch B on H x W" of the largest trial, for the preview

    def shared_bytes(self, trials_on_node: int) -> int | None:
        """Dataset bytes a node holding ``trials_on_node`` trials may map at once: the versions of that many
        different datasets at most (trials run dataset by dataset, but neighbours in the queue may differ)."""
        if any(v is None for v in self.datasets.values()):
            return None
        sizes = sorted((v for v in self.datasets.values() if v is not None), reverse=True)
        return sum(sizes[: max(1, trials_on_node)])


def _dataset_shape(dataset) -> tuple[int, int, int] | None:
    """(rows, channels, pixels) of a plan dataset, from its card or its preprocess settings and official size."""
    from orchestrator.dataset_sizes import dataset_size

    size = dataset_size(dataset)
    if size is None:
        return None
    if dataset.data is not None:
        from orchestrator import spectra

        channels = int(spectra.read_card(dataset.data)["spec"]["shape"][0])
    else:
        channels = dataset.preprocess.features.num_channels
    rows = sum(size.clips_per_fold.values()) * (1 + size.copies)
    return int(round(rows)), channels, size.pixels


def plan_memory(plan) -> PlanMemory:
    """The :class:`PlanMemory` of a loaded ``Plan``: every model it trains (grid, ablations, search) at every
    batch size it uses (its recipes; 64, the search space's largest, when it searches) on its largest input."""
    from orchestrator.config import SEARCH_BATCH_SIZES

    shapes = {name: _dataset_shape(ds) for name, ds in plan.datasets.items()}
    known = [s for s in shapes.values() if s is not None]
    pixels, channels = (max(s[2] for s in known), max(s[1] for s in known)) if known else (REFERENCE_PIXELS, 3)
    models = set(plan.models) | {a.model for a in plan.ablations}
    batches = {plan.optim.batch_size} | ({plan.random_optim.batch_size} if plan.random_optim else set())
    if plan.search.enabled:
        models.add(plan.search.model or plan.models[0])
        batches |= set(SEARCH_BATCH_SIZES)
    on_gpu = plan.resources.gpus_per_worker > 0
    batch = max(batches)
    private = {m: host_private_bytes(m, batch, pixels, channels, on_gpu=on_gpu) for m in models}
    largest = max(private, key=private.get)
    device = max(gpu_bytes(m, batch, pixels) for m in models) if on_gpu else 0
    return PlanMemory(
        ceil_mib(private[largest]), device,
        {name: None if s is None else dataset_bytes(*s) for name, s in shapes.items()},
        f"{largest} at batch {batch} on {channels} x {pixels:,} px")
