"""The paper's figures (PNG + SVG) from the results, each drawn only when the results support it.

* Fig. 2a (:func:`figure_svcca`): SVCCA per block before vs after fine-tuning, pretrained vs random.
* Fig. 2b (:func:`figure_fusion`): accuracy vs number of pretrained blocks K (``fusion:K``).
* Fig. 2c (:func:`figure_freeze`): accuracy vs number of frozen blocks K (``freeze:K``).
* Fig. 3 (:func:`figure_attributions`): Integrated Gradients maps beside the spectrograms.
* Learning curves (:func:`figure_learning_curves`): valid/test accuracy per epoch, pretrained vs random.

Figures are plain ``matplotlib.figure.Figure`` objects rendered by the Agg canvas (no pyplot, so no global
backend state and nothing opens a window). Each function returns the URIs written, or [] when the data
lacks what the figure needs (:data:`NEEDS` says what, for the report).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.render import dataset_label
from orchestrator import storage
from orchestrator.storage import Location
from orchestrator.study import SELECTED

if TYPE_CHECKING:  # only a type here: importing it would load torch and captum for every figure
    from analysis.attribution import Attributions

COLORS = {"pretrained": "tab:blue", "random": "tab:orange"}
NEEDS = {
    "fig2a_svcca": "SVCCA results for trials with init 'pretrained' or 'random' that have checkpoints",
    "fig2b_fusion": "finished trials with init fusion:K",
    "fig2c_freeze": "finished trials with init freeze:K",
    "fig3_integrated_gradients": "Integrated Gradients of a trial with a checkpoint",
    "learning_curves": "per-epoch records of trials with init 'pretrained' or 'random'",
}


def save_figure(fig: Figure, out: Location, stem: str) -> list[str]:
    """Write ``fig`` as ``stem.png`` (120 dpi) and ``stem.svg`` under ``out``; returns the URIs."""
    FigureCanvasAgg(fig)  # attach the Agg canvas: rendering without pyplot or a global backend
    written = []
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        # no bbox_inches="tight": constrained layout already fits the margins, and "tight" costs a redraw
        fig.savefig(buffer, format=fmt, dpi=120)
        written.append(storage.write_bytes(out.join(f"{stem}.{fmt}"), buffer.getvalue()))
    return written


def _panels(n: int, width: float = 4.2, height: float = 3.2, ncols: int = 3):
    """A figure with ``n`` axes in a grid (unused cells hidden)."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


PANEL = ["dataset", "model", "method", "split"]  # one panel each: split modes are never drawn as one curve


def _title(key: tuple) -> str:
    dataset, model, *rest = key
    method = f" ({rest[0]})" if rest and rest[0] != "ce" else ""
    split = f" · split {rest[1]}" if len(rest) > 1 else ""
    return f"{dataset_label(dataset)} · {model}{method}{split}"


# ---------------------------------------------------------------- Fig. 2a


def figure_svcca(similarity: pd.DataFrame, out: Location, stem: str = "fig2a_svcca") -> list[str]:
    """Grouped bars: SVCCA per block, pretrained vs random, one panel per (dataset, model).

    ``similarity``: rows of :func:`analysis.svcca.trial_block_similarity` plus a ``dataset`` column. Bars of
    blocks with fewer than 10 x more data points than neurons (``enough`` False: the test fold was too small)
    are hatched: CCA over-fits there, so their SVCCA is biased towards 1.
    """
    data = similarity[similarity["init"].isin(COLORS)] if not similarity.empty else similarity
    if data.empty:
        return []
    groups = list(data.groupby(["dataset", "model"], sort=True))
    fig, axes = _panels(len(groups))
    for ax, (key, group) in zip(axes, groups):
        stats = group.groupby(["init", "block"]).agg(svcca=("svcca", "mean"), enough=("enough", "all"))
        inits = [i for i in COLORS if i in stats.index.get_level_values(0)]
        for j, init in enumerate(inits):
            series = stats.loc[init]
            offset = (j - (len(inits) - 1) / 2) * 0.38
            ax.bar(series.index + offset, series["svcca"].to_numpy(), width=0.38, color=COLORS[init], label=init,
                   hatch=["" if ok else "//" for ok in series["enough"]], edgecolor="white")
        ax.set(title=_title(key), xlabel="block", ylabel="SVCCA (before vs after fine-tuning)", ylim=(0, 1.05),
               xticks=sorted(group["block"].unique()))
        ax.legend(loc="lower left", fontsize=8)
    if not data["enough"].all():
        # a supxlabel, not fig.text: constrained layout makes room for it below the axes' own labels
        fig.supxlabel("hatched: < 10x data points per neuron (too few clips), biased towards 1",
                      fontsize=7, color="dimgray")
    return save_figure(fig, out, stem)


# ---------------------------------------------------------------- Fig. 2b / 2c


def _curve(group: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Mean and std (in %) of ``protocol`` per K."""
    stats = group.groupby("init_k")[protocol].agg(["mean", "std"]) * 100
    return stats.reset_index().sort_values("init_k")


def _ablation_panels(results: pd.DataFrame, kind: str) -> list[tuple[tuple, pd.DataFrame, pd.DataFrame]]:
    """Per (dataset, model, method, split) with ``kind:K`` trials: (key, ablation trials, reference trials)."""
    data = results[results["init_kind"] == kind]
    panels = []
    for key, group in data.groupby(PANEL, sort=True):
        same = (results[PANEL] == list(key)).all(axis=1)
        panels.append((key, group, results[same & results["init"].isin(COLORS)]))
    return panels


def _selected(key: tuple) -> str:
    """The protocol a panel's split selects (best_epoch under split paper, whose valid_selected is NaN)."""
    return SELECTED.get(key[PANEL.index("split")], "valid_selected")


def _plot_protocols(ax, group: pd.DataFrame, label: str) -> None:
    for protocol, style in (("valid_selected", "-o"), ("best_epoch", "--s")):
        if group[protocol].isna().all():  # a protocol this split does not have (valid_selected under paper)
            continue
        curve = _curve(group, protocol)
        ax.errorbar(curve["init_k"].astype(float), curve["mean"], yerr=curve["std"].fillna(0), fmt=style,
                    capsize=3, color="tab:blue" if protocol == "valid_selected" else "tab:gray",
                    label=f"{label}, {protocol}")


def figure_fusion(results: pd.DataFrame, out: Location, stem: str = "fig2b_fusion") -> list[str]:
    """Accuracy vs K pretrained blocks (``fusion:K``); 'pretrained' is K = 4 (the same network) and
    'random' is drawn at K = 0 as a separate marker (it has no pretrained stem, unlike fusion:0)."""
    panels = _ablation_panels(results, "fusion")
    if not panels:
        return []
    fig, axes = _panels(len(panels))
    for ax, (key, group, reference) in zip(axes, panels):
        pretrained = reference[reference["init"] == "pretrained"].assign(init_k=4)
        if 4 not in set(group["init_k"].dropna()):
            group = pd.concat([group, pretrained])
        _plot_protocols(ax, group, "fusion:K")
        random, protocol = reference[reference["init"] == "random"], _selected(key)
        if not random.empty:
            ax.errorbar([0], [random[protocol].mean() * 100],
                        yerr=[np.nan_to_num(random[protocol].std() * 100)], fmt="D", capsize=3,
                        color=COLORS["random"], label=f"random init, {protocol}")
        ax.set(title=_title(key), xlabel="pretrained blocks K (stem + blocks 1..K)", ylabel="accuracy (%)",
               xticks=range(0, 5))
        ax.legend(fontsize=7)
    return save_figure(fig, out, stem)


def figure_freeze(results: pd.DataFrame, out: Location, stem: str = "fig2c_freeze") -> list[str]:
    """Accuracy vs K frozen blocks (``freeze:K``); fine-tuning everything ('pretrained') is a dashed line."""
    panels = _ablation_panels(results, "freeze")
    if not panels:
        return []
    fig, axes = _panels(len(panels))
    for ax, (key, group, reference) in zip(axes, panels):
        _plot_protocols(ax, group, "freeze:K")
        pretrained, protocol = reference[reference["init"] == "pretrained"], _selected(key)
        if not pretrained.empty:
            ax.axhline(pretrained[protocol].mean() * 100, color=COLORS["pretrained"], linestyle=":",
                       label=f"nothing frozen (pretrained), {protocol}")
        ax.set(title=_title(key), xlabel="frozen blocks K (stem + blocks 1..K)", ylabel="accuracy (%)",
               xticks=range(0, 5))
        ax.legend(fontsize=7)
    return save_figure(fig, out, stem)


# ---------------------------------------------------------------- Fig. 3


def figure_attributions(attr: Attributions, out: Location, stem: str = "fig3_integrated_gradients") -> list[str]:
    """One row per clip: its spectrogram (first channel) and the IG map (summed over channels)."""
    if len(attr.clip_ids) == 0:
        return []
    n = len(attr.clip_ids)
    fig = Figure(figsize=(8, 2.2 * n), layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    maps = attr.attributions.sum(axis=1)
    limit = float(np.percentile(np.abs(maps), 99)) or 1.0  # robust colour range, symmetric around 0
    for i in range(n):
        name = _class_name(attr.classes, attr.labels[i])
        guess = _class_name(attr.classes, attr.predicted[i])
        spec_ax, ig_ax = axes[i]
        spec_ax.imshow(attr.specs[i, 0], origin="lower", aspect="auto", cmap="magma")
        spec_ax.set(title=f"{attr.clip_ids[i]}: {name}", ylabel="mel bin")
        image = ig_ax.imshow(maps[i], origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ig_ax.set(title=f"IG for '{name}' (predicted: {guess})")
        fig.colorbar(image, ax=ig_ax, fraction=0.04)
    for ax in axes[-1]:
        ax.set_xlabel("frame")
    fig.suptitle(f"Integrated Gradients, {attr.model} ({attr.init}), final weights of {attr.trial_id}", fontsize=9)
    return save_figure(fig, out, stem)


def _class_name(classes: list[str], label: int) -> str:
    return classes[int(label)] if 0 <= int(label) < len(classes) else str(int(label))


# ---------------------------------------------------------------- learning curves


def figure_learning_curves(epochs: pd.DataFrame, out: Location, stem: str = "learning_curves") -> list[str]:
    """Valid (dashed) and test (solid) accuracy vs epoch, mean over seeds and folds, pretrained vs random."""
    data = epochs[epochs["init"].isin(COLORS)] if not epochs.empty else epochs
    if data.empty:
        return []
    groups = list(data.groupby(PANEL, sort=True))
    fig, axes = _panels(len(groups))
    for ax, (key, group) in zip(axes, groups):
        for (init, recipe), curves in group.groupby(["init", "recipe_label"], sort=True):  # recipes apart
            name = f"{init} [{recipe}]" if recipe else init
            mean = curves.groupby("epoch")[["valid_acc", "test_acc"]].mean() * 100
            ax.plot(mean.index, mean["test_acc"], "-", color=COLORS[init], label=f"{name}, test fold")
            if mean["valid_acc"].notna().any():  # split paper: no validation fold
                ax.plot(mean.index, mean["valid_acc"], "--", color=COLORS[init], label=f"{name}, valid fold")
        ax.set(title=_title(key), xlabel="epoch", ylabel="accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return save_figure(fig, out, stem)
