"""Benchmark: where preprocessing time goes, stage by stage, in one process (no Ray).

The same ESC-50-settings clips as ``benchmarks/preprocess.py`` (5 s at 44.1 kHz built from FSDD audio,
3 x 128 x 250 float16), each stage timed on its own with one torch thread (as one featurizer actor):
read bytes, decode + resample, the three mel spectrograms + log + resize, Arrow conversion, and the Parquet
encode under each codec. ``compute_ceiling_clips_per_s`` = cores / (per-clip CPU seconds of every stage):
what a perfect pipeline on ``--cores`` cores could reach; compare it with the pipeline's measured rate
to see what Ray itself (actor start-up, scheduling, the driver) costs. Prints one JSON object.

    .venv/bin/python benchmarks/preprocess_profile.py [--clips 100] [--cores 2]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # layouts.py: ESC-50 layout built from the bundled FSDD audio


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def profile(paths: list[Path]) -> dict[str, float]:
    """Per-clip milliseconds of each stage, plus the Parquet encode per codec."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from orchestrator.audio import decode_audio
    from orchestrator.config import FeatureConfig
    from orchestrator.features import SpectrogramFeatures, featurize_clips
    from orchestrator.preprocess import _to_arrow

    torch.set_num_threads(1)
    module = SpectrogramFeatures(FeatureConfig(), 44100, 250).eval()
    read_s, blobs = timed(lambda: [p.read_bytes() for p in paths])
    decode_s, waves = timed(lambda: [decode_audio(b, 44100, module.min_samples) for b in blobs])
    feature_s, specs = timed(lambda: featurize_clips(module, waves).astype(np.float16))
    rows = [{"clip_id": p.stem, "source_id": p.stem, "fold": 1, "split": "train", "label": 0, "label_name": "x",
             "group": p.stem, "duration": 5.0} for p in paths]
    arrow_s, table = timed(lambda: _to_arrow(rows, specs))
    n = len(paths)
    stages = {"read_ms": read_s, "decode_resample_ms": decode_s, "features_ms": feature_s, "to_arrow_ms": arrow_s}
    out = {k: round(v / n * 1000, 2) for k, v in stages.items()}
    for codec in ("zstd", "lz4", "snappy", "none"):
        sink = io.BytesIO()
        seconds, _ = timed(lambda: pq.write_table(table, sink, compression=codec))
        out[f"parquet_{codec}_ms"] = round(seconds / n * 1000, 2)
        out[f"parquet_{codec}_kb_per_clip"] = round(sink.tell() / n / 1024, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    from layouts import make_esc50

    with tempfile.TemporaryDirectory() as tmp:
        root = make_esc50(Path(tmp) / "ESC-50", clips_per_fold=max(1, args.clips // 5), seconds=5.0)
        stages = profile(sorted((root / "audio").glob("*.wav")))
    per_clip_ms = sum(stages[k] for k in ("read_ms", "decode_resample_ms", "features_ms", "to_arrow_ms",
                                          "parquet_zstd_ms"))
    print(json.dumps({"benchmark": "preprocess_profile", "clips": args.clips, "stages": stages,
                      "cpu_ms_per_clip": round(per_clip_ms, 2), "cores": args.cores,
                      "compute_ceiling_clips_per_s": round(args.cores * 1000 / per_clip_ms, 1)}))


if __name__ == "__main__":
    main()
