"""The paper's tables from the results table, each under all three protocols, selection bias shown.

* Table I (:func:`table_pretrained_vs_random`): pretrained vs random, mean ± std over seeds and folds.
* Table II (:func:`table_ensembles`): single model (mean ± std over seeds) vs deep ensemble of the seeds.
* Table III (:func:`table_published`): ours beside published rows (:mod:`analysis.references`).
* Split modes and recipes (:func:`table_settings`): each pair of them for one configuration, paired.
* Ablations (:func:`table_ablation`): model cutoff (``cutoff:K``), weight fusion, weight freezing.

Accuracies are in %. Every table shows ``best_epoch`` (the paper's protocol: the test fold picks the
epoch), ``last_epoch`` and ``valid_selected`` (a validation fold picks it) and the column
``best − valid_selected``: the mean per-trial gap, i.e. how much letting the test fold choose inflates the
number. Rows appear only where trials exist; a table without any is rendered with a note saying so.

Trials are only ever averaged with trials of the same split mode, recipe and code version (``GROUP``; see
:mod:`analysis.recipes` and :mod:`orchestrator.provenance`). Every row names its split: "nested" (a validation
fold) or "paper" (the paper's protocol: train on every other fold, no validation fold, so "—" for
valid_selected and the gap). When the results hold several recipes, a ``recipe`` column says what differs
(e.g. ``lr 1e-4 · 70 ep``); when they hold several code versions, a ``code_version`` column says which.

Every difference a table shows is paired (:mod:`analysis.stats`): the mean of per-run differences over the
(fold, seed) runs both sides have and the number of pairs (Table II: pairs are folds); from 5 pairs up with
a 95 % t-interval and an exact sign-flip p-value, below that with the differences themselves. Each table
lists them in ``Table.comparisons`` so the report can name the intervals that include 0 and the
comparisons with too few pairs for one.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.study import PROTOCOLS, SELECTED, SPLIT_PROTOCOLS
from analysis.references import references_for
from analysis.representations import table_representations
from analysis.render import Table, dataset_label, fmt_mean_std, fmt_signed
from analysis.stats import (CI_NOTE, NO_PAIRS, PAIRING_NOTE, Comparison, count_columns, diff_columns, fmt_paired,
                            from_columns, paired_difference, runs)

GAP = "best − valid_selected"
GROUP = ["dataset", "model", "method", "split", "recipe", "code_version"]  # a row pools seeds and folds only
PAIR = ["dataset", "model", "method", "split", "code_version"]  # pretrained and random rows compared in Table I
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


def _show_code(frame: pd.DataFrame) -> bool:
    """Show the ``code_version`` column only when the results hold trials of several code versions."""
    return frame["code_version"].nunique() > 1


def _labelled(numbers: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``numbers`` with each row's recipe label (from the results rows of its recipe)."""
    labels = dict(zip(results["recipe"], results["recipe_label"]))
    return numbers.assign(recipe_label=numbers["recipe"].map(labels).fillna(""))


def _keys(r, show_method: bool, show_recipe: bool, show_code: bool = False) -> dict:
    """The leading display cells of one row: dataset, model, [method], split, [recipe], [code_version]."""
    row = {"dataset": dataset_label(r["dataset"]), "model": r["model"]}
    row |= {"method": r["method"]} if show_method else {}
    row["split"] = r["split"]
    row |= {"recipe": r.get("recipe_label") or ""} if show_recipe else {}
    return row | ({"code_version": r["code_version"]} if show_code else {})


def _display_protocols(numbers: pd.DataFrame, label_col: str, show_method: bool, show_recipe: bool = False,
                       show_code: bool = False) -> pd.DataFrame:
    """Formatted rows: keys, the ``label_col`` (init), one column per protocol and the gap."""
    rows = []
    for _, r in numbers.iterrows():
        diff = bool(r.get("difference", False))
        row = _keys(r, show_method, show_recipe, show_code)
        row[label_col] = r[label_col]
        for p in PROTOCOLS:
            row[p] = fmt_paired(from_columns(r, p)) if diff else fmt_mean_std(r[f"{p}_mean"], r[f"{p}_std"])
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
    rows, comparisons, show_code = [], [], _show_code(data)
    for _, group in stats.groupby(PAIR, sort=False):
        for unit in _comparable(group):
            rows += unit.to_dict("records")
            if sorted(unit["init"]) == ["pretrained", "random"]:
                rows.append(_difference(unit, data))
                comparisons.append(Comparison(f"Table I, {_where(rows[-1], show_code)}: pretrained − random",
                                              {p: from_columns(rows[-1], p) for p in PROTOCOLS}))
    numbers = pd.DataFrame(rows)
    numbers["difference"] = [d is True for d in numbers.get("difference", [None] * len(numbers))]
    numbers[["trials", "seeds", "folds"]] = numbers[["trials", "seeds", "folds"]].astype("Int64")
    numbers = count_columns(numbers)
    display = _display_protocols(numbers, "init", _show_method(data), _show_recipe(data), show_code)
    display["runs"] = [_runs(r) for _, r in numbers.iterrows()]
    note = (f"Mean ± std (ddof 1) over all seeds and folds of each configuration. pretrained − random: "
            f"{PAIRING_NOTE} {PROTOCOL_NOTE}")
    return Table(name, title, display, numbers, note, comparisons=comparisons)


def _with_diffs(numbers: pd.DataFrame, prefix: str, diffs: list) -> pd.DataFrame:
    """``numbers`` with one :func:`analysis.stats.diff_columns` set per row (``diffs`` in row order)."""
    columns = pd.DataFrame([diff_columns(prefix, d) for d in diffs], index=numbers.index)
    return count_columns(pd.concat([numbers, columns], axis=1))


def _where(row, show_code: bool = False) -> str:
    """Where a comparison lives, for the report: ``ESC-50 densenet201 nested`` (+ method, recipe if any, code
    version with ``show_code``)."""
    parts = [dataset_label(row["dataset"]), row["model"]]
    parts += [row["method"]] if row["method"] != "ce" else []
    parts += [row["split"]] + ([row["recipe_label"]] if row.get("recipe_label") else [])
    return " ".join(parts + ([f"code {row['code_version']}"] if show_code else []))


def _arm(data: pd.DataFrame, row, init: str) -> pd.DataFrame:
    """The runs of ``data`` in ``row``'s group (GROUP keys) with init ``init``."""
    same = (data[GROUP] == pd.Series({k: row[k] for k in GROUP})).all(axis=1)
    return data[same & (data["init"] == init)]


def _comparable(group: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of one (dataset, model, method, split) in which pretrained is compared with random: each
    recipe on its own; or, when the group is one pretrained and one random row whose recipes differ, the
    two together (a plan's own schedule for random init, ``random_optim``: both rows show their recipe)."""
    if group["recipe"].nunique() == 1:
        return [group]
    if sorted(group["init"]) == ["pretrained", "random"]:
        return [group.sort_values("init", key=lambda s: s.map(init_rank), kind="stable")]
    return [unit for _, unit in group.groupby("recipe", sort=False)]


def _difference(group: pd.DataFrame, data: pd.DataFrame) -> dict:
    """The "pretrained − random" row of one comparable unit (:func:`_comparable`): differences of the means
    (``<protocol>_mean``) and, paired on (fold, seed) over the runs in ``data``, the mean paired difference
    with its interval, p-value and pairs (:func:`analysis.stats.diff_columns`, prefix ``<protocol>``)."""
    p, r = (group[group["init"] == i].iloc[0] for i in ("pretrained", "random"))
    pretrained, random = _arm(data, p, "pretrained"), _arm(data, r, "random")
    row = {k: p[k] for k in GROUP} | {"init": "pretrained − random", "difference": True}
    row["recipe_label"] = p["recipe_label"] if p["recipe"] == r["recipe"] else ""
    for proto in PROTOCOLS:
        row[f"{proto}_mean"], row[f"{proto}_std"] = p[f"{proto}_mean"] - r[f"{proto}_mean"], float("nan")
        row |= diff_columns(proto, paired_difference(runs(pretrained, proto), runs(random, proto)))
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


def table_ensembles(results: pd.DataFrame, ensembles: pd.DataFrame, per_fold: pd.DataFrame | None = None) -> Table:
    """Table II: single model vs deep ensemble of its seeds, per dataset, model, split, recipe and init.

    ``ensembles`` is :func:`analysis.ensembles.ensemble_summary` output (may be empty); ``per_fold`` its
    input (:func:`analysis.ensembles.ensemble_per_fold`): given, the ensemble gain is paired over folds
    (:func:`_gain_over_folds`) and shown as :func:`analysis.stats.fmt_paired` writes it; without it, as the
    difference of the two means.
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
    gains = [_gain_over_folds(per_fold, r) for _, r in numbers.iterrows()]
    numbers = _with_diffs(numbers, "ensemble_gain", gains)
    show_code = _show_code(results)
    comparisons = [Comparison(f"Table II, {_where(r, show_code)} {r['init']}: ensemble − single model",
                              {SELECTED[r["split"]]: g}) for (_, r), g in zip(numbers.iterrows(), gains) if g.pairs]
    shown = [p for p in PROTOCOLS if any(p in SPLIT_PROTOCOLS[split] for split in results["split"].unique())]
    display = _ensemble_display(numbers, _show_method(results), _show_recipe(results), shown, show_code)
    note = ("Single: each seed's accuracy averaged over folds, then mean ± std (ddof 1) over seeds. "
            "Ensemble: softmax averaged over the seeds per clip, accuracy per fold, mean ± std over folds; "
            "only for the protocols whose predictions trials store: last_epoch, and the selected epoch, i.e. "
            "valid_selected for split nested, best_epoch for split paper (there the test fold picks each "
            "member's epoch, as in the paper). Ensemble gain = ensemble − single under that selected "
            "protocol, paired over folds: per test fold, the ensemble's accuracy minus its members' mean "
            "accuracy (pairs = folds: the seeds are what the ensemble averages, so they cannot pair), "
            f"n = folds; {CI_NOTE}; '~0': the interval includes 0. "
            f"{PROTOCOL_NOTE}")
    return Table(name, title, display, numbers, note, comparisons=comparisons)


def _gain_over_folds(per_fold: pd.DataFrame | None, row):
    """Ensemble − single model under ``row``'s selected protocol, paired over test folds: each fold's
    ensemble accuracy minus the mean accuracy of its members (%). NO_PAIRS without per-fold scores."""
    if per_fold is None or per_fold.empty:
        return NO_PAIRS
    keys = [*GROUP, "init"]
    mine = per_fold[(per_fold[keys] == pd.Series({k: row[k] for k in keys})).all(axis=1)
                    & (per_fold["protocol"] == SELECTED[row["split"]])]
    return paired_difference(runs(mine, "accuracy", ("fold",)), runs(mine, "single_mean", ("fold",)))


def _ensemble_display(numbers: pd.DataFrame, show_method: bool, show_recipe: bool, shown: list[str],
                      show_code: bool) -> pd.DataFrame:
    rows = []
    for _, r in numbers.iterrows():
        row = _keys(r, show_method, show_recipe, show_code)
        row |= {"init": r["init"], "seeds": str(int(r["seeds"])), "folds": str(int(r["folds"]))}
        row |= {f"single {p}": fmt_mean_std(r[f"{p}_mean"], r[f"{p}_std"]) for p in PROTOCOLS}
        row |= {f"ensemble {p}": fmt_mean_std(r[f"ensemble_{p}_mean"], r[f"ensemble_{p}_std"]) for p in shown}
        gain = from_columns(r, "ensemble_gain")
        row["ensemble gain"] = fmt_paired(gain) if gain.pairs else fmt_signed(r["ensemble_gain"])
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
                  "reference": ref["reference"], "protocol": ref["protocol"], "reported": ref["accuracy"]}
                 for ref in refs]
        cited += [r["reference"] for r in refs if r["reference"] not in cited]
        if refs and not group["split"].eq("paper").any():
            unmatched.append(dataset_label(dataset))
        for split in sorted(group["split"].unique(), key=lambda s: s != "paper"):  # like for like first
            rows += _our_rows(group[group["split"] == split], ensembles, _show_recipe(data), _show_code(data))
    stat_columns = [f"{p}_{s}" for p in PROTOCOLS for s in ("mean", "std")]
    numbers = pd.DataFrame(rows).reindex(columns=["dataset", "method", "split", "source", "reference", "protocol",
                                                  "reported", *stat_columns, "gap"])
    published = numbers["reported"].notna()
    display = pd.DataFrame({
        "dataset": numbers["dataset"].map(dataset_label), "method": numbers["method"], "split": numbers["split"],
        "source": numbers["source"], "reported": numbers["reported"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
        **{p: [_cell(r, p) for _, r in numbers.iterrows()] for p in PROTOCOLS},
        GAP: ["" if mine else fmt_signed(v) for v, mine in zip(numbers["gap"], published)],
    })
    note = ("Published rows: the number each work reports, measured its own way (protocols below; the "
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
        protocols = dict.fromkeys(f"{s}: {p}" for s, p in zip(numbers["source"], numbers["protocol"]) if pd.notna(p))
        note += " Protocols: " + "; ".join(protocols) + "."
    return Table(name, title, display, numbers, note)


def _cell(row, protocol: str) -> str:
    if pd.isna(row.get(f"{protocol}_mean")):
        return "" if pd.notna(row.get("reported")) else "—"
    return fmt_mean_std(row[f"{protocol}_mean"], row.get(f"{protocol}_std"))


def _our_rows(group: pd.DataFrame, ensembles: pd.DataFrame, show_recipe: bool, show_code: bool) -> list[dict]:
    """Our single-model and ensemble rows of one dataset and split, per model, method, recipe, code version
    and init."""
    rows = []
    keys = [*GROUP, "init"]
    stats = _labelled(_sorted(protocol_stats(group, keys)), group)
    for _, s in stats.iterrows():
        label = f"{s['model']} {s['init']}" + (f" {s['method']}" if s["method"] != "ce" else "")
        label += f" · {s['recipe_label']}" if show_recipe and s["recipe_label"] else ""
        label += f" · code {s['code_version']}" if show_code else ""
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


# ---------------------------------------------------------------- split modes and recipes, paired

SETTING = ["dataset", "model", "method", "init", "code_version"]  # what two compared split modes / recipes share


def table_settings(results: pd.DataFrame) -> Table:
    """Each pair of split modes / recipes run for the same (dataset, model, method, init), paired on
    (fold, seed): "A − B" per protocol as :func:`analysis.stats.fmt_paired` writes it (sides in split, then
    recipe label order)."""
    name, title = "table_settings_paired", "Split modes and recipes compared, paired on (fold, seed)"
    rows, comparisons, show_code = [], [], _show_code(results)
    for _, group in results.groupby(SETTING, sort=True):
        sides = group[["split", "recipe", "recipe_label"]].drop_duplicates().sort_values(
            ["split", "recipe_label", "recipe"]).to_dict("records")
        for i, a in enumerate(sides):
            for b in sides[i + 1:]:
                rows.append(_setting_row(group, a, b))
                comparisons.append(_setting_comparison(rows[-1], show_code))
    if not rows:
        return Table.nothing(name, title, "no (dataset, model, method, init) was run under two split modes or "
                                          "recipes")
    numbers = count_columns(pd.DataFrame(rows))
    numbers = numbers.assign(_o=numbers["init"].map(init_rank)).sort_values(
        ["dataset", "model", "method", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    display = numbers[["dataset", "model", *(["method"] if _show_method(results) else []), "init",
                       *(["code_version"] if show_code else []), "comparison"]]
    display = display.assign(dataset=display["dataset"].map(dataset_label))
    for p in PROTOCOLS:
        display[p] = [fmt_paired(from_columns(r, p)) for _, r in numbers.iterrows()]
    note = ("A − B: the same dataset, model, method and init trained under two split modes or recipes, "
            f"compared run by run: {PAIRING_NOTE} '—': a side has no runs under that protocol (split paper "
            f"has no valid_selected). {PROTOCOL_NOTE}")
    return Table(name, title, display, numbers, note, comparisons=comparisons)


def _side(side: dict) -> str:
    return side["split"] + (f" · {side['recipe_label']}" if side["recipe_label"] else "")


def _setting_comparison(row: dict, show_code: bool) -> Comparison:
    method = f" {row['method']}" if row["method"] != "ce" else ""
    code = f" code {row['code_version']}" if show_code else ""
    label = (f"Split modes / recipes, {dataset_label(row['dataset'])} {row['model']}{method} {row['init']}{code}: "
             f"{row['comparison']}")
    return Comparison(label, {p: from_columns(row, p) for p in PROTOCOLS})


def _setting_row(group: pd.DataFrame, a: dict, b: dict) -> dict:
    """One "A − B" row: per protocol the paired difference of the runs of sides ``a`` and ``b``."""
    first = group.iloc[0]
    row = {k: first[k] for k in SETTING} | {"a_split": a["split"], "a_recipe": a["recipe"], "b_split": b["split"],
                                            "b_recipe": b["recipe"], "comparison": f"{_side(a)} − {_side(b)}"}
    arm_a = group[(group["split"] == a["split"]) & (group["recipe"] == a["recipe"])]
    arm_b = group[(group["split"] == b["split"]) & (group["recipe"] == b["recipe"])]
    for p in PROTOCOLS:
        row |= diff_columns(p, paired_difference(runs(arm_a, p), runs(arm_b, p)))
    return row


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
    runs_ = pd.concat([reference, data])
    numbers = _labelled(_sorted(protocol_stats(runs_, [*GROUP, "init"])), results)
    full = numbers[numbers["init"] == "pretrained"].set_index(GROUP)["valid_selected_mean"]
    base = numbers.set_index(GROUP).index.map(lambda k: full.get(k, float("nan")))
    numbers["vs_pretrained"] = numbers["valid_selected_mean"].to_numpy() - base.to_numpy(dtype=float)
    paired = [_vs_pretrained(runs_, r) for _, r in numbers.iterrows()]
    numbers = _with_diffs(numbers, "vs_pretrained", paired)
    show_code = _show_code(results)
    comparisons = [Comparison(f"{title.split(':')[0]} {kind}, {_where(r, show_code)}: {r['init']} − pretrained",
                              {"valid_selected": d}) for (_, r), d in zip(numbers.iterrows(), paired) if d.pairs]
    display = _display_protocols(numbers.assign(init=numbers["init"].map(describe_init)), "init",
                                 _show_method(results), _show_recipe(results), show_code)
    display["Δ vs pretrained (valid_selected)"] = [
        fmt_signed(v) if r["init"] == "pretrained" or not d.pairs else fmt_paired(d)
        for v, (_, r), d in zip(numbers["vs_pretrained"], numbers.iterrows(), paired)]
    display["runs"] = [_runs(r) for _, r in numbers.iterrows()]
    numbers["init"] = numbers["init"].map(describe_init)
    note = (f"Mean ± std (ddof 1) over seeds and folds. Δ vs pretrained: paired on (fold, seed) with the full "
            f"pretrained model of the same split and recipe; {PAIRING_NOTE} {PROTOCOL_NOTE}")
    return Table(name, title, display, numbers, note, comparisons=comparisons)


def _vs_pretrained(data: pd.DataFrame, row):
    """``row``'s runs minus the full pretrained model's, paired on (fold, seed), under valid_selected
    (NO_PAIRS for the pretrained row itself: it is the reference)."""
    if row["init"] == "pretrained":
        return NO_PAIRS
    return paired_difference(runs(_arm(data, row, row["init"]), "valid_selected"),
                             runs(_arm(data, row, "pretrained"), "valid_selected"))


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


def build_tables(results: pd.DataFrame, ensembles: pd.DataFrame, per_fold: pd.DataFrame | None = None) -> list[Table]:
    """Every table, in report order: I, II, III, the split / recipe comparisons, the cutoff, fusion and
    freeze ablations, then the representation study. ``per_fold``: per-fold ensemble scores, for Table II's
    paired gain."""
    return [table_pretrained_vs_random(results), table_ensembles(results, ensembles, per_fold),
            table_published(results, ensembles), table_settings(results),
            *(table_ablation(results, k) for k in ("cutoff", "fusion", "freeze")), table_representations(results)]
