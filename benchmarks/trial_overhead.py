"""Benchmark: the fixed cost of one trial through the real sweep, vs the same trials in a plain loop.

N tiny trials (EfficientNet-Lite0 with its packaged ImageNet weights, 1 epoch, 32 training clips of the
bundled FSDD subset at 3 x 32 x 32, evaluation of a 100-clip valid and test fold each) run through
``orchestrator.sweep.run_sweep`` on a local Ray at 1 and at 2 concurrent trials, each level in fresh storage.
Reported per level:

* ``wall_s``: the sweep's wall time (plan written, datasets checked, phase 2, records);
* ``slot_seconds_per_trial`` = wall x concurrency / trials: what one trial costs a trial slot (a GPU);
* ``epoch_seconds_per_trial``: the trial's own epochs (training + evaluation), from its records;
* ``fixed_cost_per_trial_s`` = the difference: start-up, data loading, checkpoints, reporting.

The floor runs the same trials as a plain loop in one process (data read once, one network per trial, same
epochs): what the trials cost with no orchestration at all. Prints one JSON object.

    .venv/bin/python benchmarks/trial_overhead.py [--trials 8] [--levels 1 2] [--clips 32]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FOLD, SIDE, BATCH = 2, 32, 16


def build_dataset(out: Path) -> str:
    """The bundled FSDD subset at 3 x 32 x 32 (Ray Data preprocessing; not part of the measured sweeps)."""
    from orchestrator.config import FeatureConfig
    from orchestrator.preprocess import PreprocessRequest, preprocess

    request = PreprocessRequest("fsdd", str(REPO / "data" / "fsdd-mini"), str(out),
                                features=FeatureConfig(height=SIDE, width=SIDE))
    return preprocess(request).uri


def write_plan(folder: Path, data: str, trials: int, clips: int, concurrency: int) -> Path:
    import yaml

    plan = {"name": f"overhead-{concurrency}", "storage": str(folder / "store"),
            "datasets": {"fsdd": {"data": data, "folds": [FOLD]}}, "models": ["efficientnet_lite0"],
            "inits": ["pretrained"], "seeds": list(range(trials)),
            "optim": {"epochs": 1, "lr": 1e-3, "batch_size": BATCH}, "max_train_clips": clips,
            "max_concurrent_trials": concurrency, "max_failures": 0}
    path = folder / f"plan-{concurrency}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def run_level(folder: Path, data: str, trials: int, clips: int, concurrency: int) -> dict:
    """One sweep of ``trials`` trials, ``concurrency`` at a time; its wall time against the trials' epochs."""
    from orchestrator.plan import load_plan
    from orchestrator.sweep import run_sweep

    plan = load_plan(write_plan(folder, data, trials, clips, concurrency))
    start = time.perf_counter()
    result = run_sweep(plan, quiet=True)
    wall = time.perf_counter() - start
    assert result.finished == trials and not result.failed, result.summary()
    summaries = [json.loads(p.read_text()) for p in Path(result.root).glob("trials/*/summary.json")]
    epoch_seconds = sum(s["train_seconds"] for s in summaries) / len(summaries)
    slot_seconds = wall * concurrency / trials
    return {"concurrency": concurrency, "trials": trials, "wall_s": round(wall, 2),
            "slot_seconds_per_trial": round(slot_seconds, 2),
            "epoch_seconds_per_trial": round(epoch_seconds, 2),
            "fixed_cost_per_trial_s": round(slot_seconds - epoch_seconds, 2)}


def plain_loop(data: str, trials: int, clips: int) -> dict:
    """The floor: the same trials in one process, no Ray; the data read once, one network per trial."""
    import numpy as np
    import torch

    from orchestrator import spectra
    from orchestrator.config import OptimConfig, TrialConfig
    from orchestrator.training import TrainStep, batched, build_network, evaluate, make_optimizer, seed_everything

    torch.set_num_threads(1)  # as a 1-CPU trial worker
    start = time.perf_counter()
    table = spectra.read_table(data, folds=None, columns=["spec", "label", "fold", "aug_copy"])
    folds, labels, specs = (table["fold"].to_numpy(), table["label"].to_numpy().astype(np.int64),
                            spectra.spec_array(table))
    read_s = time.perf_counter() - start
    split = {name: (folds == f) for name, f in (("test", FOLD), ("valid", FOLD + 1))}
    train_rows = np.flatnonzero(~(split["test"] | split["valid"]))[:clips]
    per_trial = []
    for seed in range(trials):
        begin = time.perf_counter()
        cfg = TrialConfig(data=data, seed=seed, optim=OptimConfig(epochs=1, lr=1e-3, batch_size=BATCH))
        seed_everything(seed)
        network = build_network(cfg, int(labels.max()) + 1)
        step = TrainStep(network, make_optimizer(network, cfg.optim), cfg, torch.device("cpu"))
        network.train()
        for x, y in batched((specs[train_rows], labels[train_rows]), BATCH, shuffle_seed=seed):
            step(x, y)
        for mask in split.values():
            evaluate(network, ((x, y, [""] * len(y)) for x, y in batched((specs[mask], labels[mask]), 64)),
                     torch.device("cpu"))
        per_trial.append(time.perf_counter() - begin)
    return {"trials": trials, "read_s": round(read_s, 3), "seconds_per_trial": round(sum(per_trial) / trials, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clips", type=int, default=32, help="training clips per trial")
    args = parser.parse_args()

    from orchestrator.ray_runtime import ensure_ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        ensure_ray(num_cpus=2, log_to_driver=False)
        ray_start = time.perf_counter() - start
        data = build_dataset(folder / "datasets")
        levels = [run_level(folder, data, args.trials, args.clips, c) for c in args.levels]
        import ray

        ray.shutdown()
        floor = plain_loop(data, args.trials, args.clips)
    print(json.dumps({"benchmark": "trial_overhead", "model": "efficientnet_lite0", "input": f"3x{SIDE}x{SIDE}",
                      "train_clips": args.clips, "epochs": 1, "ray_start_s": round(ray_start, 2),
                      "levels": levels, "plain_loop": floor,
                      "max_fixed_cost_per_trial_s": max(level["fixed_cost_per_trial_s"] for level in levels),
                      "target_fixed_cost_per_trial_s": 10.0}))


if __name__ == "__main__":
    main()
