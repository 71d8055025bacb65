"""Benchmark: how well the sweep layer fills a cluster: trials/hour at 1, 2, 4, 8 concurrent trials.

A cheap trainable (sleeps ``--trial-seconds``, reports once, like a trial waiting on its GPU) runs under
Ray Tune with the same settings the sweep uses (function trainable, stable trial names, a FailureConfig),
each trial holding one unit of a fake custom resource ``slot`` so concurrency is set by the resource, not
by this machine's 2 cores. Each level runs ``--waves`` x concurrency trials, so its ideal wall time is
waves x trial seconds. Reported per level: wall time, trials/hour, scheduling overhead per trial
((wall - ideal) x concurrency / trials) and parallel efficiency (ideal / wall). Prints one JSON object.

    .venv/bin/python benchmarks/sweep_scaling.py [--levels 1 2 4 8] [--trial-seconds 5] [--waves 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def sleepy_trial(config):
    """Stands in for a trial: holds its resources for a fixed time, then reports one result."""
    from ray import tune

    time.sleep(config["seconds"])
    tune.report({"done": 1, "index": config["index"]})


def run_level(concurrency: int, seconds: float, waves: int, storage: str) -> dict:
    from ray import tune

    trials = waves * concurrency
    tuner = tune.Tuner(
        tune.with_resources(sleepy_trial, {"slot": 1}),
        param_space={"index": tune.grid_search(list(range(trials))), "seconds": seconds},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True,
                                    trial_name_creator=lambda t: f"trial-{t.config['index']:03d}",
                                    trial_dirname_creator=lambda t: f"trial-{t.config['index']:03d}"),
        run_config=tune.RunConfig(name=f"scaling-{concurrency}", storage_path=storage, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    )
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    assert len(results) == trials and not results.errors
    ideal = waves * seconds
    return {"concurrency": concurrency, "trials": trials, "wall_s": round(wall, 2),
            "trials_per_hour": round(trials / wall * 3600, 1),
            "overhead_per_trial_s": round((wall - ideal) * concurrency / trials, 3),
            "efficiency": round(ideal / wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--trial-seconds", type=float, default=5.0)
    parser.add_argument("--waves", type=int, default=4)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=2, resources={"slot": max(args.levels)}, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        levels = [run_level(c, args.trial_seconds, args.waves, storage) for c in args.levels]
    ray.shutdown()
    print(json.dumps({"benchmark": "sweep_scaling", "trial_seconds": args.trial_seconds, "waves": args.waves,
                      "levels": levels, "min_efficiency": min(level["efficiency"] for level in levels),
                      "target_efficiency": 0.9}))


if __name__ == "__main__":
    main()
