"""The paper's tables from the results table, each under all three protocols, selection bias shown.

* Table I (:func:`table_pretrained_vs_random`): pretrained vs random, mean ± std over seeds and folds.
* Table II (:func:`table_ensembles`): single model (mean ± std over seeds) vs deep ensemble of the seeds.
* Table III (:func:`table_published`): ours beside published rows (:mod:`analysis.references`).
* Ablations (:func:`table_ablation`): model cutoff (``cutoff:K``), weight fusion, weight freezing.

Accuracies are in %. Every table shows ``best_epoch`` (the paper's protocol: the test fold picks the
epoch), ``last_epoch`` and ``valid_selected`` (a validation fold picks it) and the column
``best − valid_selected``: the mean per-trial gap, i.e. how much letting the test fold choose inflates the
number. Rows appear only where trials exist; a table without any is rendered with a note saying so.

Trials are only ever averaged with trials of the same split mode and recipe (``GROUP``; see
:mod:`analysis.recipes`). Every row names its split: "nested" (a validation fold) or "paper" (the paper's
protocol: train on every other fold, no validation fold, so "—" for valid_selected and the gap). When the
results hold several recipes, a ``recipe`` column says what differs (e.g. ``lr 1e-4 · 70 ep``).
"""

from __future__ import annotations

import pandas as pd

from analysis.collect import PROTOCOLS, SPLIT_PROTOCOLS
from analysis.references import references_for
from analysis.render import Table, dataset_label, fmt_mean_std, fmt_signed

GAP = "best − valid_selected"
GROUP = ["dataset", "model", "method", "split", "recipe"]  # what a row pools over: seeds and folds only
PAIR = ["dataset", "model", "method", "split"]  # pretrained and random rows compared in Table I
SELECTED = {"nested": "valid_selected", "paper": "best_epoch"}  # each split's stored epoch choice
PROTOCOL_NOTE = ("Test-fold accuracy in %. best_epoch: the best test accuracy over epochs (the paper's "
                 "protocol; optimistic, the test fold picks the epoch). last_epoch: after the final epoch. "
                 "valid_selected: at the epoch with the best accuracy on a validation fold that is neither "
                 f"train nor test. '{GAP}': mean per-trial difference, the selection bias of best_epoch. "
                 "split: nested = trained on k-2 folds with a validation fold; paper = trained on the k-1 "
                 "folds that are not the test fold (the paper's protocol), no validation fold, so no "
                 "valid_selected ('—').")
ABLATIONS = {
    "cutoff": ("Model cutoff: blocks after K removed, new head on block K (pretrained)", ("pretrained",)),
    "fusion": ("Weight fusion: pretrained stem + blocks 1..K, random blocks after K", ("pretrained", "random")),
    "freeze": ("Weight freezing: stem + blocks 1..K frozen (BatchNorm statistics too)", ("pretrained",)),
}


# ---------------------------------------------------------------- aggregation


def init_rank(init: str) -> tuple[int, int]:
    """Sort order of init modes: pretrained, random, then fusion/freeze by K, cutoff by K descending."""
    kind, _, k = init.partition(":")
    order = {"pretrained": 0, "random": 1, "fusion": 2, "freeze": 3, "cutoff": 4}
    num = int(k) if k.isdigit() else 0
    return order.get(kind, 9), (-num if kind == "cutoff" else num)


def protocol_stats(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys``: mean and std (ddof 1, in %) of each protocol, the mean best − valid_selected
    gap, and how many trials, seeds and folds went in."""
    data = frame.assign(gap=frame["best_epoch"] - frame["valid_selected"])
    aggs = {f"{p}_{s}": (p, s) for p in PROTOCOLS for s in ("mean", "std")}
    stats = data.groupby(keys, sort=True).agg(**aggs, gap=("gap", "mean"), trials=("trial_id", "count"),
                                               seeds=("seed", "nunique"), folds=("fold", "nunique"))
    percent = [c for c in stats.columns if c.endswith(("_mean", "_std"))] + ["gap"]
    stats[percent] = stats[percent] * 100
    return stats.reset_index()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    order = frame["init"].map(init_rank)
    return frame.assign(_o=order).sort_values([*GROUP, "_o"], kind="stable").drop(columns="_o")


def _runs(row) -> str:
    if pd.isna(row.get("trials")):
        return ""
    seeds, folds = int(row["seeds"]), int(row["folds"])
    return f"{int(row['trials'])} ({seeds} seed{'s' * (seeds > 1)} × {folds} fold{'s' * (folds > 1)})"


def _show_method(frame: pd.DataFrame) -> bool:
    """Show the ``method`` column (loss, +mask) only when the results mix losses or masks."""
    return frame["method"].nunique() > 1


def _show_recipe(frame: pd.DataFrame) -> bool:
    """Show the ``recipe`` column only when the results hold several recipes (their labels differ)."""
    return bool(frame["recipe_label"].fillna("").ne("").any())


def _labelled(numbers: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``numbers`` with each row's recipe label (from the results rows of its recipe)."""
    labels = dict(zip(results["recipe"], results["recipe_label"]))
    return numbers.assign(recipe_label=numbers["recipe"].map(labels).fillna(""))


def _keys(r, show_method: bool, show_recipe: bool) -> dict:
    """The leading display cells of one row: dataset, model, [method], split, [recipe]."""
    row = {"dataset": dataset_label(r["dataset"]), "model": r["model"]}
    row |= {"method": r["method"]} if show_method else {}
    row["split"] = r["split"]
    return row | ({"recipe": r.get("recipe_label") or ""} if show_recipe else {})


def _display_protocols(numbers: pd.DataFrame, label_col: str, show_method: bool,
                       show_recipe: bool = False) -> pd.DataFrame:
    """Formatted rows: keys, the ``label_col`` (init), one column per protocol and the gap."""
    rows = []
    for _, r in numbers.iterrows():
        diff = bool(r.get("difference", False))
        row = _keys(r, show_method, show_recipe)
        row[label_col] = r[label_col]
        for p in PROTOCOLS:
            row[p] = fmt_signed(r[f"{p}_mean"]) if diff else fmt_mean_std(r[f"{p}_mean"], r[f"{p}_std"])
        row[GAP] = fmt_signed(r["gap"])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Table I


def table_pretrained_vs_random(results: pd.DataFrame) -> Table:
    """Table I: pretrained vs random init per dataset and model, with a "pretrained − random" row."""
    name, title = "table1_pretrained_vs_random", "Table I. Pretrained (ImageNet) vs random initialisation"
    data = results[results["init"].isin(["pretrained", "random"])]
    if data.empty:
        return Table.nothing(name, title, "no finished trials with init 'pretrained' or 'random'")
    stats = _labelled(_sorted(protocol_stats(data, [*GROUP, "init"])), data)
    rows = []
    for _, group in stats.groupby(PAIR, sort=False):
        for unit in _comparable(group):
            rows += unit.to_dict("records")
            if sorted(unit["init"]) == ["pretrained", "random"]:
                rows.append(_difference(unit))
    numbers = pd.DataFrame(rows)
    numbers["difference"] = [d is True for d in numbers.get("difference", [None] * len(numbers))]
    numbers[["trials", "seeds", "folds"]] = numbers[["trials", "seeds", "folds"]].astype("Int64")
    display = _display_protocols(numbers, "init", _show_method(data), _show_recipe(data))
    display["runs"] = [_runs(r) for _, r in numbers.iterrows()]
    note = f"Mean ± std (ddof 1) over all seeds and folds of each configuration. {PROTOCOL_NOTE}"
    return Table(name, title, display, numbers, note)


def _comparable(group: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of one (dataset, model, method, split) in which pretrained is compared with random: each
    recipe on its own; or, when the group is one pretrained and one random row whose recipes differ, the
    two together (a plan's own schedule for random init, ``random_optim``: both rows show their recipe)."""
    if group["recipe"].nunique() == 1:
        return [group]
    if sorted(group["init"]) == ["pretrained", "random"]:
        return [group.sort_values("init", key=lambda s: s.map(init_rank), kind="stable")]
    return [unit for _, unit in group.groupby("recipe", sort=False)]


def _difference(group: pd.DataFrame) -> dict:
    """The "pretrained − random" row of one comparable unit (:func:`_comparable`): differences of the means."""
    p, r = (group[group["init"] == i].iloc[0] for i in ("pretrained", "random"))
    row = {k: p[k] for k in GROUP} | {"init": "pretrained − random", "difference": True}
    row["recipe_label"] = p["recipe_label"] if p["recipe"] == r["recipe"] else ""
    for proto in PROTOCOLS:
        row[f"{proto}_mean"], row[f"{proto}_std"] = p[f"{proto}_mean"] - r[f"{proto}_mean"], float("nan")
    row["gap"] = p["gap"] - r["gap"]
    return row


# ---------------------------------------------------------------- Table II


def single_by_seed(results: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Single-model accuracy per configuration: each seed's mean over folds, then mean ± std over seeds (%)."""
    data = results.assign(gap=results["best_epoch"] - results["valid_selected"])
    per_seed = data.groupby([*keys, "seed"], sort=True)[[*PROTOCOLS, "gap"]].mean().reset_index()
    aggs = {f"{p}_{s}": (p, s) for p in PROTOCOLS for s in ("mean", "std")}
    stats = per_seed.groupby(keys, sort=True).agg(**aggs, gap=("gap", "mean"), seeds=("seed", "nunique"))
    percent = [c for c in stats.columns if c != "seeds"]
    stats[percent] = stats[percent] * 100
    counts = results.groupby(keys, sort=True).agg(folds=("fold", "nunique"), trials=("trial_id", "count"))
    return stats.join(counts).reset_index()


def table_ensembles(results: pd.DataFrame, ensembles: pd.DataFrame) -> Table:
    """Table II: single model vs deep ensemble of its seeds, per dataset, model, split, recipe and init.

    ``ensembles`` is :func:`analysis.ensembles.ensemble_summary` output (may be empty).
    """
    name, title = "table2_single_vs_ensemble", "Table II. Single model vs deep ensemble of the seeds"
    if results.empty:
        return Table.nothing(name, title, "no finished trials")
    keys = [*GROUP, "init"]
    numbers = _labelled(_sorted(single_by_seed(results, keys)), results)
    for proto in PROTOCOLS:
        ens = ensembles[ensembles["protocol"] == proto].set_index(keys)[["mean", "std", "members"]] * 100
        joined = numbers.set_index(keys).join(ens.rename(columns=lambda c: f"ensemble_{proto}_{c}"))
        numbers = joined.reset_index()
    numbers["ensemble_gain"] = [r[f"ensemble_{SELECTED[r['split']]}_mean"] - r[f"{SELECTED[r['split']]}_mean"]
                                for _, r in numbers.iterrows()]
    numbers["ensemble_gain_last_epoch"] = numbers["ensemble_last_epoch_mean"] - numbers["last_epoch_mean"]
    numbers = numbers.drop(columns=[c for c in numbers.columns if c.endswith("_members")])
    shown = [p for p in PROTOCOLS if any(p in SPLIT_PROTOCOLS[split] for split in results["split"].unique())]
    display = _ensemble_display(numbers, _show_method(results), _show_recipe(results), shown)
    note = ("Single: each seed's accuracy averaged over folds, then mean ± std (ddof 1) over seeds. "
            "Ensemble: softmax averaged over the seeds per clip, accuracy per fold, mean ± std over folds; "
            "only for the protocols whose predictions trials store: last_epoch, and the selected epoch, i.e. "
            "valid_selected for split nested, best_epoch for split paper (there the test fold picks each "
            "member's epoch, as in the paper). Ensemble gain = ensemble − single under that selected "
            f"protocol. {PROTOCOL_NOTE}")
    return Table(name, title, display, numbers, note)


def _ensemble_display(numbers: pd.DataFrame, show_method: bool, show_recipe: bool,
                      shown: list[str]) -> pd.DataFrame:
    rows = []
    for _, r in numbers.iterrows():
        row = _keys(r, show_method, show_recipe)
        row |= {"init": r["init"], "seeds": str(int(r["seeds"])), "folds": str(int(r["folds"]))}
        row |= {f"single {p}": fmt_mean_std(r[f"{p}_mean"], r[f"{p}_std"]) for p in PROTOCOLS}
        row |= {f"ensemble {p}": fmt_mean_std(r[f"ensemble_{p}_mean"], r[f"ensemble_{p}_std"]) for p in shown}
        row["ensemble gain"] = fmt_signed(r["ensemble_gain"])
        row[f"{GAP} (single)"] = fmt_signed(r["gap"])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Table III


def table_published(results: pd.DataFrame, ensembles: pd.DataFrame) -> Table:
    """Table III: per dataset, the published rows, then ours on the published protocol (split "paper"),
    then our honest numbers (split "nested", where a validation fold picks the epoch)."""
    name, title = "table3_published", "Table III. Our results beside published ones"
    data = results[results["init"].isin(["pretrained", "random"])]
    if data.empty:
        return Table.nothing(name, title, "no finished trials with init 'pretrained' or 'random'")
    rows, cited, unmatched = [], [], []
    for dataset, group in data.groupby("dataset", sort=True):
        refs = references_for(group["dataset_name"].iloc[0])
        rows += [{"dataset": dataset, "method": ref["method"], "split": "", "source": ref["source"],
                  "reference": ref["reference"], "reported": ref["accuracy"]} for ref in refs]
        cited += [r["reference"] for r in refs if r["reference"] not in cited]
        if refs and not group["split"].eq("paper").any():
            unmatched.append(dataset_label(dataset))
        for split in sorted(group["split"].unique(), key=lambda s: s != "paper"):  # like for like first
            rows += _our_rows(group[group["split"] == split], ensembles, _show_recipe(data))
    stat_columns = [f"{p}_{s}" for p in PROTOCOLS for s in ("mean", "std")]
    numbers = pd.DataFrame(rows).reindex(columns=["dataset", "method", "split", "source", "reference", "reported",
                                                  *stat_columns, "gap"])
    published = numbers["reported"].notna()
    display = pd.DataFrame({
        "dataset": numbers["dataset"].map(dataset_label), "method": numbers["method"], "split": numbers["split"],
        "source": numbers["source"], "reported": numbers["reported"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
        **{p: [_cell(r, p) for _, r in numbers.iterrows()] for p in PROTOCOLS},
        GAP: ["" if mine else fmt_signed(v) for v, mine in zip(numbers["gap"], published)],
    })
    note = ("Published rows: the number each work reports (its own protocol, as listed in the paper; the "
            "paper's own rows train on every fold but the test fold and read the test curve's best epoch). "
            "They compare like for like only with our split paper rows, under best_epoch; our split nested "
            "rows are the honest numbers (valid_selected: a validation fold picks the epoch). "
            "Ours: single model = mean ± std over seeds and folds; ensemble = softmax of the seeds averaged, "
            "mean ± std over folds (selected epoch and last_epoch only: the predictions trials store). "
            f"{PROTOCOL_NOTE}")
    if unmatched:
        note += f" No split paper trials for {', '.join(unmatched)}: nothing there is measured like the published rows."
    if cited:
        note += " Sources: " + "; ".join(cited) + "."
    return Table(name, title, display, numbers, note)


def _cell(row, protocol: str) -> str:
    if pd.isna(row.get(f"{protocol}_mean")):
        return "" if pd.notna(row.get("reported")) else "—"
    return fmt_mean_std(row[f"{protocol}_mean"], row.get(f"{protocol}_std"))


def _our_rows(group: pd.DataFrame, ensembles: pd.DataFrame, show_recipe: bool) -> list[dict]:
    """Our single-model and ensemble rows of one dataset and split, per model, method, recipe and init."""
    rows = []
    keys = [*GROUP, "init"]
    stats = _labelled(_sorted(protocol_stats(group, keys)), group)
    for _, s in stats.iterrows():
        label = f"{s['model']} {s['init']}" + (f" {s['method']}" if s["method"] != "ce" else "")
        label += f" · {s['recipe_label']}" if show_recipe and s["recipe_label"] else ""
        mine = {"dataset": s["dataset"], "split": s["split"], "source": "this run"}
        rows.append(mine | {"method": f"{label}, single model", "gap": s["gap"],
                            **{c: s[c] for c in s.index if c.endswith(("_mean", "_std"))}})
        ens = ensembles[(ensembles[keys] == s[keys].to_numpy()).all(axis=1)] if len(ensembles) else ensembles
        if not ens.empty:
            row = mine | {"method": f"{label}, {int(ens['members'].min())}-seed ensemble"}
            for _, e in ens.iterrows():
                row |= {f"{e['protocol']}_mean": 100 * e["mean"], f"{e['protocol']}_std": 100 * e["std"]}
            rows.append(row)
    return rows


# ---------------------------------------------------------------- ablations


def table_ablation(results: pd.DataFrame, kind: str) -> Table:
    """Ablation table for ``kind`` (cutoff, fusion, freeze): each K beside the full pretrained model."""
    subtitle, reference_inits = ABLATIONS[kind]
    name, title = f"table_{kind}", f"Ablation: {subtitle}"
    data = results[results["init_kind"] == kind]
    if data.empty:
        return Table.nothing(name, title, f"no finished trials with init '{kind}:K'")
    configs = data[PAIR].drop_duplicates()  # references of the same split; each recipe stays its own row
    reference = results[results["init"].isin(reference_inits)].merge(configs, on=PAIR)
    numbers = _labelled(_sorted(protocol_stats(pd.concat([reference, data]), [*GROUP, "init"])), results)
    full = numbers[numbers["init"] == "pretrained"].set_index(GROUP)["valid_selected_mean"]
    base = numbers.set_index(GROUP).index.map(lambda k: full.get(k, float("nan")))
    numbers["vs_pretrained"] = numbers["valid_selected_mean"].to_numpy() - base.to_numpy(dtype=float)
    numbers["init"] = numbers["init"].map(lambda i: describe_init(i))
    display = _display_protocols(numbers, "init", _show_method(results), _show_recipe(results))
    display["Δ vs pretrained (valid_selected)"] = numbers["vs_pretrained"].map(fmt_signed).to_numpy()
    display["runs"] = [_runs(r) for _, r in numbers.iterrows()]
    note = f"Mean ± std (ddof 1) over seeds and folds. {PROTOCOL_NOTE}"
    return Table(name, title, display, numbers, note)


def describe_init(init: str) -> str:
    """Readable init mode: ``cutoff:2`` -> ``cutoff:2 (blocks 3-4 removed)``."""
    kind, _, k = init.partition(":")
    if kind == "pretrained":
        return "pretrained (full, 4 blocks)"
    if not k.isdigit():
        return init
    k = int(k)
    if kind == "cutoff":
        removed = "block 4" if k == 3 else f"blocks {k + 1}-4"
        return init if k == 4 else f"{init} ({removed} removed)"
    blocks = {0: "", 1: " + block 1"}.get(k, f" + blocks 1-{k}")
    return f"{init} (stem{blocks} {'frozen' if kind == 'freeze' else 'pretrained'})"


def build_tables(results: pd.DataFrame, ensembles: pd.DataFrame) -> list[Table]:
    """Every table, in report order: I, II, III, then the cutoff, fusion and freeze ablations."""
    return [table_pretrained_vs_random(results), table_ensembles(results, ensembles),
            table_published(results, ensembles), *(table_ablation(results, k) for k in ("cutoff", "fusion", "freeze"))]
