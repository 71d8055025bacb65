"""Cross-validation splits as a pure function: rows + test fold + split mode -> disjoint train / valid / test.

Which folds play which role is decided by :func:`orchestrator.study.fold_roles` (torch- and pandas-free, so
the cost preview uses it too); this module applies it to rows. Two split modes (``orchestrator.study.SPLIT_MODES``):

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

from orchestrator.study import fold_roles


@dataclass(frozen=True)
class Splits:
    """Row tables of one cross-validation split."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    test_fold: int | str
    valid_fold: int | str | None  # None: split "paper" has no validation fold


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
