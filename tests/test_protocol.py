"""The paper's protocol on an ESC-50-layout fixture: split modes and the per-epoch augmented draw."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis.collect import load_results
from analysis.tables import table_pretrained_vs_random
from layouts import make_esc50
from orchestrator.config import AugmentConfig, FeatureConfig, OptimConfig, TrialConfig
from orchestrator.errors import ConfigError
from orchestrator.preprocess import PreprocessRequest, preprocess
from orchestrator.trial import prepare_trial, run_trial, trial_id
from orchestrator.trial_data import load_trial_data

CLIPS_PER_FOLD = 4
COPIES = 3


@pytest.fixture(scope="module")
def esc50_augmented(ray_local, tmp_path_factory) -> str:
    """A 5-fold ESC-50 layout (4 clips per fold, 2 s of real speech each) with 3 offline augmented copies
    per clip (pitch shift + time stretch), at 3 x 32 x 32."""
    root = make_esc50(tmp_path_factory.mktemp("esc50") / "ESC-50-master", clips_per_fold=CLIPS_PER_FOLD,
                      seconds=2.0, rate=22050)
    out = tmp_path_factory.mktemp("datasets")
    return preprocess(PreprocessRequest("esc50", str(root), str(out), features=FeatureConfig(height=32, width=32),
                                        augment=AugmentConfig(copies=COPIES))).uri


def trial(data: str, **overrides) -> TrialConfig:
    base = dict(data=data, model="efficientnet_lite0", init="random", fold=5, seed=3,
                optim=OptimConfig(epochs=2, lr=1e-3, batch_size=8))
    return TrialConfig(**(base | overrides))


def test_paper_split_trains_on_four_folds_and_nested_on_three(esc50_augmented, tmp_path):
    paper, nested = trial(esc50_augmented, split="paper"), trial(esc50_augmented, split="nested")
    assert prepare_trial(paper, str(tmp_path)).folds == {"train": [1, 2, 3, 4], "valid": [], "test": [5]}
    assert prepare_trial(nested, str(tmp_path)).folds == {"train": [2, 3, 4], "valid": [1], "test": [5]}
    assert trial_id(paper) != trial_id(nested)
    for cfg, train_clips in ((paper, 4 * CLIPS_PER_FOLD), (nested, 3 * CLIPS_PER_FOLD)):
        run_trial(cfg, str(tmp_path))
        folder = tmp_path / trial_id(cfg)
        config = json.loads((folder / "config.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        epochs = pq.read_table(folder / "epochs.parquet").to_pandas()
        predictions = pq.read_table(folder / "predictions.parquet").to_pandas()
        assert config["trial"]["split"] == cfg.split
        # every epoch: each training clip once as is + one augmented draw
        assert epochs["train_samples"].tolist() == [2 * train_clips] * 2
        if cfg.split == "paper":
            assert "valid_selected" not in summary and epochs["valid_acc"].isna().all()
            assert set(predictions["protocol"]) == {"best_epoch", "last_epoch"}
            assert summary["best_epoch"] == epochs["test_acc"].max()
        else:
            assert {"valid_selected", "best_epoch", "last_epoch"} <= set(summary)
            assert set(predictions["protocol"]) == {"valid_selected", "last_epoch"}
        assert (predictions["fold"] == 5).all() and not predictions["clip_id"].str.contains("#aug").any()
    # the tables label both split modes and never pool them
    results = load_results(str(tmp_path), write=False)
    assert sorted(results["split"]) == ["nested", "paper"]
    table = table_pretrained_vs_random(results).display
    assert sorted(table["split"]) == ["nested", "paper"]
    paper_row = table[table["split"] == "paper"].iloc[0]
    assert paper_row["valid_selected"] == "—"


def test_each_epoch_draws_a_fresh_augmented_copy_that_never_reaches_valid_or_test(esc50_augmented):
    data = load_trial_data(esc50_augmented, test_fold=5, valid_fold=None, seed=3)
    n = data.originals
    assert n == 3 * CLIPS_PER_FOLD and len(data.train_labels) == n * (1 + COPIES)
    assert (np.diff(data.copy_offsets) == COPIES).all()
    for split in (data.valid, data.test):
        assert not any("#aug" in c for c in split.clip_ids)  # augmented rows only ever train
    epochs = [data.epoch_rows("draw", seed=3, epoch=e) for e in range(1, 9)]
    for rows in epochs:
        assert len(rows) == 2 * n and (rows[:n] == np.arange(n)).all()  # every original once ...
        copy_of = np.searchsorted(data.copy_offsets, rows[n:] - n, side="right") - 1
        assert (copy_of == np.arange(n)).all()  # ... plus exactly one copy of each
    drawn = np.stack([rows[n:] for rows in epochs])  # (epochs, clips)
    assert (np.array([len(set(col)) for col in drawn.T]) >= 2).all()  # a different variant across epochs
    assert (drawn[0] != drawn[1]).any()
    # a pure function of (seed, epoch, clip): the same on a rerun, another with another seed
    assert (data.epoch_rows("draw", 3, 4) == epochs[3]).all()
    assert not all((data.epoch_rows("draw", 4, e) == epochs[e - 1]).all() for e in range(1, 9))
    assert len(data.epoch_rows("all", 3, 1)) == n * (1 + COPIES) and len(data.epoch_rows("none", 3, 1)) == n


def test_draw_is_the_same_for_a_clip_whatever_the_rank(esc50_augmented):
    whole = load_trial_data(esc50_augmented, 5, None, split="paper", seed=3)
    ranks = [load_trial_data(esc50_augmented, 5, None, split="paper", seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert sorted(ranks[0].train_clip_ids + ranks[1].train_clip_ids) == sorted(whole.train_clip_ids)

    def drawn_copy(data, epoch):  # clip id -> the spectrogram of the copy it trains on this epoch
        rows = data.epoch_rows("draw", 3, epoch)[data.originals:]
        return {c: data.specs[data.train_rows[r]].tobytes() for c, r in zip(data.train_clip_ids, rows)}

    for epoch in (1, 2):
        assert drawn_copy(ranks[0], epoch) | drawn_copy(ranks[1], epoch) == drawn_copy(whole, epoch)


def test_split_modes_reject_what_they_cannot_do(esc50_augmented, tmp_path):
    with pytest.raises(ConfigError, match="split 'paper' has no validation fold"):
        trial(esc50_augmented, split="paper", valid_fold=1)
    with pytest.raises(ConfigError, match="split must be one of"):
        trial(esc50_augmented, split="paperish")
    with pytest.raises(ConfigError, match="augmented must be one of"):
        trial(esc50_augmented, augmented="sometimes")
