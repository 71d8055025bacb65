"""A trial's data: the dataset version mapped from the node's cache, split by fold into row indices. No Ray.

Why not Ray Data here: a trial needs its rows by index, in an order fixed by its seed, epoch after epoch;
three materialised Ray Datasets per trial cost tens of seconds of actor and task start-up before the first
step. A trial maps the version from the node's data cache (``orchestrator.data_cache``: one read-only copy per
node, shared by every trial there, built once from the Parquet files, local or s3://), takes its splits from
the one fold function, ``datasets.folds.fold_splits``, whose disjointness check therefore runs for every
trial, and keeps only row indices: batches are gathered from the mapping (``training.DataFeed``), so no trial
holds a private copy of its training split.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.data_cache import open_version
from orchestrator.datasets.folds import fold_splits
from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class EvalSplit:
    """A valid or test split in clip-id order: row positions in the version's ``specs``."""

    rows: np.ndarray
    labels: np.ndarray
    clip_ids: list[str]


@dataclass(frozen=True)
class TrialData:
    """What one trial (or one DDP rank) trains and evaluates on.

    ``specs`` is the whole version, mapped read-only (shared with every trial on the node). The training rows
    are this rank's original clips first (canonical order), then their augmented copies grouped by source
    clip; ``train_rows[i]`` is training row i's position in ``specs``, ``copy_offsets[i]:copy_offsets[i+1]``
    are clip i's copies, counted from the first copy row. ``epoch_rows`` says which rows an epoch trains on.
    """

    specs: np.ndarray
    train_rows: np.ndarray
    train_labels: np.ndarray
    train_clip_ids: list[str]  # the original clips, in row order
    copy_offsets: np.ndarray  # (originals + 1,) int64, CSR offsets into the copy rows
    valid: EvalSplit | None  # None: split "paper" has no validation fold
    test: EvalSplit

    @property
    def originals(self) -> int:
        return len(self.train_clip_ids)

    def rows_used(self, evaluates: bool = True) -> np.ndarray:
        """Every row of ``specs`` this rank reads (training rows; valid and test too when it evaluates)."""
        splits = [self.train_rows] + ([s.rows for s in (self.valid, self.test) if s is not None] if evaluates else [])
        return np.unique(np.concatenate(splits))

    def epoch_rows(self, augmented: str, seed: int, epoch: int) -> np.ndarray:
        """Training-row positions epoch ``epoch`` trains on (``orchestrator.config.AUGMENTED_MODES``):

        * ``draw`` (the paper's protocol): every original clip once, plus one of its augmented copies drawn
          afresh each epoch, seeded by (seed, epoch, clip id) alone, so a resumed or re-sharded trial draws
          the same copy; clips without copies contribute only themselves.
        * ``all``: every original and every stored copy, every epoch (fixed offline copies).
        * ``every`` (SoundCLR's protocol): every training sample augmented, every epoch: in place of each
          original clip, one of its copies, drawn as ``draw`` draws it, so an epoch has N samples, none of
          them an original (a clip without copies contributes itself).
        * ``none``: the original clips only.

        Why stored copies stand in for SoundCLR's fresh waveform variant per clip per epoch: a dataset
        version stores spectrograms, and trials never see audio; a fresh variant would mean the waveform,
        the augmentation and the features inside every training step: measured ~53 ms per 5-s 44.1 kHz clip
        on one (shared, loaded) CPU core, 39 ms augmentation + 14 ms features, so ~85 CPU-seconds per ESC-50
        epoch of 1,600 clips, ~19 CPU-hours over SoundCLR's 800 epochs, for every trial. With K copies each
        variant is seen about epochs / K times; the spectrogram masks are still drawn afresh every step.
        """
        n = self.originals
        if augmented == "none":
            return np.arange(n)
        if augmented == "all":
            return np.arange(len(self.train_labels))
        drawn = self._drawn_copies(seed, epoch)
        if augmented == "every":
            drawn[drawn < 0] = np.flatnonzero(drawn < 0)
            return drawn
        return np.concatenate([np.arange(n), drawn[drawn >= 0]])

    def _drawn_copies(self, seed: int, epoch: int) -> np.ndarray:
        """For each original clip, the training-row position of the copy drawn for epoch ``epoch``, seeded by
        (seed, epoch, clip id) alone, so a resumed or re-sharded trial draws the same copy; -1 without copies."""
        counts = np.diff(self.copy_offsets)
        has_copies = np.flatnonzero(counts)
        picks = [zlib.crc32(f"{seed}/{epoch}/{self.train_clip_ids[i]}".encode()) % counts[i] for i in has_copies]
        drawn = np.full(self.originals, -1, dtype=np.int64)
        drawn[has_copies] = self.originals + self.copy_offsets[has_copies] + np.asarray(picks, dtype=np.int64)
        return drawn


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


def _eval_split(rows: pd.DataFrame) -> EvalSplit:
    rows = rows.sort_values("clip_id", kind="stable")
    return EvalSplit(rows["row"].to_numpy(np.int64), rows["label"].to_numpy(np.int64), rows["clip_id"].tolist())


def _train_rows(train: pd.DataFrame, max_originals: int | None, seed: int, rank: int, world_size: int):
    """(this rank's original rows, their copies sorted by (source, copy), copy offsets per original).

    The cap and the DDP share apply to original clips; each original brings all of its copies, so the draw
    of an epoch never crosses ranks. With ``world_size`` ranks, rank r takes every world_size-th original of
    the canonical order, so the shares are disjoint and fixed by the seed.
    """
    is_copy = train["aug_copy"].to_numpy() >= 0
    originals = train[~is_copy]
    originals = originals.iloc[canonical_train_order(originals, max_originals, seed)[rank::world_size]]
    copies = train[is_copy & train["source_id"].isin(set(originals["clip_id"])).to_numpy()]
    position = pd.Series(np.arange(len(originals)), index=originals["clip_id"].to_numpy())
    copies = copies.assign(_source=position.loc[copies["source_id"].to_numpy()].to_numpy())
    copies = copies.sort_values(["_source", "aug_copy"], kind="stable")
    offsets = np.zeros(len(originals) + 1, dtype=np.int64)
    np.cumsum(np.bincount(copies["_source"].to_numpy(), minlength=len(originals)), out=offsets[1:])
    return originals, copies, offsets


def load_trial_data(uri: str, test_fold: int, valid_fold: int | None, *, split: str = "nested",
                    max_train_rows: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                    version: str | None = None, cache_gb: float = 0.0) -> TrialData:
    """The trial's splits: train (this rank's share of the original clips, canonical order, then their
    augmented copies), valid (a whole fold; none for ``split="paper"``) and test (the whole test fold).

    ``max_train_rows`` caps the original training clips (smoke runs): a seeded subset. ``cache_gb`` caps the
    node's data cache (0: ``RETHINK_AUDIO_DATA_CACHE_GB``, else half its disk).
    """
    mapped = open_version(uri, version, cache_gb)
    rows = mapped.rows.assign(row=np.arange(len(mapped.rows)))
    splits = fold_splits(rows, test_fold, valid_fold, split)  # asserts the splits are disjoint
    originals, copies, offsets = _train_rows(splits.train, max_train_rows, seed, rank, world_size)
    train = pd.concat([originals, copies.drop(columns="_source")])
    return TrialData(mapped.specs, train["row"].to_numpy(np.int64), train["label"].to_numpy(np.int64),
                     originals["clip_id"].tolist(), offsets,
                     _eval_split(splits.valid) if split == "nested" else None, _eval_split(splits.test))
