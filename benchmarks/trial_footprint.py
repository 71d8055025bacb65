"""Benchmark: memory and checkpoint cost of one trial per registered model (no Ray, no GPU needed).

For each model at batch 32 on 3 x 128 x 250 inputs (the paper's ESC-50 images), 50 classes:

* ``params_m``: parameters (millions);
* ``state_mb``: weights + Adam's two moments in fp32 (= the size of a trial's ``checkpoint.pt``), and the
  gradients (same size as the weights) come on top of it during a step;
* ``activations_fp32_mb``: every tensor autograd saves for the backward pass in one fp32 forward (measured
  with ``torch.autograd.graph.saved_tensors_hooks``); bf16 autocast, the project's GPU step, stores most of
  them at half the size, so ``activations_bf16_mb`` ~= half (an estimate: some saved tensors stay fp32);
* ``gpu_estimate_gb``: state + gradients + bf16 activations + 1 GB for the CUDA context and allocator slack,
  the figure to divide a GPU by when choosing ``resources.gpus_per_worker`` (packing trials on one GPU);
* ``checkpoint_write_s``: ``torch.save`` of weights + optimizer state to a file on local disk, through the
  project's own ``trial.save_checkpoint`` (what each ``checkpoint_every`` epochs costs before any upload).

Prints one JSON object; ``--csv`` also writes the table ``orchestrator/memory.py`` reads (a trial's memory
request, the GPU budget for its data, ``rethink-audio plan``, ``cluster/fit.py``).

    .venv/bin/python benchmarks/trial_footprint.py [--models densenet201 efficientnet_lite0] [--batch 32]
    .venv/bin/python benchmarks/trial_footprint.py --csv orchestrator/data/footprint.csv   # refresh the table
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from orchestrator import storage
from orchestrator.config import OptimConfig
from orchestrator.models import create_model, list_models
from orchestrator.training import TrialState, make_optimizer, make_scheduler

MB = 2**20
CONTEXT_GB = 1.0  # CUDA context + caching-allocator slack, a rule of thumb


def saved_activation_bytes(network: torch.nn.Module, inputs: torch.Tensor) -> int:
    """Bytes of every tensor autograd keeps for backward during one forward pass (each storage once)."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage_ = tensor.untyped_storage()
        seen[storage_.data_ptr()] = storage_.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network(inputs)
    parameters = {p.untyped_storage().data_ptr() for p in network.parameters()}
    return sum(size for ptr, size in seen.items() if ptr not in parameters)  # weights are counted in the state


def checkpoint_seconds(network: torch.nn.Module) -> tuple[float, int]:
    """Seconds and bytes of one checkpoint (weights + Adam state after a step) written to local disk."""
    from orchestrator.trial import CHECKPOINT_FILE, save_checkpoint

    optimizer = make_optimizer(network, OptimConfig())
    for p in network.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # Adam allocates its moments on the first step
    with tempfile.TemporaryDirectory() as folder:
        records = storage.resolve(folder)
        start = time.perf_counter()
        save_checkpoint(records, network, optimizer, make_scheduler(optimizer, OptimConfig()), TrialState())
        seconds = time.perf_counter() - start
        return seconds, (Path(folder) / CHECKPOINT_FILE).stat().st_size


def footprint(name: str, batch: int) -> dict:
    network = create_model(name, num_classes=50, init="random")
    params = sum(p.numel() for p in network.parameters())
    state = 3 * params * 4  # fp32 weights + Adam exp_avg + exp_avg_sq
    activations = saved_activation_bytes(network.train(), torch.randn(batch, 3, 128, 250))
    gpu = state + params * 4 + activations / 2 + CONTEXT_GB * 2**30
    seconds, size = checkpoint_seconds(network)
    return {"model": name, "params_m": round(params / 1e6, 2), "state_mb": round(state / MB),
            "activations_fp32_mb": round(activations / MB), "activations_bf16_mb": round(activations / 2 / MB),
            "gpu_estimate_gb": round(gpu / 2**30, 1), "checkpoint_mb": round(size / MB),
            "checkpoint_write_s": round(seconds, 2)}


def write_table(path: Path, rows: list[dict], batch: int) -> None:
    """The footprint table (``orchestrator.memory.FOOTPRINT_FILE``'s columns), one row per model."""
    import csv
    import datetime

    source = f"benchmarks/trial_footprint.py, {datetime.date.today()}, CPU: batch {batch}, 3x128x250, 50 classes"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "params_m", "state_mb", "activations_fp32_mb", "source"])
        for row in rows:
            writer.writerow([row["model"], row["params_m"], row["state_mb"], row["activations_fp32_mb"], source])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--csv", type=Path, help="also write model, params_m, state_mb, activations_fp32_mb here")
    args = parser.parse_args()
    if args.csv and args.batch != 32:
        parser.error("--csv writes the table at batch 32 (orchestrator/memory.py scales it): drop --batch")
    torch.manual_seed(0)
    rows = [footprint(name, args.batch) for name in args.models]
    if args.csv:
        write_table(args.csv, rows, args.batch)
    print(json.dumps({"benchmark": "trial_footprint", "batch": args.batch, "input": "3x128x250",
                      "num_classes": 50, "context_gb": CONTEXT_GB, "models": rows}))


if __name__ == "__main__":
    main()
