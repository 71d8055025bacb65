"""The paper's Section III.B as a table: which input representation (log spectrogram, log-mel, MFCC,
gammatone; 1 or 3 channels) gives the best accuracy for one model, each beside log-mel, paired.

A row is one feature set (``features``: the dataset card's kind and channel count, e.g. ``mfcc 1ch``) for one
(dataset, model, init, method, split, recipe): mean ± std over its runs under each protocol, and its paired
difference to log-mel with the same channel count over the (fold, seed) runs both have (the split's own
epoch choice: valid_selected for nested, best_epoch for paper). Built only when some such configuration was
run on two or more feature sets (``plans/representations.yaml``).
"""

from __future__ import annotations

import pandas as pd

from orchestrator.study import PROTOCOLS, SELECTED
from analysis.render import Table, dataset_label, fmt_mean_std
from analysis.stats import (PAIRING_NOTE, Comparison, count_columns, diff_columns, fmt_paired, from_columns,
                            paired_difference, runs)

NAME, TITLE = "table_representations", "Input representation vs accuracy (the paper's Section III.B)"
# what a representation is compared within (never across recipes or code versions)
CONFIG = ["dataset_name", "model", "init", "method", "split", "recipe", "code_version"]
KIND_ORDER = {"logspec": 0, "logmel": 1, "mfcc": 2, "gammatone": 3}


def _order(features: str) -> tuple[int, str]:
    kind, _, channels = features.partition(" ")
    return KIND_ORDER.get(kind, 9), channels


def _reference(features: str) -> str:
    """Log-mel with the same channel count: ``mfcc 1ch`` -> ``logmel 1ch``."""
    return "logmel " + features.partition(" ")[2]


def _row(group: pd.DataFrame, features: str):
    """One feature set's numbers: per protocol mean ± std (%), runs, and the paired difference to log-mel."""
    arm = group[group["features"] == features]
    first = arm.iloc[0]
    row = {k: first[k] for k in CONFIG} | {"features": features, "recipe_label": first["recipe_label"],
                                           "trials": len(arm), "seeds": arm["seed"].nunique(),
                                           "folds": arm["fold"].nunique(),
                                           "train_seconds": arm["train_seconds"].mean()}
    for p in PROTOCOLS:
        row[f"{p}_mean"], row[f"{p}_std"] = arm[p].mean() * 100, arm[p].std() * 100
    selected = SELECTED.get(first["split"], "valid_selected")
    reference = group[group["features"] == _reference(features)]
    diff = paired_difference(runs(arm, selected), runs(reference, selected)) \
        if features != _reference(features) and not reference.empty else None
    row["versus"] = _reference(features) if diff is not None else ""
    return row | (diff_columns("vs_logmel", diff) if diff is not None else {}), diff


def table_representations(results: pd.DataFrame) -> Table:
    """The representation table; a note-only table when no configuration was run on several feature sets."""
    data = results[results["features"].notna()] if "features" in results else results.iloc[0:0]
    rows, comparisons = [], []
    for _, group in data.groupby(CONFIG, sort=True, dropna=False):
        if group["features"].nunique() < 2:
            continue
        for features in sorted(group["features"].unique(), key=_order):
            row, diff = _row(group, features)
            rows.append(row)
            if diff is not None and diff.pairs:
                where = f"{dataset_label(row['dataset_name'])} {row['model']} {row['init']} {row['split']}"
                comparisons.append(Comparison(f"Representations, {where}: {features} − {row['versus']}",
                                              {SELECTED.get(row["split"], "valid_selected"): diff}))
    if not rows:
        return Table.nothing(NAME, TITLE, "no configuration was run on two or more feature sets "
                                          "(plans/representations.yaml runs them)")
    numbers = count_columns(pd.DataFrame(rows))
    display = pd.DataFrame([_display(r) for _, r in numbers.iterrows()])
    note = ("Each feature set is its own dataset version of the same clips (same folds); features: the card's "
            "kind and channels (1ch: the 25 ms / 10 ms channel only). Mean ± std (ddof 1) over seeds and folds, "
            "in %. Δ vs logmel: against log-mel with the same channels, under the split's own epoch choice "
            f"(valid_selected for nested, best_epoch for paper): {PAIRING_NOTE} train s: mean training "
            "seconds per trial.")
    return Table(NAME, TITLE, display, numbers, note, comparisons=comparisons)


def _display(r) -> dict:
    row = {"dataset": dataset_label(r["dataset_name"]), "model": r["model"], "init": r["init"],
           "split": r["split"], "features": r["features"]}
    for p in PROTOCOLS:
        row[p] = fmt_mean_std(r[f"{p}_mean"], r[f"{p}_std"])
    pairs = r.get("vs_logmel_pairs")
    row["Δ vs logmel"] = fmt_paired(from_columns(r, "vs_logmel")) if pairs is not None and not pd.isna(pairs) else ""
    row["train s"] = "—" if pd.isna(r["train_seconds"]) else f"{r['train_seconds']:.1f}"
    row["runs"] = f"{int(r['trials'])} ({int(r['seeds'])} seeds × {int(r['folds'])} folds)"
    return row
