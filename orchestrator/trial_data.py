"""A trial's data: one Parquet read of the dataset version, split by fold in memory. No Ray.

Why not Ray Data here: a trial needs a few hundred MB at most (ESC-50 at float16 is ~0.4 GB), and three
materialised Ray Datasets per trial cost tens of seconds of actor and task start-up before the first step.
A trial reads the version's Parquet files once with pyarrow (local or s3:// through ``orchestrator.storage``),
keeps the arrays in a small per-process cache (a Tune actor reused for the next trial of the same dataset
reads nothing), and takes its splits from the one fold function, ``datasets.folds.fold_splits``, whose
disjointness check therefore runs for every trial.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator import spectra
from orchestrator.datasets.folds import fold_splits
from orchestrator.errors import ConfigError

_ROW_COLUMNS = ["clip_id", "source_id", "fold", "label", "aug_copy"]


@dataclass(frozen=True)
class DatasetArrays:
    """Every row of a dataset version: metadata as a DataFrame, spectrograms as one float16 array."""

    rows: pd.DataFrame  # clip_id, source_id, fold, label, aug_copy (-1 for original clips); index = row
    specs: np.ndarray  # (N, 3, H, W) float16, row i belongs to rows.iloc[i]


@dataclass(frozen=True)
class EvalSplit:
    """A valid or test split in clip-id order."""

    specs: np.ndarray
    labels: np.ndarray
    clip_ids: list[str]


@dataclass(frozen=True)
class TrialData:
    """What one trial (or one DDP rank) trains and evaluates on."""

    train_specs: np.ndarray
    train_labels: np.ndarray
    valid: EvalSplit
    test: EvalSplit


_cache: dict[str, DatasetArrays] = {}
_cache_lock = threading.Lock()


def read_dataset(uri: str, version: str | None = None) -> DatasetArrays:
    """All rows of the version at ``uri``, read once per process (the newest version is kept, one at a time:
    sweeps run their trials dataset by dataset, and a version is immutable, so the cache never goes stale).
    ``version`` is the card's, when the caller has read it already (else the card is read here)."""
    version = version or spectra.read_card(uri).get("version", uri)
    key = f"{uri}@{version}"
    with _cache_lock:
        if key not in _cache:
            _cache.clear()  # one dataset in memory per process
            table = spectra.read_table(uri, columns=_ROW_COLUMNS + ["spec"])
            rows = table.select(_ROW_COLUMNS).to_pandas()
            rows["aug_copy"] = rows["aug_copy"].fillna(-1).astype(np.int64)  # null: the original clip
            rows["clip_id"] = rows["clip_id"].astype(str)
            _cache[key] = DatasetArrays(rows, spectra.spec_array(table))
        return _cache[key]


def canonical_train_order(rows: pd.DataFrame, max_rows: int | None, seed: int) -> np.ndarray:
    """Positions of ``rows`` sorted by (clip id, augmented copy), optionally a seeded subset of them.

    Why sorted: preprocessing writes rows grouped by class, in whatever order its parallel writers finished;
    sorted and then fully permuted per epoch, the same seed gives the same batches on any copy of a dataset.
    ``max_rows`` (smoke runs) keeps a seeded random subset, in sorted order.
    """
    if rows.empty:
        raise ConfigError("this trial's training split is empty: check the dataset's folds and the trial's fold")
    order = np.lexsort((rows["aug_copy"].to_numpy(), rows["clip_id"].to_numpy()))
    if max_rows and max_rows < len(order):
        order = order[np.sort(np.random.default_rng(seed).choice(len(order), max_rows, replace=False))]
    return order


def _eval_split(arrays: DatasetArrays, rows: pd.DataFrame) -> EvalSplit:
    rows = rows.sort_values("clip_id", kind="stable")
    return EvalSplit(arrays.specs[rows["row"].to_numpy()], rows["label"].to_numpy(np.int64),
                     rows["clip_id"].tolist())


def load_trial_data(uri: str, test_fold: int, valid_fold: int | None, *, max_train_rows: int | None = None,
                    seed: int = 0, rank: int = 0, world_size: int = 1, version: str | None = None) -> TrialData:
    """The trial's splits: train (this rank's share, canonical order), valid and test (whole folds).

    With ``world_size`` DDP ranks, rank r takes every world_size-th training row of the canonical order
    (after the ``max_train_rows`` subset), so the ranks' shares are disjoint and fixed by the seed.
    """
    arrays = read_dataset(uri, version)
    rows = arrays.rows.assign(row=np.arange(len(arrays.rows)))
    splits = fold_splits(rows, test_fold, valid_fold)  # asserts the three splits are disjoint
    order = canonical_train_order(splits.train, max_train_rows, seed)[rank::world_size]
    train = splits.train.iloc[order]
    return TrialData(arrays.specs[train["row"].to_numpy()], train["label"].to_numpy(np.int64),
                     _eval_split(arrays, splits.valid), _eval_split(arrays, splits.test))
