"""A trial's private memory does not grow with its dataset: it runs under a data-segment limit (RLIMIT_DATA,
which counts what a process allocates for itself, not the read-only mapping of the node's cached copy) that
a process holding the dataset cannot stay within."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from versions import version_bytes, write_version

SHAPE = (3, 64, 64)
HEADROOM = 256 * 2**20  # the limit: the trial's peak data segment on tiny data, plus this
# The large version's spectrograms: 0.9 GB, more than three times the headroom the limit leaves the trial.
LARGE = {"folds": 5, "originals_per_fold": 20, "copies": 370}

# Runs the CLI under RLIMIT_DATA (argv[1] bytes; 0: none) and prints the peak of its data segment (VmData,
# sampled every 10 ms: Linux keeps no peak of it).
LIMITED = """
import resource, sys, threading, time
if int(sys.argv[1]):
    resource.setrlimit(resource.RLIMIT_DATA, (int(sys.argv[1]), int(sys.argv[1])))
peak = [0]
def watch():
    while True:
        with open("/proc/self/status") as status:
            data = next(line for line in status if line.startswith("VmData"))
        peak[0] = max(peak[0], int(data.split()[1]) * 1024)
        time.sleep(0.01)
threading.Thread(target=watch, daemon=True).start()
if sys.argv[2] == "train":
    from orchestrator.cli import main
    code = main(sys.argv[2:])
else:  # a trial process (torch and the loop imported) holding the whole version, as trials did before
    import orchestrator.trial
    from orchestrator import spectra
    spectra.spec_array(spectra.read_table(sys.argv[3]))
    code = 0
print("VMDATA_PEAK", peak[0], flush=True)
sys.exit(code)
"""


def run_limited(limit: int, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), *args], capture_output=True, text=True,
                          env=env, timeout=600)


def train(uri: str, out, limit: int, env) -> subprocess.CompletedProcess:
    return run_limited(limit, "train", "--data", uri, "--model", "efficientnet_lite0", "--init", "random",
                       "--fold", "1", "--epochs", "1", "--out", str(out), "--json", env=env)


def test_a_trial_runs_under_a_memory_limit_its_dataset_is_several_times_larger_than(tmp_path):
    # one thread and two malloc arenas: the same fixed cost on any machine, however many cores it has
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                        "MALLOC_ARENA_MAX": "2", "RETHINK_AUDIO_DATA_CACHE": str(tmp_path / "cache")}
    tiny = write_version(tmp_path / "tiny", version="tiny00000000", shape=SHAPE, folds=5, originals_per_fold=20)
    calibration = train(tiny, tmp_path / "tiny-trials", 0, env)
    assert calibration.returncode == 0, calibration.stderr[-2000:]
    limit = int(calibration.stdout.split("VMDATA_PEAK")[1].split()[0]) + HEADROOM

    large = write_version(tmp_path / "large", version="large0000000", shape=SHAPE, files_per_fold=4,
                          row_group_rows=256, **LARGE)
    assert version_bytes(shape=SHAPE, **LARGE) > 3 * HEADROOM
    limited = train(large, tmp_path / "large-trials", limit, env)
    assert limited.returncode == 0, limited.stderr[-2000:]
    summary = json.loads(limited.stdout.split("VMDATA_PEAK")[0].strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["reused"] is False
    peak = int(limited.stdout.split("VMDATA_PEAK")[1].split()[0])
    assert peak < limit

    # the control: a trial process holding the version in memory, as each trial did before, exceeds the limit
    holding = run_limited(limit, "hold", large, env=env)
    assert holding.returncode != 0 and "MemoryError" in holding.stderr, holding.stderr[-2000:]
