"""Fold splits: disjoint train/valid/test, valid never the test fold, augmented copies only in train."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.datasets import load_manifest
from orchestrator.datasets.folds import Splits, assert_disjoint, fold_splits
from orchestrator.study import FoldRoles, fold_roles
from orchestrator.errors import ConfigError


def with_augmented_copies(manifest: pd.DataFrame, copies: int = 2) -> pd.DataFrame:
    """Rows as preprocessing writes them: originals plus ``copies`` augmented rows per clip."""
    base = manifest.assign(source_id=manifest["clip_id"])
    augmented = [base.assign(clip_id=base["clip_id"] + f"#aug{k}") for k in range(copies)]
    return pd.concat([base, *augmented], ignore_index=True)


@pytest.mark.parametrize("test_fold", [1, 2, 3, 4, 5, 6])
def test_every_speaker_fold_gives_disjoint_splits(fsdd_root, test_fold):
    rows = with_augmented_copies(load_manifest("fsdd", fsdd_root))
    s = fold_splits(rows, test_fold)
    assert s.valid_fold == test_fold % 6 + 1
    assert set(s.test["fold"]) == {test_fold} and set(s.valid["fold"]) == {s.valid_fold}
    assert not set(s.train["fold"]) & {test_fold, s.valid_fold}
    # augmented copies: 2 per training clip in train, none in valid or test
    assert (s.valid["source_id"] == s.valid["clip_id"]).all() and (s.test["source_id"] == s.test["clip_id"]).all()
    assert len(s.train) == 400 * 3 and len(s.valid) == len(s.test) == 100
    # no speaker (group) in two splits
    assert not set(s.train["group"]) & set(s.test["group"])
    assert not set(s.valid["group"]) & set(s.test["group"])


def test_explicit_valid_fold_and_bad_folds():
    rows = pd.DataFrame({"clip_id": [f"c{i}" for i in range(10)], "fold": [1, 2, 3, 4, 5] * 2})
    s = fold_splits(rows, test_fold=2, valid_fold=5)
    assert set(s.valid["fold"]) == {5} and set(s.train["fold"]) == {1, 3, 4}
    with pytest.raises(ConfigError, match="test fold 9 is not one of the dataset.s folds"):
        fold_splits(rows, 9)
    with pytest.raises(ConfigError, match="must be one of .* other than the test fold"):
        fold_splits(rows, 2, valid_fold=2)
    with pytest.raises(ConfigError, match="needs >= 3 folds"):
        fold_splits(rows[rows["fold"] <= 2], 1)


def test_fold_roles_known_answers_and_the_rows_follow_them():
    assert fold_roles([1, 2, 3, 4, 5], 5) == FoldRoles(train=(2, 3, 4), valid=(1,), test=5)  # valid wraps round
    assert fold_roles([3, 1, 2], 1, split="paper") == FoldRoles(train=(2, 3), valid=(), test=1)
    with pytest.raises(ConfigError, match="split 'paper' needs >= 2 folds"):
        fold_roles([1], 1, split="paper")
    with pytest.raises(ConfigError, match="needs >= 3 folds .* use split 'paper'"):
        fold_roles([1, 2], 1)
    rows = pd.DataFrame({"clip_id": [f"c{i}" for i in range(10)], "fold": [1, 2, 3, 4, 5] * 2})
    for split in ("nested", "paper"):
        roles, s = fold_roles([1, 2, 3, 4, 5], 3, split=split), fold_splits(rows, 3, split=split)
        assert (set(s.train["fold"]), set(s.valid["fold"]), set(s.test["fold"])) == (
            set(roles.train), set(roles.valid), {roles.test})


def test_assert_disjoint_catches_leaks_through_augmented_copies():
    train = pd.DataFrame({"clip_id": ["a#aug0"], "source_id": ["a"]})
    test = pd.DataFrame({"clip_id": ["a"], "source_id": ["a"]})
    with pytest.raises(AssertionError, match="train and test share 1 source_id"):
        assert_disjoint(Splits(train, test.iloc[:0], test, 1, 2))
