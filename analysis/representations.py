"""The paper's Section III.B as a table: which input gives the best accuracy for one model, each input beside
the paper's log-mel with the same channel count, paired.

An input is a feature set (``features``: the dataset card's kind and channels, and its mel scale or filter
normalisation when not the paper's, e.g. ``mfcc 1ch``, ``logmel 3ch slaney``, ``logmel mono3x``) with the
trial's input scaling (``standardize``: none, channel, band). A row is one input for one (dataset, model,
init, method, split, recipe apart from the scaling): mean ± std over its runs under each protocol, and its
paired difference to the paper's input with the same channel count (``logmel 1ch`` or ``logmel 3ch``, HTK,
unscaled; ``mono3x`` is compared with ``logmel 3ch``) over the (fold, seed) runs both have (the split's own
epoch choice: valid_selected for nested, best_epoch for paper). Built only when some such configuration was
run on two or more inputs (``plans/representations*.yaml``).
"""

from __future__ import annotations

import pandas as pd

from orchestrator.study import PROTOCOLS, SELECTED
from analysis.render import Table, dataset_label, fmt_mean_std
from analysis.stats import (PAIRING_NOTE, Comparison, count_columns, diff_columns, fmt_paired, from_columns,
                            paired_difference, runs)

NAME, TITLE = "table_representations", "Input representation vs accuracy (the paper's Section III.B)"
# what an input is compared within: the recipe apart from the input scaling (analysis.collect's input_recipe),
# never across code versions
CONFIG = ["dataset_name", "model", "init", "method", "split", "input_recipe", "code_version"]
KIND_ORDER = {"logspec": 0, "logmel": 1, "mfcc": 2, "gammatone": 3}
SCALING_ORDER = {"none": 0, "channel": 1, "band": 2}
SCALING_LABEL = {"none": "", "channel": " · std per channel", "band": " · std per band"}


def _input(row) -> str:
    """``logmel 3ch`` (as the features are), ``logmel 3ch · std per band`` (standardised)."""
    return row["features"] + SCALING_LABEL.get(row["standardize"], f" · std {row['standardize']}")


def _order(arm: tuple[str, str]) -> tuple:
    features, scaling = arm
    kind, _, rest = features.partition(" ")
    channels, _, variant = rest.partition(" ")
    return KIND_ORDER.get(kind, 9), channels.replace("mono3x", "3ch~"), variant, SCALING_ORDER.get(scaling, 9)


def _reference(features: str) -> tuple[str, str]:
    """The paper's input with the same channel count, unscaled: ``mfcc 1ch`` -> ``logmel 1ch``; ``logmel 3ch
    slaney`` and ``logmel mono3x`` -> ``logmel 3ch``."""
    channels = features.split(" ")[1]
    return "logmel " + ("3ch" if channels == "mono3x" else channels), "none"


def _row(group: pd.DataFrame, arm: tuple[str, str]):
    """One input's numbers: per protocol mean ± std (%), runs, and the paired difference to the paper's."""
    rows = group[(group["features"] == arm[0]) & (group["standardize"] == arm[1])]
    first = rows.iloc[0]
    row = {k: first[k] for k in CONFIG} | {"features": arm[0], "standardize": arm[1], "input": _input(first),
                                           "recipe_label": first["recipe_label"], "trials": len(rows),
                                           "seeds": rows["seed"].nunique(), "folds": rows["fold"].nunique(),
                                           "train_seconds": rows["train_seconds"].mean()}
    for p in PROTOCOLS:
        row[f"{p}_mean"], row[f"{p}_std"] = rows[p].mean() * 100, rows[p].std() * 100
    selected = SELECTED.get(first["split"], "valid_selected")
    versus = _reference(arm[0])
    reference = group[(group["features"] == versus[0]) & (group["standardize"] == versus[1])]
    diff = paired_difference(runs(rows, selected), runs(reference, selected)) \
        if arm != versus and not reference.empty else None
    row["versus"] = versus[0] if diff is not None else ""
    return row | (diff_columns("vs_logmel", diff) if diff is not None else {}), diff


def _arms(group: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(group["features"], group["standardize"])), key=_order)


def table_representations(results: pd.DataFrame) -> Table:
    """The representation table; a note-only table when no configuration was run on several inputs."""
    data = results[results["features"].notna()] if "features" in results else results.iloc[0:0]
    rows, comparisons = [], []
    for _, group in data.groupby(CONFIG, sort=True, dropna=False):
        if len(_arms(group)) < 2:
            continue
        for arm in _arms(group):
            row, diff = _row(group, arm)
            rows.append(row)
            if diff is not None and diff.pairs:
                where = f"{dataset_label(row['dataset_name'])} {row['model']} {row['init']} {row['split']}"
                comparisons.append(Comparison(f"Representations, {where}: {row['input']} − {row['versus']}",
                                              {SELECTED.get(row["split"], "valid_selected"): diff}))
    if not rows:
        return Table.nothing(NAME, TITLE, "no configuration was run on two or more inputs "
                                          "(plans/representations*.yaml run them)")
    numbers = count_columns(pd.DataFrame(rows))
    display = pd.DataFrame([_display(r) for _, r in numbers.iterrows()])
    note = ("Each feature set is its own dataset version of the same clips (same folds); features: the card's "
            "kind and channels (1ch: the 25 ms / 10 ms channel only; mono3x: that channel 3 times), then "
            "'slaney' (Slaney mel scale, area-normalised triangles, zero-padded frames) or 'area-norm' (the "
            "paper's HTK scale, area-normalised triangles); 'std per channel / band': inputs standardised with "
            "the training folds' mean and std per channel / per (channel, mel bin). Mean ± std (ddof 1) over "
            "seeds and folds, in %. Δ vs logmel: against the paper's log-mel (HTK, unstandardised) with the same "
            "channels, under the split's own epoch choice (valid_selected for nested, best_epoch for paper): "
            f"{PAIRING_NOTE} train s: mean training seconds per trial.")
    return Table(NAME, TITLE, display, numbers, note, comparisons=comparisons)


def _display(r) -> dict:
    row = {"dataset": dataset_label(r["dataset_name"]), "model": r["model"], "init": r["init"],
           "split": r["split"], "input": r["input"]}
    for p in PROTOCOLS:
        row[p] = fmt_mean_std(r[f"{p}_mean"], r[f"{p}_std"])
    pairs = r.get("vs_logmel_pairs")
    row["Δ vs logmel"] = fmt_paired(from_columns(r, "vs_logmel")) if pairs is not None and not pd.isna(pairs) else ""
    row["train s"] = "—" if pd.isna(r["train_seconds"]) else f"{r['train_seconds']:.1f}"
    row["runs"] = f"{int(r['trials'])} ({int(r['seeds'])} seeds × {int(r['folds'])} folds)"
    return row
