"""Shared pieces of the dataset catalog: the manifest schema, containment and header checks, CSV checks, folds."""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
import pandas as pd

from orchestrator import storage
from orchestrator.datasets.source import MISSING, DatasetRoot, probe_audio
from orchestrator.errors import ManifestError, StorageError

# Every catalog function returns a DataFrame with exactly these columns (one row per audio file).
MANIFEST_COLUMNS = [
    "clip_id",  # unique, stable id (file stem, or fold/stem where stems could collide)
    "path",  # audio file: absolute local path (symlinks resolved; as listed when outside the root) or s3:// URI
    "label",  # class index 0..C-1
    "label_name",  # class name
    "fold",  # official fold (ESC-50 1-5, US8K 1-10, FSDD speaker 1-6) or seeded stratified fold
    "split",  # "train"/"test" where the dataset has a single official split (FSDD, GTZAN 80/20), else ""
    "group",  # clips sharing a group (source recording, speaker) must never straddle train and test
    "duration",  # seconds, from the file header; NaN when the header is unreadable
    "sample_rate",  # native sample rate from the header; 0 when unreadable
    "error",  # "" for a usable header, else why the file is rejected (empty, corrupt, outside the root)
]

OUTSIDE_ROOT = "outside the dataset root"
PROBE_THREADS = 16  # concurrent header reads on S3 (I/O-bound: threads, not processes)


def finish_manifest(rows: list[dict], root: DatasetRoot, source: str | None = None) -> pd.DataFrame:
    """Check every path is inside ``root``, probe the headers of those that are, and return the manifest in
    the canonical column order, sorted by clip id. Files outside the root are rejected unopened; files the
    metadata lists but storage does not have fail the whole manifest (see ``source.py``: I/O, not content).

    ``source``: the metadata CSV the rows come from; rows then carry their CSV line in ``line``.
    """
    if not rows:
        raise ManifestError(f"no audio files found under {root}; check --root and the dataset layout")
    frame = pd.DataFrame(rows)
    check_unique_ids(frame, root, source)
    places = [root.contained(p) for p in frame["path"]]
    frame["path"] = [path for path, _ in places]
    probes = probe_all(root, places)
    frame["duration"] = [p[0] for p in probes]
    frame["sample_rate"] = [p[1] for p in probes]
    frame["error"] = [p[2] for p in probes]
    check_present(frame, root, source)
    for column, default in (("split", ""), ("group", None)):
        if column not in frame:
            frame[column] = default
    frame["group"] = frame["group"].fillna(frame["clip_id"]).astype(str)
    frame = frame.astype({"label": "int64", "fold": "int64", "sample_rate": "int64"})
    return frame[MANIFEST_COLUMNS].sort_values("clip_id", kind="stable").reset_index(drop=True)


def probe_all(root: DatasetRoot, places: list[tuple[str, bool]]) -> list[tuple[float, int, str]]:
    """Header probes of the files inside the root (see ``probe_audio``); outside ones are not opened.

    On S3 a probe is two or three round trips (open, header reads), so they run in threads: sequential
    probing of ESC-50's 2,000 objects would keep the driver waiting minutes before any featurizer starts.
    """
    outside = (math.nan, 0, f"{OUTSIDE_ROOT} {root}: not read")

    def probe(place: tuple[str, bool]) -> tuple[float, int, str]:
        path, inside = place
        return probe_audio(root.file(path)) if inside else outside

    if not root.loc.is_s3:
        return [probe(place) for place in places]
    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        return list(pool.map(probe, places))


def check_present(frame: pd.DataFrame, root: DatasetRoot, source: str | None) -> None:
    """Every listed file must exist: a missing one means an incomplete copy or the wrong ``--root``, and a
    version built without it would be reused as if complete. The error names the first few files."""
    missing = frame[frame["error"] == MISSING]
    if missing.empty:
        return
    shown = ", ".join(f"{r.path}{f' (line {r.line})' if 'line' in frame else ''}"
                      for r in missing.head(5).itertuples())
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    raise StorageError(f"{len(missing)} audio file(s) listed in {source or root} do not exist: {shown}{more}; "
                       f"the copy at {root} is incomplete or --root points at the wrong copy: restore the files "
                       "(re-download or re-sync), or remove their rows from the metadata")


def check_unique_ids(frame: pd.DataFrame, root: DatasetRoot, source: str | None) -> None:
    """Clip ids must be unique; the error names each repeated id with its CSV lines (or its files)."""
    repeated = frame[frame["clip_id"].duplicated(keep=False)]
    if repeated.empty:
        return
    places = []
    for clip_id, group in list(repeated.groupby("clip_id", sort=True))[:5]:
        where = (f"lines {', '.join(str(n) for n in group['line'])}" if "line" in group
                 else f"files {', '.join(group['path'])}")
        places.append(f"{clip_id!r} at {where}")
    origin = source if source is not None else root
    raise ManifestError(f"duplicate clip ids in {origin}: {'; '.join(places)}"
                        f"{' (and more)' if repeated['clip_id'].nunique() > 5 else ''}; a clip id is the file "
                        "name without its extension and must be unique: remove or rename the repeated rows")


def read_metadata_csv(root: DatasetRoot, name: str, required: Iterable[str], fix: str) -> tuple[pd.DataFrame, str]:
    """(frame, URI) of the metadata CSV ``name`` below ``root``, read through the storage layer, its columns
    checked; errors name the file, the column and the fix. An unreachable store is a StorageError."""
    csv = root.name(*name.split("/"))
    loc = root.file(csv)
    try:
        raw = storage.read_bytes(loc)
    except storage.RecordError as exc:
        if exc.kind != "missing":
            raise
        raise ManifestError(f"metadata file not found: {csv}. {fix}") from None
    try:
        frame = pd.read_csv(io.BytesIO(raw))
    except Exception as exc:
        raise ManifestError(f"cannot parse metadata CSV {csv}: {exc}. {fix}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{csv} is missing column(s) {missing}; found {list(frame.columns)}. {fix}"
        )
    if frame.empty:
        raise ManifestError(f"{csv} has a header but no data rows: nothing to process. {fix}")
    return frame, csv


def check_int_column(frame: pd.DataFrame, column: str, allowed: Iterable[int], path: str) -> None:
    """Every value of ``column`` must be an integer in ``allowed``; the error names file, column and row."""
    allowed = set(allowed)
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~values.isin(allowed)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        lo, hi = min(allowed), max(allowed)
        expected = f"an integer in {lo}..{hi}" if allowed == set(range(lo, hi + 1)) else f"one of {sorted(allowed)}"
        raise ManifestError(
            f"{path}: column '{column}' has invalid value {str(frame[column].iloc[row])!r} at data row {row + 1} "
            f"(line {row + 2}); expected {expected}. Fix that row or restore the official metadata file"
        )


def stratified_folds(labels: pd.Series, k: int, seed: int) -> np.ndarray:
    """Seeded stratified assignment of fold numbers 1..k: each class is shuffled and dealt round-robin.

    ``labels`` must be ordered deterministically (the callers sort by file name first), so the result
    depends only on the file names and the seed.
    """
    if k < 2:
        raise ManifestError(f"need at least 2 folds, got {k}")
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), dtype=np.int64)
    positions = np.arange(len(labels))
    for label in sorted(pd.unique(labels)):
        members = positions[(labels == label).to_numpy()]
        members = members[rng.permutation(len(members))]
        folds[members] = np.arange(len(members)) % k + 1
    return folds
