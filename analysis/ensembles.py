"""Deep ensembles from stored predictions: average the softmax of the M seeds of one configuration.

For each configuration (dataset, model, init, loss, mask, split, recipe: ``CONFIG_KEYS``) and test fold, the
members are the trials that differ only in seed, so trials with another recipe or split mode never join.
Their per-clip softmax rows (``predictions.parquet``) are averaged and the argmax is scored against the
labels, per stored protocol: ``last_epoch`` and the selected epoch, which is ``valid_selected`` for split
"nested" and ``best_epoch`` for split "paper" (no validation fold: each member's epoch is its best on the
test fold, as in the paper). Fold scores are then summarised as mean ± std over folds.

Members are aligned by ``clip_id``; if a member lacks some clips (it should not), only the clips every
member has are scored and ``clips`` says how many.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from analysis.collect import CONFIG_KEYS

PER_FOLD_COLUMNS = [*CONFIG_KEYS, "method", "fold", "protocol", "members", "seeds", "clips", "accuracy",
                    "single_mean"]
SUMMARY_COLUMNS = [*CONFIG_KEYS, "method", "protocol", "folds", "members", "mean", "std", "single_mean"]


def average_softmax(members: Sequence[pd.DataFrame]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(clip ids, labels, mean softmax (N, C)) over ``members``: frames with clip_id, label, probs.

    Clips are those every member has, in sorted order; labels must agree across members.
    """
    indexed = [m.drop_duplicates("clip_id").set_index("clip_id") for m in members]
    common = sorted(set.intersection(*(set(m.index) for m in indexed)))
    labels = indexed[0].loc[common, "label"].to_numpy(np.int64)
    for member in indexed[1:]:
        if not np.array_equal(member.loc[common, "label"].to_numpy(np.int64), labels):
            raise ValueError("ensemble members disagree on clip labels: their records are not from one dataset")
    probs = np.stack([_probs(m.loc[common, "probs"]) for m in indexed])  # (M, N, C)
    return common, labels, probs.mean(axis=0)


def _probs(column: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(p, dtype=np.float64) for p in column.to_numpy()])


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of softmax rows (ties go to the lower class index, as numpy's argmax does)."""
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def ensemble_per_fold(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, fold, protocol): ensemble accuracy and the members' mean accuracy.

    ``predictions`` is :func:`analysis.collect.load_predictions` output.
    """
    if predictions.empty:
        return pd.DataFrame(columns=PER_FOLD_COLUMNS)
    rows = []
    for key, group in predictions.groupby([*CONFIG_KEYS, "method", "fold", "protocol"], sort=True):
        members = [g for _, g in group.groupby("trial_id", sort=True)]
        ids, labels, mean = average_softmax(members)
        singles = [accuracy(_probs(m.set_index("clip_id").loc[ids, "probs"]), labels) for m in members]
        seeds = sorted(int(s) for s in group["seed"].unique())
        rows.append(dict(zip([*CONFIG_KEYS, "method", "fold", "protocol"], key)) | {
            "members": len(members), "seeds": ",".join(map(str, seeds)), "clips": len(ids),
            "accuracy": accuracy(mean, labels), "single_mean": float(np.mean(singles))})
    return pd.DataFrame(rows, columns=PER_FOLD_COLUMNS)


def ensemble_summary(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (ddof 1) over folds of the ensemble accuracy, per configuration and protocol."""
    if per_fold.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    keys = [*CONFIG_KEYS, "method", "protocol"]
    summary = per_fold.groupby(keys, sort=True).agg(
        folds=("fold", "nunique"), members=("members", "min"), mean=("accuracy", "mean"),
        std=("accuracy", "std"), single_mean=("single_mean", "mean"))
    return summary.reset_index()[SUMMARY_COLUMNS]
