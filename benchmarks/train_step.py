"""Benchmark: samples/s of the project's training step vs a plain fp32 PyTorch loop (no Ray needed).

Same architecture, batch 32, 3 x 128 x 250 inputs, 50 classes (ESC-50), Adam. The project's step is
``orchestrator.training.TrainStep``: on a GPU it adds channels_last and bf16 autocast; on a CPU it is a
plain fp32 step, so the CPU figure measures its overhead (target >= 0.95x) and the GPU figure its gain
(target >= 2.5x for DenseNet-201). The two loops alternate step by step and the medians are compared, so
drift in machine load hits both alike (ABBA order). Prints one JSON object.

    python benchmarks/train_step.py [--models efficientnet_lite0 densenet201] [--steps 5] [--warmup 2]

(with the project installed, e.g. `make install`, or with ``PYTHONPATH=.`` from the repository root)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from orchestrator.config import OptimConfig, TrialConfig
from orchestrator.models import create_model
from orchestrator.training import DataFeed, TrainStep, batched, make_optimizer, shuffled, train_epoch


def plain_step(model, optimizer):
    """The reference: what a plain fp32 PyTorch loop does per batch."""
    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def timed(step, x, y, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_model(name: str, device: torch.device, batch: int, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    cfg = TrialConfig(data="-", model=name, init="random", optim=OptimConfig(batch_size=batch))
    plain_model = create_model(name, num_classes=50, init="random").to(device)
    ours_model = create_model(name, num_classes=50, init="random").to(device)
    plain = plain_step(plain_model.train(), torch.optim.Adam(plain_model.parameters(), lr=1e-4, weight_decay=1e-3))
    ours = TrainStep(ours_model.train(), make_optimizer(ours_model, cfg.optim), cfg, device)
    x = torch.randn(batch, 3, 128, 250, device=device)
    y = torch.randint(0, 50, (batch,), device=device)
    times = {"plain": [], "ours": []}
    pair = [("plain", plain), ("ours", ours)]
    for i in range(warmup + steps):
        for label, step in (pair if i % 2 == 0 else pair[::-1]):  # ABBA: neither loop always goes first
            seconds = timed(step, x, y, device)
            if i >= warmup:
                times[label].append(seconds)
    plain_rate = batch / statistics.median(times["plain"])
    ours_rate = batch / statistics.median(times["ours"])
    return {"model": name, "plain_fp32_samples_per_s": round(plain_rate, 2),
            "project_step_samples_per_s": round(ours_rate, 2), "ratio": round(ours_rate / plain_rate, 3)}


def bench_epoch(name: str, device: torch.device, batch: int, clips: int) -> dict:
    """One epoch's wall time of the project's loop over ``clips`` float16 clips read from a memory-mapped
    file, as a trial reads its node's cached dataset (``training.DataFeed``): on a GPU, held on the device
    (``resident``) vs staged through two pinned buffers per batch (``staged``); on a CPU, gathered from the
    mapping (``host``) vs from a private in-memory copy (``private``: the path before the data cache). The
    feeds must yield the same batches: their checksums are compared before anything is timed."""
    import tempfile

    import numpy as np

    cfg = TrialConfig(data="-", model=name, init="random", optim=OptimConfig(batch_size=batch))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 50, clips)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "specs.npy"
        specs = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(clips, 3, 128, 250))
        specs[:] = rng.standard_normal(specs.shape, dtype=np.float32).astype(np.float16)
        specs.flush()
        mapped = np.load(path, mmap_mode="r")
        order = shuffled(np.arange(clips), 0)
        budgets = {"resident": 1 << 62, "staged": 0} if device.type == "cuda" else {"host": None}
        feeds = {label: DataFeed(mapped, np.arange(clips), device, budget) for label, budget in budgets.items()}
        sources = {label: (lambda feed=feed: feed.batches(order, labels[order], batch)) for label, feed in feeds.items()}
        if device.type != "cuda":
            private = (np.array(mapped), labels)
            sources["private"] = lambda: batched(private, batch, shuffle_seed=0)
        checksums = {label: float(sum(x.float().sum().item() for x, _ in source())) for label, source in sources.items()}
        out = {"model": name, "clips": clips, "batches_equal": len(set(checksums.values())) == 1}
        for label in list(sources) * 2:  # second round counts: the first warms up
            torch.manual_seed(0)
            model = create_model(name, num_classes=50, init="random").to(device)
            step = TrainStep(model, make_optimizer(model, cfg.optim), cfg, device)
            start = time.perf_counter()
            train_epoch(step, sources[label]())  # ends with .item(): synchronised
            out[f"epoch_s_{label}"] = round(time.perf_counter() - start, 2)
        del mapped, feeds, sources
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "densenet201"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--epoch-clips", type=int, default=0,
                        help="also time one epoch over this many clips read from a memory-mapped file: on the "
                             "device vs staged through pinned buffers (GPU), mapped vs a private copy (CPU); 1600 = an "
                             "ESC-50 training split; 0: skip")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = [bench_model(m, device, args.batch, args.steps, args.warmup) for m in args.models]
    epochs = [bench_epoch(m, device, args.batch, args.epoch_clips) for m in args.models] if args.epoch_clips else []
    print(json.dumps({
        "benchmark": "train_step", "device": torch.cuda.get_device_name() if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "batch": args.batch, "input": [3, 128, 250], "results": results, "epochs": epochs,
        "targets": {"cpu_ratio_min": 0.95, "gpu_densenet201_ratio_min": 2.5},
    }))


if __name__ == "__main__":
    main()
