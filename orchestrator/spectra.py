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


def fold_stats(uri: str) -> dict[str, dict[str, object]]:
    """Per fold, per channel: value count, sum and sum of squares (float64) over the original clips' stored
    spectrograms (augmented copies left out). What ``dataset.json`` keeps as ``input_stats``: any union of
    training folds then has its exact mean and standard deviation (:func:`input_stats`), without re-reading.

    Read one fold at a time, so memory stays at one fold's spectrograms.
    """
    dataset = open_dataset(uri)
    folds = sorted({int(f) for f in dataset.to_table(columns=["fold"])["fold"].to_pylist()})
    stats: dict[str, dict[str, object]] = {}
    for fold in folds:
        where = (pads.field("fold") == fold) & pads.field("aug_copy").is_null()
        specs = spec_array(dataset.to_table(columns=["spec"], filter=where)).astype(np.float64)
        per_channel = specs.transpose(1, 0, 2, 3).reshape(specs.shape[1], -1)
        stats[str(fold)] = {"count": int(per_channel.shape[1]), "sum": per_channel.sum(axis=1).tolist(),
                            "sum_sq": np.square(per_channel).sum(axis=1).tolist()}
    return stats


def input_stats(uri: str, train_folds: Iterable[int], card: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)`` (float32) of the original clips of ``train_folds``: the training folds of a
    trial, so its test (and validation) folds never shape its input scaling.

    From the card's ``input_stats``; a version written before the card held them is read once instead.
    """
    card = card if card is not None else read_card(uri)
    per_fold = card.get("input_stats") or fold_stats(uri)
    chosen = [per_fold[str(int(f))] for f in train_folds if str(int(f)) in per_fold]
    if not chosen:
        raise StorageError(f"{uri}: no statistics for training folds {sorted(train_folds)}: the dataset has "
                           f"folds {sorted(per_fold, key=int)}")
    count = sum(s["count"] for s in chosen)
    total = np.sum([s["sum"] for s in chosen], axis=0)
    squares = np.sum([s["sum_sq"] for s in chosen], axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    # a constant channel (silence everywhere) would divide by 0: leave its scale alone
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)
