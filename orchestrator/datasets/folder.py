"""A generic folder-per-class layout: ``ROOT/<class name>/*.wav`` (any soundfile-readable format).

Labels are the class folders sorted by name; folds 1..k are a seeded stratified assignment over the files
sorted by path, so the manifest is a pure function of the folder contents and the seed.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from orchestrator.datasets.common import finish_manifest, stratified_folds
from orchestrator.datasets.source import DatasetRoot
from orchestrator.errors import ManifestError


def folder_manifest(root: str | Path | DatasetRoot, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Manifest of a folder-per-class dataset with ``folds`` seeded stratified folds."""
    root = DatasetRoot.open(root)
    if not root.is_dir():
        raise ManifestError(f"{root} is not a folder; expected {root}/<class>/<clip>.wav")
    classes = root.folders()
    rows = [
        {"clip_id": f"{name}/{PurePosixPath(path).stem}", "path": path, "label": label, "label_name": name}
        for label, name in enumerate(classes)
        for path in root.audio_files(name)
    ]
    if len(classes) < 2 or not rows:
        raise ManifestError(f"{root} needs at least two class folders with audio files; found {classes}")
    frame = pd.DataFrame(rows)
    frame["fold"] = stratified_folds(frame["label"], folds, seed)
    return finish_manifest(frame.to_dict("records"), root)
