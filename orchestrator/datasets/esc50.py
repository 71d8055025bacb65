"""ESC-50 (Piczak 2015): ``audio/*.wav`` + ``meta/esc50.csv``; 2,000 clips, 50 classes, 5 official folds.

ESC-10 is the subset with ``esc10 == True``: 10 classes, re-indexed 0-9 in the order of their ESC-50 target.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from orchestrator.datasets.common import check_int_column, finish_manifest, read_metadata_csv
from orchestrator.datasets.source import DatasetRoot
from orchestrator.errors import ManifestError

COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
CSV = "meta/esc50.csv"
FIX = "Point --root at the ESC-50 folder that holds audio/ and meta/esc50.csv (the official release layout)."


def _read(root: DatasetRoot) -> tuple[pd.DataFrame, str]:
    meta, csv = read_metadata_csv(root, CSV, COLUMNS, FIX)
    check_int_column(meta, "fold", range(1, 6), csv)
    check_int_column(meta, "target", range(50), csv)
    # one category per target: a mismatch means a corrupted or edited CSV
    names = meta.groupby("target")["category"].nunique()
    if (names > 1).any():
        target = int(names[names > 1].index[0])
        raise ManifestError(f"{csv}: target {target} has several category names; expected one per target")
    meta["esc10"] = meta["esc10"].astype(str).str.lower().isin(["true", "1"])
    return meta, csv


def _rows(root: DatasetRoot, meta: pd.DataFrame, labels: dict[int, int]) -> list[dict]:
    return [
        {
            "clip_id": PurePosixPath(str(r.filename)).stem,
            "path": root.name("audio", str(r.filename)),  # finish_manifest checks it is inside the root
            "label": labels[int(r.target)],
            "label_name": r.category,
            "fold": int(r.fold),
            "group": f"{r.src_file}",  # clips cut from one freesound recording share a group (and a fold)
            "line": int(r.Index) + 2,  # the CSV line (after the header), for error messages
        }
        for r in meta.itertuples()
    ]


def esc50_manifest(root: str | Path | DatasetRoot) -> pd.DataFrame:
    """Manifest of ESC-50 with its 5 official folds and labels 0-49 (the CSV's ``target``)."""
    root = DatasetRoot.open(root)
    meta, csv = _read(root)
    return finish_manifest(_rows(root, meta, {t: t for t in range(50)}), root, csv)


def esc10_manifest(root: str | Path | DatasetRoot) -> pd.DataFrame:
    """Manifest of ESC-10 (rows with ``esc10 == True``), labels re-indexed 0-9 by ESC-50 target order."""
    root = DatasetRoot.open(root)
    meta, csv = _read(root)
    meta = meta[meta["esc10"]]
    if meta.empty:
        raise ManifestError(f"{csv} has no rows with esc10 == True")
    labels = {t: i for i, t in enumerate(sorted(meta["target"].unique()))}
    return finish_manifest(_rows(root, meta, labels), root, csv)
