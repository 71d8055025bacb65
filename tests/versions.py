"""Dataset versions written directly in the layout ``orchestrator.preprocess`` produces (no audio, no Ray).

For tests whose subject is what happens after preprocessing (the node's data cache, a trial's memory) and
that need versions of a chosen size quickly: Parquet partitioned by ``fold`` with the ``spec`` column as
Arrow's fixed_shape_tensor of float16, and a ``dataset.json`` card with the keys trials read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_version(folder: Path, *, version: str = "0123456789ab", folds: int = 5, originals_per_fold: int = 4,
                  copies: int = 2, shape: tuple[int, int, int] = (3, 16, 16), classes: int = 2,
                  files_per_fold: int = 2, row_group_rows: int = 64, seed: int = 0, band_offsets: bool = False) -> str:
    """Write a version of ``folds`` x ``originals_per_fold`` clips, each with ``copies`` augmented copies, of
    seeded random spectrograms; returns its URI (the folder). Labels cycle through ``classes``.
    ``band_offsets``: each mel bin h and fold f adds ``h + f`` and scales by ``1 + h / 4``, a per-band offset
    and spread as log-mel has, differing between folds."""
    rng = np.random.default_rng(seed)
    tensor = pa.fixed_shape_tensor(pa.float16(), shape)
    for fold in range(1, folds + 1):
        clip_ids, sources, labels, aug = [], [], [], []
        for i in range(originals_per_fold):
            clip = f"{fold}-{i:05d}"
            for copy in [None, *range(copies)]:
                clip_ids.append(clip if copy is None else f"{clip}#aug{copy}")
                sources.append(clip)
                labels.append(i % classes)
                aug.append(copy)
        parts = np.array_split(np.arange(len(clip_ids)), files_per_fold)
        (folder / "data" / f"fold={fold}").mkdir(parents=True, exist_ok=True)
        for j, part in enumerate(parts):
            specs = rng.standard_normal((len(part), *shape), dtype=np.float32)
            if band_offsets:
                bins = np.arange(shape[1], dtype=np.float32)[:, None]
                specs = specs * (1 + bins / 4) + bins + fold
            specs = specs.astype(np.float16)
            table = pa.table({
                "clip_id": [clip_ids[k] for k in part], "source_id": [sources[k] for k in part],
                "label": pa.array([labels[k] for k in part], pa.int64()),
                "aug_copy": pa.array([aug[k] for k in part], pa.int64()),
                "spec": pa.ExtensionArray.from_storage(tensor, pa.FixedSizeListArray.from_arrays(
                    pa.array(specs.reshape(-1)), int(np.prod(shape)))),
            })
            pq.write_table(table, folder / "data" / f"fold={fold}" / f"part-{j}.parquet",
                           row_group_size=row_group_rows, compression="none")
    per_fold = {str(f): originals_per_fold for f in range(1, folds + 1)}
    card = {"name": "synth", "version": version, "folds": list(range(1, folds + 1)), "num_classes": classes,
            "spec": {"shape": list(shape), "dtype": "float16"}, "augment": {"copies": copies},
            "counts": {"per_fold": per_fold, "originals": folds * originals_per_fold,
                       "augmented": folds * originals_per_fold * copies}, "rejected": []}
    (folder / "dataset.json").write_text(json.dumps(card))
    return str(folder)


def version_bytes(folds: int, originals_per_fold: int, copies: int, shape: tuple[int, int, int]) -> int:
    """Bytes of the spectrograms of a :func:`write_version` version."""
    return folds * originals_per_fold * (1 + copies) * int(np.prod(shape)) * 2
