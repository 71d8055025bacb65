"""Deep ensembles: averaging softmax over seeds, with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.ensembles import accuracy, average_softmax, ensemble_per_fold, ensemble_summary

CONFIG = {"dataset": "esc50", "model": "densenet201", "init": "pretrained", "loss": "ce", "mask": False,
          "split": "nested", "recipe": "r1", "code_version": "unknown", "method": "ce", "fold": 1,
          "protocol": "valid_selected"}


def member(seed: int, probs, labels, clip_ids=None, **overrides) -> pd.DataFrame:
    """Prediction rows of one trial (as load_predictions returns them)."""
    n = len(labels)
    return pd.DataFrame({"trial_id": f"t{seed}-{overrides.get('fold', 1)}", "seed": seed,
                         "clip_id": clip_ids or [f"c{i}" for i in range(n)], "label": labels, "epoch": 3,
                         "probs": [np.asarray(p, np.float32) for p in probs]} | CONFIG | overrides)


def test_ensemble_of_identical_predictions_is_the_single_model():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=40)
    labels = rng.integers(0, 5, size=40)
    single = accuracy(probs, labels)
    frames = [member(seed, probs, labels) for seed in range(5)]
    ids, got_labels, mean = average_softmax(frames)
    assert np.allclose(mean, probs[np.argsort([f"c{i}" for i in range(40)])], atol=1e-6)
    per_fold = ensemble_per_fold(pd.concat(frames))
    assert per_fold.loc[0, "accuracy"] == pytest.approx(single)
    assert per_fold.loc[0, "single_mean"] == pytest.approx(single)
    assert per_fold.loc[0, "members"] == 5 and per_fold.loc[0, "seeds"] == "0,1,2,3,4"


def test_complementary_members_fix_each_other():
    # 4 clips, labels 0 0 1 1. Seed A is sure and right on clips 0-1 (0.9), unsure and wrong on 2-3 (0.4 on
    # the label); seed B the mirror image. Each alone: 2/4. Averaged: 0.65 on the label everywhere: 4/4.
    labels = [0, 0, 1, 1]
    a = [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]
    b = [[0.4, 0.6], [0.4, 0.6], [0.1, 0.9], [0.1, 0.9]]
    per_fold = ensemble_per_fold(pd.concat([member(0, a, labels), member(1, b, labels)]))
    assert per_fold.loc[0, "single_mean"] == pytest.approx(0.5)
    assert per_fold.loc[0, "accuracy"] == pytest.approx(1.0)
    _, _, mean = average_softmax([member(0, a, labels), member(1, b, labels)])
    assert np.allclose(mean[np.arange(4), labels], 0.65)


def test_summary_over_folds_and_clip_alignment():
    # fold 1: members agree (3/4 right); fold 2: member order of clips differs but clips align by id
    labels = [0, 1, 0, 1]
    right3 = [[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.8, 0.2]]
    frames = [member(s, right3, labels) for s in (0, 1)]
    shuffled = member(1, right3[::-1], labels[::-1], clip_ids=["c3", "c2", "c1", "c0"], fold=2)
    frames += [member(0, right3, labels, fold=2), shuffled]
    summary = ensemble_summary(ensemble_per_fold(pd.concat(frames)))
    assert summary.loc[0, ["folds", "members"]].tolist() == [2, 2]
    assert summary.loc[0, "mean"] == pytest.approx(0.75) and summary.loc[0, "std"] == pytest.approx(0.0)


def test_members_with_different_labels_are_rejected():
    with pytest.raises(ValueError, match="disagree on clip labels"):
        average_softmax([member(0, [[1, 0]], [0]), member(1, [[1, 0]], [1])])
