"""Cross-validation splits as a pure function: rows + test fold + split mode -> disjoint train / valid / test.

Two split modes (``orchestrator.config.SPLIT_MODES``):

* ``nested``: validation is a whole fold that is neither train nor test, so epoch and hyper-parameter
  choices never see the test fold (train = k-2 folds: ESC-50 1,200 clips).
* ``paper``: the paper's protocol, train on every fold but the test fold (ESC-50 1,600 clips), no
  validation split; the paper then reads its number off the test curve (``best_epoch``).

Augmented copies (rows whose ``source_id`` differs from ``clip_id``) only ever join train, and only when
their source clip is in a training fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class Splits:
    """Row tables of one cross-validation split."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    test_fold: int | str
    valid_fold: int | str | None  # None: split "paper" has no validation fold


def default_valid_fold(folds: list[int], test_fold: int) -> int:
    """The fold after the test fold, cyclically (ESC-50: test 5 -> valid 1)."""
    ordered = sorted(folds)
    return ordered[(ordered.index(test_fold) + 1) % len(ordered)]


@dataclass(frozen=True)
class FoldRoles:
    """Which folds a trial trains on, validates on (none for split "paper") and tests on."""

    train: tuple[int, ...]
    valid: tuple[int, ...]
    test: int


def fold_roles(folds: list[int], test_fold: int, valid_fold: int | None = None, split: str = "nested") -> FoldRoles:
    """The one place that decides fold roles: nested = train on k-2 folds, valid = ``valid_fold`` (default:
    the fold after the test fold), test = ``test_fold``; paper = train on every fold but the test fold."""
    folds = sorted(int(f) for f in folds)
    if test_fold not in folds:
        raise ConfigError(f"test fold {test_fold} is not one of the dataset's folds {folds}")
    if split == "paper":
        if valid_fold is not None:
            raise ConfigError(f"split 'paper' has no validation fold, but valid fold {valid_fold} was given")
        if len(folds) < 2:
            raise ConfigError(f"split 'paper' needs >= 2 folds (train, test); the dataset's folds are {folds}")
        return FoldRoles(tuple(f for f in folds if f != test_fold), (), test_fold)
    if split != "nested":
        raise ConfigError(f"split must be 'nested' or 'paper', got {split!r}")
    if len(folds) < 3:
        raise ConfigError(f"split 'nested' needs >= 3 folds (train, valid, test); the dataset's folds are {folds}: "
                          f"use split 'paper' (train on every fold but the test fold)")
    valid_fold = default_valid_fold(folds, test_fold) if valid_fold is None else valid_fold
    if valid_fold == test_fold or valid_fold not in folds:
        raise ConfigError(f"valid fold {valid_fold} must be one of {folds} other than the test fold {test_fold}")
    return FoldRoles(tuple(f for f in folds if f not in (test_fold, valid_fold)), (valid_fold,), test_fold)


def _originals(frame: pd.DataFrame) -> pd.Series:
    if "source_id" not in frame:
        return pd.Series(True, index=frame.index)
    return frame["source_id"] == frame["clip_id"]


def fold_splits(rows: pd.DataFrame, test_fold: int, valid_fold: int | None = None, split: str = "nested") -> Splits:
    """The rows of :func:`fold_roles`: train = the training folds (with augmented copies), valid = the valid
    fold (empty for ``split="paper"``), test = the test fold; augmented copies never leave train.

    ``rows`` needs ``clip_id`` and ``fold``; ``source_id`` marks augmented copies when present.
    """
    roles = fold_roles(rows["fold"].unique().tolist(), test_fold, valid_fold, split)
    original = _originals(rows)
    splits = Splits(
        train=rows[rows["fold"].isin(roles.train)].reset_index(drop=True),
        valid=rows[rows["fold"].isin(roles.valid) & original].reset_index(drop=True),
        test=rows[(rows["fold"] == test_fold) & original].reset_index(drop=True),
        test_fold=test_fold,
        valid_fold=roles.valid[0] if roles.valid else None,
    )
    assert_disjoint(splits)
    return splits


def assert_disjoint(splits: Splits) -> None:
    """No clip, and no source clip of an augmented copy, may appear in two splits."""
    names = ("train", "valid", "test")
    tables = (splits.train, splits.valid, splits.test)
    for i in range(3):
        for j in range(i + 1, 3):
            for column in ("clip_id", "source_id"):
                if column not in tables[i]:
                    continue
                shared = set(tables[i][column]) & set(tables[j][column])
                if shared:
                    raise AssertionError(
                        f"{names[i]} and {names[j]} share {len(shared)} {column}(s), e.g. {sorted(shared)[:3]}"
                    )
