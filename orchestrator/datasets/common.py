"""Shared pieces of the dataset catalog: the manifest schema, header probing, CSV checks, fold assignment."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from orchestrator.errors import ManifestError

# Every catalog function returns a DataFrame with exactly these columns (one row per audio file).
MANIFEST_COLUMNS = [
    "clip_id",  # unique, stable id (file stem, or fold/stem where stems could collide)
    "path",  # absolute path of the audio file (symlinks resolved; as listed when outside the root)
    "label",  # class index 0..C-1
    "label_name",  # class name
    "fold",  # official fold (ESC-50 1-5, US8K 1-10, FSDD speaker 1-6) or seeded stratified fold
    "split",  # "train"/"test" where the dataset has a single official split (FSDD, GTZAN 80/20), else ""
    "group",  # clips sharing a group (source recording, speaker) must never straddle train and test
    "duration",  # seconds, from the file header; NaN when the header is unreadable
    "sample_rate",  # native sample rate from the header; 0 when unreadable
    "error",  # "" for a usable header, else why the file is rejected (missing, empty, corrupt)
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".mp3")
OUTSIDE_ROOT = "outside the dataset root"


def contained(path: str | Path, root: Path) -> tuple[str, bool]:
    """(path to use, inside?) for a file named by a dataset's metadata or folder listing.

    The path is resolved (``..`` and symlinks) without opening it; inside ``root`` (itself resolved) the
    resolved path is returned, else the path as written (made absolute but not followed), so neither the
    file nor the target of a symlink pointing out is read or recorded.
    """
    written = Path(os.path.abspath(path))
    real = written.resolve()
    if real.is_relative_to(root.resolve()):
        return str(real), True
    return str(written), False


def probe_audio(path: Path) -> tuple[float, int, str]:
    """(duration s, sample rate, error) from the header alone; never raises for a bad file."""
    import soundfile as sf

    if not path.exists():
        return math.nan, 0, "missing file"
    if path.stat().st_size == 0:
        return math.nan, 0, "empty file (0 bytes)"
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError subclasses
        return math.nan, 0, f"unreadable audio: {str(exc).splitlines()[0][:200]}"
    if info.frames == 0:
        return 0.0, int(info.samplerate), "empty audio (0 samples)"
    return info.frames / info.samplerate, int(info.samplerate), ""


def finish_manifest(rows: list[dict], root: Path, source: Path | None = None) -> pd.DataFrame:
    """Check every path is inside ``root``, probe the headers of those that are, and return the manifest in
    the canonical column order, sorted by clip id. Files outside the root are rejected unopened.

    ``source``: the metadata CSV the rows come from; rows then carry their CSV line in ``line``.
    """
    if not rows:
        raise ManifestError(f"no audio files found under {root}; check --root and the dataset layout")
    frame = pd.DataFrame(rows)
    check_unique_ids(frame, root, source)
    places = [contained(p, root) for p in frame["path"]]
    frame["path"] = [path for path, _ in places]
    outside = (math.nan, 0, f"{OUTSIDE_ROOT} {root.resolve()}: not read")
    probes = [probe_audio(Path(path)) if inside else outside for path, inside in places]
    frame["duration"] = [p[0] for p in probes]
    frame["sample_rate"] = [p[1] for p in probes]
    frame["error"] = [p[2] for p in probes]
    for column, default in (("split", ""), ("group", None)):
        if column not in frame:
            frame[column] = default
    frame["group"] = frame["group"].fillna(frame["clip_id"]).astype(str)
    frame = frame.astype({"label": "int64", "fold": "int64", "sample_rate": "int64"})
    return frame[MANIFEST_COLUMNS].sort_values("clip_id", kind="stable").reset_index(drop=True)


def check_unique_ids(frame: pd.DataFrame, root: Path, source: Path | None) -> None:
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


def read_metadata_csv(path: Path, required: Iterable[str], fix: str) -> pd.DataFrame:
    """Read a metadata CSV and check its columns, with an error naming the file, the column and the fix."""
    if not path.is_file():
        raise ManifestError(f"metadata file not found: {path}. {fix}")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise ManifestError(f"cannot parse metadata CSV {path}: {exc}. {fix}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{path} is missing column(s) {missing}; found {list(frame.columns)}. {fix}"
        )
    if frame.empty:
        raise ManifestError(f"{path} has a header but no data rows: nothing to process. {fix}")
    return frame


def check_int_column(frame: pd.DataFrame, column: str, allowed: Iterable[int], path: Path) -> None:
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


def list_audio(folder: Path) -> list[Path]:
    """Audio files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
