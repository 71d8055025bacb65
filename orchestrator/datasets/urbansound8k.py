"""UrbanSound8K (Salamon et al. 2014): ``audio/fold1..fold10/*.wav`` + ``metadata/UrbanSound8K.csv``.

8,732 clips of <= 4 s, 10 classes, 10 official folds. Clips come at many sample rates and channel counts;
preprocessing resamples them to 22,050 Hz mono (the paper's rate; ``features.sample_rate`` overrides it) and
zero-pads the very short ones to one FFT window; each clip keeps its own length and the paper recipe resizes
its image to a fixed width. SoundCLR instead loads them at 44.1 kHz and pads (with the edge samples) or crops
every clip to 4 s: ``features: {sample_rate: 44100, clip_seconds: 4.0}`` (plans/soundclr-us8k.yaml).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from orchestrator.datasets.common import check_int_column, finish_manifest, read_metadata_csv
from orchestrator.datasets.source import DatasetRoot
from orchestrator.errors import ManifestError

COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
FIX = "Point --root at the UrbanSound8K folder that holds audio/fold1..fold10 and metadata/UrbanSound8K.csv."


def urbansound8k_manifest(root: str | Path | DatasetRoot) -> pd.DataFrame:
    """Manifest of UrbanSound8K with its 10 official folds; the group is the freesound id (``fsID``)."""
    root = DatasetRoot.open(root)
    meta, csv = read_metadata_csv(root, "metadata/UrbanSound8K.csv", COLUMNS, FIX)
    check_int_column(meta, "fold", range(1, 11), csv)
    check_int_column(meta, "classID", range(10), csv)
    names = meta.groupby("classID")["class"].nunique()
    if (names > 1).any():
        raise ManifestError(f"{csv}: classID {int(names[names > 1].index[0])} has several class names")
    rows = [
        {
            "clip_id": PurePosixPath(str(r.slice_file_name)).stem,
            "path": root.name("audio", f"fold{int(r.fold)}", str(r.slice_file_name)),
            "label": int(r.classID),
            "label_name": r._8,  # the 'class' column (a Python keyword, so itertuples renames it)
            "fold": int(r.fold),
            "group": str(r.fsID),
            "line": int(r.Index) + 2,  # the CSV line (after the header), for error messages
        }
        for r in meta.itertuples()
    ]
    return finish_manifest(rows, root, csv)
