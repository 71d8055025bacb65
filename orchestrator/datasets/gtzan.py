"""GTZAN (Tzanetakis & Cook 2002): ``genres/<genre>/<genre>.000NN.wav`` (or ``genres_original/``).

1,000 clips of 30 s, 10 genres, no official split. As in the paper, a deterministic stratified 80/20 split
(files sorted by name, seeded): fold 1 of a seeded stratified 5-fold assignment is the 20 % test split, so
``split`` is "test" there and "train" elsewhere; ``folds`` > 0 gives an optional k-fold instead.
The public copy's ``jazz.00054.wav`` is unreadable: it is reported as rejected, not fatal.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from orchestrator.datasets.common import finish_manifest, stratified_folds
from orchestrator.datasets.source import DatasetRoot
from orchestrator.errors import ManifestError

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def _genre_root(root: DatasetRoot) -> tuple[str, ...]:
    """The folder (parts below the root) that holds the genre folders."""
    for name in ("genres", "genres_original", "Data/genres_original"):
        if root.is_dir(*name.split("/")):
            return tuple(name.split("/"))
    if all(root.is_dir(g) for g in GENRES):
        return ()
    raise ManifestError(
        f"no GTZAN genre folders under {root}; expected {root}/genres/<genre>/<genre>.000NN.wav "
        f"(or genres_original/) for the genres {', '.join(GENRES)}"
    )


def gtzan_manifest(root: str | Path | DatasetRoot, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Manifest of GTZAN with seeded stratified folds 1..``folds`` (fold 1 = the 80/20 test split)."""
    root = DatasetRoot.open(root)
    genres = _genre_root(root)
    genre_root = root.name(*genres)
    missing = [g for g in GENRES if not root.is_dir(*genres, g)]
    if missing:
        raise ManifestError(f"{genre_root} lacks genre folder(s) {missing}; GTZAN has the 10 genres {GENRES}")
    rows = [
        {"clip_id": PurePosixPath(path).stem, "path": path, "label": label, "label_name": genre}
        for label, genre in enumerate(GENRES)
        for path in root.audio_files(*genres, genre)
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ManifestError(f"no audio files under {genre_root}/<genre>/")
    frame["fold"] = stratified_folds(frame["label"], folds, seed)
    frame["split"] = ["test" if f == 1 else "train" for f in frame["fold"]]
    return finish_manifest(frame.to_dict("records"), root)
