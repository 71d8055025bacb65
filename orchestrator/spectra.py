"""Reading preprocessed spectrogram datasets (Parquet + ``dataset.json``) without Ray.

Layout of one dataset version (written by ``orchestrator.preprocess``)::

    OUT/<dataset>-<variant>-<hash>/
        dataset.json        card: source, feature parameters, version hash, counts, rejected files
        rejected.parquet    path, clip_id, reason of every file left out
        data/fold=K/*.parquet   clip_id, source_id, fold, split, label, label_name, group, duration,
                                aug_copy, aug_pitch, aug_stretch, spec (arrow.fixed_shape_tensor float16)
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from orchestrator import storage
from orchestrator.errors import StorageError

CARD = "dataset.json"
DATA_DIR = "data"
REJECTED = "rejected.parquet"
PARTITIONING = pads.partitioning(pa.schema([("fold", pa.int64())]), flavor="hive")
METADATA_COLUMNS = ["clip_id", "source_id", "fold", "split", "label", "label_name", "group", "duration",
                    "aug_copy", "aug_pitch", "aug_stretch"]


def read_card(uri: str) -> dict:
    """The ``dataset.json`` card of a dataset version; a clear error when ``uri`` is not one."""
    loc = storage.resolve(uri)
    card = loc.join(CARD)
    if not storage.exists(card):
        raise StorageError(f"{uri} holds no {CARD}: not a finished dataset version. Run "
                           "`rethink-audio preprocess ...` and pass the folder it prints")
    return storage.read_json(card)


def open_dataset(uri: str) -> pads.Dataset:
    """A pyarrow dataset over the version's Parquet files, with ``fold`` typed as int64."""
    loc = storage.resolve(uri).join(DATA_DIR)
    return pads.dataset(loc.path, filesystem=loc.fs, format="parquet", partitioning=PARTITIONING)


def read_table(uri: str, folds: Iterable[int] | None = None, columns: list[str] | None = None) -> pa.Table:
    """Rows of the given folds (all when None) and columns (all when None) as one Arrow table."""
    dataset = open_dataset(uri)
    where = pads.field("fold").isin(list(folds)) if folds is not None else None
    return dataset.to_table(columns=columns, filter=where)


def spec_array(table: pa.Table, column: str = "spec") -> np.ndarray:
    """The spectrogram column as a ``(N, 3, H, W)`` numpy array (dtype as stored, float16)."""
    return table[column].combine_chunks().to_numpy_ndarray()
