"""Benchmark: the fixed cost of one preprocessing run, cold (first in a driver) and warm (later runs in the
same driver: a sweep preparing several datasets, `rethink-audio run` after a sweep, a test session).

Runs ``orchestrator.preprocess`` on the bundled FSDD subset (600 clips) at 3 x 32 x 32 ``--runs`` times in one
local Ray session, each time with another width so every run builds a new dataset version; at this size the
featurizing itself is a fraction of a second, so the seconds are the pipeline's fixed cost (Ray Data start-up,
featurizer start-up, the Parquet write, the card). Ray's own start-up is reported apart. Prints one JSON object.

    .venv/bin/python benchmarks/preprocess_fixed_cost.py [--runs 4] [--clips 600]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def subset(clips: int, folder: Path) -> Path:
    """The first ``clips`` files of the bundled subset (sorted), copied in its layout."""
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    for wav in sorted((REPO / "data" / "fsdd-mini" / "recordings").glob("*.wav"))[:clips]:
        shutil.copy(wav, recordings / wav.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--clips", type=int, default=600)
    args = parser.parse_args()
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    from orchestrator.config import FeatureConfig
    from orchestrator.preprocess import PreprocessRequest, preprocess

    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        root = subset(args.clips, Path(tmp) / "fsdd")
        for run in range(args.runs):
            request = PreprocessRequest("fsdd", str(root), str(Path(tmp) / "out"),
                                        features=FeatureConfig(height=32, width=32 + run))
            start = time.perf_counter()
            result = preprocess(request)
            seconds.append(round(time.perf_counter() - start, 2))
            assert not result.reused and result.card["counts"]["total"] == args.clips
    ray.shutdown()
    print(json.dumps({"clips": args.clips, "ray_start_s": round(ray_start, 2), "first_run_s": seconds[0],
                      "later_runs_s": seconds[1:], "runs_s": seconds}))


if __name__ == "__main__":
    main()
