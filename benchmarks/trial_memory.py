"""Benchmark: a trial's memory against its dataset's size, 1 and 2 concurrent trials, and epoch throughput.

Each measured trial is a real ``rethink-audio train`` process (EfficientNet-Lite0 pretrained, test fold 1,
1 epoch, ``augmented: draw``, CPU). While it runs, ``/proc/<pid>/smaps_rollup`` is sampled every 0.1 s:

* ``rss``: resident memory; ``pss``: resident memory with pages shared by k processes counted 1/k each, so
  the PSS of concurrent trials adds up to what they take together; ``uss``: Private_Clean + Private_Dirty
  (note: a page of the mapped dataset that one process alone maps counts as Private_Clean, although it is
  page cache any later process shares); ``anon``: anonymous memory, what a process allocated for itself
  (heap, tensors, arrays) and what ``RLIMIT_DATA`` limits.

Datasets, all 3 x 128 x 250 float16 (the paper's input size): ``small``, the bundled FSDD subset with 2 augmented
copies per clip (1,800 rows, 330 MB; preprocessed once under ``--work``); ``large``, the same real
spectrograms repeated under new clip ids to ``--large-gb``; ``tiny``, the small one's test and validation
folds (folds 1 and 2, originals only: the same evaluation batches) and eight clips of each training fold with
their copies, 57 MB (its memory is the trials' fixed cost: same model, same input shape, same evaluation,
``TINY_EPOCHS`` epochs for the same number of training steps). Every version is cached on the node before
the runs (``orchestrator.data_cache``, built once per node: its time is reported, not counted in a trial).

``--before REF`` runs the same trials with the project at git commit REF (a temporary worktree) beside this
checkout's, for the in-memory path that read the whole version into each trial.

    .venv/bin/python benchmarks/trial_memory.py --work /tmp/trial-memory [--before 5d5b052] [--large-gb 2]

(5d5b052 is the last commit before the data cache.) ``--datasets tiny --reuse earlier.json`` reruns some
datasets and takes the other runs from an earlier output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent

from orchestrator import data_cache, spectra  # noqa: E402

FIELDS = {"rss": ("Rss",), "pss": ("Pss",), "uss": ("Private_Clean", "Private_Dirty"), "anon": ("Anonymous",)}
MB = 2**20
# The tiny version trains 2 steps per epoch, the small one 25: 13 tiny epochs take the same number of steps. With
# the same evaluation batches too, both runs reach the same allocator state (glibc keeps freed activation memory
# for reuse; a trial's heap depends on the sizes it has allocated) and the difference is the data's.
TINY_EPOCHS = 13


def memory_of(pid: int) -> dict[str, int] | None:
    """rss / pss / uss / anon of a live process in bytes (None once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return {name: sum(kb.get(k, 0) for k in keys) * 1024 for name, keys in FIELDS.items()}


# ---------------------------------------------------------------- datasets


def small_version(work: Path) -> str:
    """The bundled FSDD subset at 3 x 128 x 250 with 2 augmented copies (preprocessed once)."""
    out = work / "versions"
    found = sorted(out.glob("fsdd-*/dataset.json")) if out.exists() else []
    if found:
        return str(found[0].parent)
    cli = [sys.executable, "-m", "orchestrator.cli", "preprocess", "--dataset", "fsdd",
           "--root", str(REPO / "data" / "fsdd-mini"), "--out", str(out), "--augment-copies", "2", "--json"]
    result = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["uri"]


def derive_version(source: str, folder: Path, *, repeat: int = 1, keep_per_fold: int | None = None,
                   whole_folds: tuple[int, ...] = ()) -> str:
    """A new version from ``source``'s rows: each original (with its copies) repeated ``repeat`` times under
    new clip ids, or only ``keep_per_fold`` originals per fold (with their copies), except the ``whole_folds``,
    which keep every original (their copies are never read: valid and test folds evaluate originals)."""
    if (folder / spectra.CARD).exists():
        return str(folder)
    table = spectra.read_table(source, columns=["clip_id", "source_id", "fold", "label", "aug_copy", "spec"])
    card = spectra.read_card(source)
    if keep_per_fold is not None:
        originals = table.filter(pa.compute.is_null(table["aug_copy"])).to_pandas()
        kept = set(originals.sort_values("clip_id").groupby("fold").head(keep_per_fold)["clip_id"])
        whole = set(originals.loc[originals["fold"].isin(whole_folds), "clip_id"])
        table = table.filter(pa.compute.or_(pa.compute.is_in(table["source_id"], pa.array(sorted(kept))),
                                            pa.compute.is_in(table["clip_id"], pa.array(sorted(whole) or [""]))))
    for fold in sorted(set(table["fold"].to_pylist())):
        part = table.filter(pa.compute.equal(table["fold"], fold)).drop(["fold"])
        (folder / "data" / f"fold={fold}").mkdir(parents=True, exist_ok=True)
        for k in range(repeat):
            renamed = part.set_column(0, "clip_id", pa.compute.binary_join_element_wise(
                part["clip_id"], pa.scalar(f"~r{k}" if k else ""), ""))
            renamed = renamed.set_column(1, "source_id", pa.compute.binary_join_element_wise(
                part["source_id"], pa.scalar(f"~r{k}" if k else ""), ""))
            pq.write_table(renamed, folder / "data" / f"fold={fold}" / f"part-{k}.parquet", row_group_size=128)
    originals = table.filter(pa.compute.is_null(table["aug_copy"]))
    per_fold = {str(f): int(n) * repeat for f, n in zip(*np.unique(originals["fold"].to_numpy(), return_counts=True))}
    card |= {"version": f"{card['version']}-{folder.name}", "uri": str(folder),
             "counts": card["counts"] | {"per_fold": per_fold, "originals": sum(per_fold.values()),
                                         "augmented": (table.num_rows - originals.num_rows) * repeat}}
    card.pop("input_stats", None)
    (folder / spectra.CARD).write_text(json.dumps(card))
    return str(folder)


def version_bytes(uri: str) -> int:
    card = spectra.read_card(uri)
    return (card["counts"]["originals"] + card["counts"]["augmented"]) * int(np.prod(card["spec"]["shape"])) * 2


# ---------------------------------------------------------------- runs


def run_trials(uri: str, concurrent: int, code: Path, out: Path, env: dict[str, str], epochs: int = 1) -> dict:
    """``concurrent`` train processes on ``uri`` started together, sampled until they exit."""
    shutil.rmtree(out, ignore_errors=True)
    procs = []
    for k in range(concurrent):
        command = [sys.executable, "-m", "orchestrator.cli", "train", "--data", uri, "--fold", "1", "--epochs", str(epochs),
                   "--seed", str(k), "--out", str(out / f"trial{k}"), "--json"]
        procs.append(subprocess.Popen(command, cwd=code, env=env | {"PYTHONPATH": str(code)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    peaks_sum = dict.fromkeys(FIELDS, 0)
    peaks_each = [dict.fromkeys(FIELDS, 0) for _ in procs]
    start = time.perf_counter()
    while any(p.poll() is None for p in procs):
        now = [memory_of(p.pid) if p.poll() is None else None for p in procs]
        for name in FIELDS:
            peaks_sum[name] = max(peaks_sum[name], sum(m[name] for m in now if m))
            for k, m in enumerate(now):
                if m:
                    peaks_each[k][name] = max(peaks_each[k][name], m[name])
        time.sleep(0.1)
    wall = time.perf_counter() - start
    outputs = [p.communicate() for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"trial failed ({p.returncode}): {stderr[-2000:]}")
    rates = [json.loads(stdout.strip().splitlines()[-1]).get("samples_per_s") for stdout, _ in outputs]
    return {"concurrent": concurrent, "epochs": epochs, "wall_s": round(wall, 1),
            "peak_sum_mb": {k: round(v / MB) for k, v in peaks_sum.items()},
            "peak_each_mb": [{k: round(v / MB) for k, v in e.items()} for e in peaks_each],
            "samples_per_s": [round(r, 2) if r else None for r in rates]}


def worktree(ref: str, work: Path) -> Path:
    """A checkout of ``ref`` (for the path before the data cache), made once under ``work``."""
    folder = work / f"code-{ref}"
    if not folder.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), ref], check=True,
                       capture_output=True)
    return folder


def summarise(rows: list[dict]) -> dict:
    """The memory figures per code, against the tiny version's runs at the same concurrency: what two
    concurrent trials add (sum of PSS) per byte of dataset; what one trial's private memory adds (its
    anonymous peak; the larger of two); the slope of both between the small and the large version."""
    found = {(r["dataset"], r["concurrent"], r["code"]): r for r in rows}

    def private(run):
        return max(e["anon"] for e in run["peak_each_mb"])

    out = {}
    for code in sorted({r["code"] for r in rows}):
        figures = {}
        for name in ("small", "large"):
            for n in (1, 2):
                run, tiny = found.get((name, n, code)), found.get(("tiny", n, code))
                if run is None or tiny is None:
                    continue
                data = run["dataset_mb"] - tiny["dataset_mb"]
                key = f"{name}_{n}_trial{'s' if n > 1 else ''}"
                figures[key] = {"pss_sum_added_per_dataset_byte": round((run["peak_sum_mb"]["pss"]
                                                                         - tiny["peak_sum_mb"]["pss"]) / data, 3),
                                "private_anon_added_per_dataset_byte": round((private(run) - private(tiny)) / data, 3)}
            for n in (1, 2):
                small, large = found.get(("small", n, code)), found.get(("large", n, code))
                if name == "large" and small and large:
                    data = large["dataset_mb"] - small["dataset_mb"]
                    figures[f"slope_small_to_large_{n}"] = {
                        "pss_sum_per_byte": round((large["peak_sum_mb"]["pss"] - small["peak_sum_mb"]["pss"]) / data, 3),
                        "private_anon_per_byte": round((private(large) - private(small)) / data, 3)}
        out[code] = figures
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rethink-audio-trial-memory")
    parser.add_argument("--large-gb", type=float, default=2.0)
    parser.add_argument("--before", help="git ref of the code to compare with (e.g. the commit before the cache)")
    parser.add_argument("--datasets", nargs="+", default=["tiny", "small", "large"])
    parser.add_argument("--reuse", type=Path, help="a previous run's JSON output: its runs of datasets not in "
                        "--datasets join this run's figures (the large runs take most of the time)")
    parser.add_argument("--large-concurrency", type=int, nargs="+", default=[1, 2],
                        help="trials at once on the large version (each takes ~6x the small one's time)")
    parser.add_argument("--before-datasets", nargs="+", default=["tiny", "small"],
                        help="datasets the --before code runs on (its large runs hold ~3x the version per trial)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    small = small_version(args.work)
    repeat = max(1, round(args.large_gb * 2**30 / version_bytes(small)))
    uris = {"tiny": derive_version(small, args.work / "versions" / "tiny-evalfolds", keep_per_fold=8,
                                   whole_folds=(1, 2)), "small": small,
            "large": derive_version(small, args.work / "versions" / "large", repeat=repeat)}
    env = dict(os.environ) | {"RETHINK_AUDIO_DATA_CACHE": str(args.work / "cache"), "PYTHONUNBUFFERED": "1"}
    os.environ["RETHINK_AUDIO_DATA_CACHE"] = env["RETHINK_AUDIO_DATA_CACHE"]
    builds = {}
    for name in args.datasets:  # cache every version on this node first: once per node, not per trial
        start = time.perf_counter()
        data_cache.open_version(uris[name])
        data_cache.release()
        builds[name] = round(time.perf_counter() - start, 1)
    codes = {"this": REPO} | ({f"before:{args.before}": worktree(args.before, args.work)} if args.before else {})
    rows = []
    for name in args.datasets:
        for concurrent in args.large_concurrency if name == "large" else (1, 2):
            for code, folder in codes.items():
                if code != "this" and name not in args.before_datasets:
                    continue
                row = {"dataset": name, "dataset_mb": round(version_bytes(uris[name]) / MB), "code": code}
                epochs = TINY_EPOCHS if name == "tiny" else 1
                row |= run_trials(uris[name], concurrent, folder, args.work / "runs", env, epochs)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    if args.reuse:
        rows += [r for r in json.loads(args.reuse.read_text())["runs"] if r["dataset"] not in args.datasets]
    result = {"benchmark": "trial_memory", "model": "efficientnet_lite0", "input": "3x128x250", "epochs": 1,
              "cache_build_s": builds, "runs": rows}
    result["figures"] = summarise(rows)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
