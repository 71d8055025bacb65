"""Benchmark: clips/s of the Ray Data preprocessing pipeline vs a serial librosa loop (the paper's recipe).

Both run in this process on the same clips at ESC-50 settings (5 s at 44.1 kHz, 3 channels, 128 x 250),
built from real FSDD recordings by resampling and concatenating, written in the ESC-50 layout. The serial
loop is what the paper's code does per clip: load, three librosa mel spectrograms, log, PIL resize.
The pipeline figure includes manifest building, featurizer start-up and the Parquet write; Ray start-up is
reported separately. Prints one JSON object.

    .venv/bin/python benchmarks/preprocess.py [--clips 400] [--serial-clips 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # layouts.py: ESC-50 layout built from the bundled FSDD audio


def serial_librosa(paths: list[Path]) -> float:
    """Seconds for the paper's per-clip recipe over ``paths``."""
    import librosa
    from PIL import Image

    start = time.perf_counter()
    for path in paths:
        y, sr = librosa.load(path, sr=44100)
        channels = []
        for window_ms, hop_ms in ((25, 10), (50, 25), (100, 50)):
            spec = librosa.feature.melspectrogram(
                y=y, sr=sr, n_fft=4410, win_length=int(round(window_ms * sr / 1000)),
                hop_length=int(round(hop_ms * sr / 1000)), n_mels=128)
            channels.append(np.asarray(Image.fromarray(np.log(spec + 1e-6)).resize((250, 128), Image.BILINEAR)))
        np.stack(channels)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400, help="clips through the pipeline (default 400)")
    parser.add_argument("--serial-clips", type=int, default=40, help="clips through the serial loop")
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import ray

    from layouts import make_esc50
    from orchestrator.preprocess import PreprocessRequest, preprocess

    with tempfile.TemporaryDirectory() as tmp:
        root = make_esc50(Path(tmp) / "ESC-50", clips_per_fold=args.clips // 5, seconds=5.0)
        paths = sorted((root / "audio").glob("*.wav"))
        serial_s = serial_librosa(paths[: args.serial_clips])
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - start
        result = preprocess(PreprocessRequest("esc50", str(root), str(Path(tmp) / "out")))
        pipeline_s = result.seconds
        ray.shutdown()
    serial_rate = args.serial_clips / serial_s
    pipeline_rate = result.card["counts"]["total"] / pipeline_s
    print(json.dumps({
        "benchmark": "preprocess", "settings": "ESC-50: 5 s @ 44.1 kHz -> 3 x 128 x 250 float16",
        "cpus": args.cpus, "pipeline_clips": result.card["counts"]["total"],
        "pipeline_clips_per_s": round(pipeline_rate, 2), "pipeline_seconds": round(pipeline_s, 2),
        "ray_start_seconds": round(ray_start_s, 2), "serial_clips": args.serial_clips,
        "serial_librosa_clips_per_s": round(serial_rate, 2), "speedup": round(pipeline_rate / serial_rate, 2),
        "target_speedup": 8.0,
    }))


if __name__ == "__main__":
    main()
