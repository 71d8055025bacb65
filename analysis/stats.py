"""Paired differences with a bootstrap confidence interval: "is A better than B, by how much, how sure?"

Two arms of a comparison (pretrained vs random, ensemble vs single model, one split mode or recipe vs
another, an ablation vs the full pretrained model) are run on the same (fold, seed) grid, so their runs pair
up: the same test fold, the same seed. The pairs share most of their noise (a hard fold is hard for both
arms), so the mean of the per-pair differences with a CI over pairs says far more than two means ± std.

:func:`paired_difference` aligns the two arms by index (only runs both arms have count; the others are
counted as dropped), takes the mean difference and a percentile bootstrap CI over pairs (resampling pairs
with replacement, all ``n_boot`` resamples drawn at once from a seeded numpy Generator, so the interval is
reproducible). :func:`fmt_paired` writes it as ``+25.20 [+18.10, +31.90] (n=6)``, with `` ~0`` when the
interval includes 0. With one pair there is no interval (``no CI``); the bootstrap of a handful of pairs is
coarse (with n pairs it has at most C(2n-1, n) distinct means), which ``n`` lets the reader judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

LEVEL = 0.95
N_BOOT = 10_000
ZERO_MARK = "~0"  # appended to a formatted difference whose CI includes 0


@dataclass(frozen=True)
class PairedDiff:
    """Mean of the paired differences a − b, its bootstrap CI [low, high] (NaN without one: fewer than 2
    pairs), how many pairs went in and how many runs had no partner (``dropped``)."""

    mean: float
    low: float
    high: float
    pairs: int
    dropped: int = 0
    level: float = LEVEL

    @property
    def has_ci(self) -> bool:
        return self.pairs >= 2 and not math.isnan(self.low)

    @property
    def includes_zero(self) -> bool:
        """True when the CI includes 0 (no evidence of a difference); False without a CI."""
        return self.has_ci and self.low <= 0.0 <= self.high


NO_PAIRS = PairedDiff(float("nan"), float("nan"), float("nan"), 0)


@dataclass
class Comparison:
    """One row of a table compared under each protocol: ``label`` says what against what, where (it reads
    as the start of a sentence in the report), ``diffs`` maps protocol -> :class:`PairedDiff`."""

    label: str
    diffs: dict[str, PairedDiff] = field(default_factory=dict)


def paired_difference(a: pd.Series, b: pd.Series, *, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> PairedDiff:
    """Mean paired difference a − b over the index values both hold (e.g. (fold, seed)), with a percentile
    bootstrap CI at ``level`` over the pairs.

    NaN values count as missing runs. Runs without a partner are left out and counted in ``dropped``.
    Raises ValueError when an index value repeats in one arm (the pairing would be ambiguous).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    a, b = a.dropna(), b.dropna()
    for name, arm in (("a", a), ("b", b)):
        if arm.index.has_duplicates:
            repeated = arm.index[arm.index.duplicated()].unique().tolist()
            raise ValueError(f"paired_difference: arm {name} has several runs for {repeated}; pair on an index "
                             "that names each run once, e.g. (fold, seed)")
    common = a.index.intersection(b.index)
    dropped = (len(a) - len(common)) + (len(b) - len(common))
    diffs = (a.loc[common].to_numpy(dtype=float) - b.loc[common].to_numpy(dtype=float))
    if len(diffs) == 0:
        return PairedDiff(float("nan"), float("nan"), float("nan"), 0, dropped, level)
    low, high = bootstrap_interval(diffs, n_boot=n_boot, seed=seed, level=level)
    return PairedDiff(float(diffs.mean()), low, high, len(diffs), dropped, level)


def bootstrap_interval(diffs: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``diffs``: (NaN, NaN) for fewer than 2 values."""
    n = len(diffs)
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)  # every resample at once
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def fmt_paired(diff: PairedDiff, digits: int = 2) -> str:
    """``+25.20 [+18.10, +31.90] (n=6)``; `` ~0`` appended when the CI includes 0; ``+5.00 (n=1, no CI)``
    for a single pair; ``—`` without pairs."""
    if diff.pairs == 0 or math.isnan(diff.mean):
        return "—"
    if not diff.has_ci:
        return f"{diff.mean:+.{digits}f} (n={diff.pairs}, no CI)"
    text = f"{diff.mean:+.{digits}f} [{diff.low:+.{digits}f}, {diff.high:+.{digits}f}] (n={diff.pairs})"
    return f"{text} {ZERO_MARK}" if diff.includes_zero else text


def diff_columns(prefix: str, diff: PairedDiff) -> dict[str, float]:
    """Plain numeric CSV columns of one difference: ``<prefix>_diff``, ``_ci_low``, ``_ci_high``, ``_pairs``
    and ``_dropped`` (runs left out for want of a partner)."""
    return {f"{prefix}_diff": diff.mean, f"{prefix}_ci_low": diff.low, f"{prefix}_ci_high": diff.high,
            f"{prefix}_pairs": diff.pairs, f"{prefix}_dropped": diff.dropped}


def from_columns(row, prefix: str) -> PairedDiff:
    """The :class:`PairedDiff` a numbers row holds in its :func:`diff_columns` (NO_PAIRS where it has none)."""
    pairs = row.get(f"{prefix}_pairs")
    if pairs is None or pd.isna(pairs):
        return NO_PAIRS
    return PairedDiff(float(row[f"{prefix}_diff"]), float(row[f"{prefix}_ci_low"]),
                      float(row[f"{prefix}_ci_high"]), int(pairs), int(row.get(f"{prefix}_dropped", 0)))


def count_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``*_pairs`` / ``*_dropped`` columns as nullable integers (rows without a
    difference have none), so the CSV reads ``4``, not ``4.0``."""
    counts = [c for c in frame.columns if c.endswith(("_pairs", "_dropped"))]
    return frame.astype({c: "Int64" for c in counts})


def runs(frame: pd.DataFrame, value: str, keys: tuple[str, ...] = ("fold", "seed")) -> pd.Series:
    """``frame[value]`` in % indexed by ``keys``: one arm of a paired comparison."""
    return (frame.set_index(list(keys))[value] * 100).astype(float)


CI_NOTE = f"{LEVEL:.0%} percentile bootstrap CI over pairs, {N_BOOT:,} resamples, seed 0"
PAIRING_NOTE = ("mean of the paired differences over the (fold, seed) runs both sides have, "
                f"[{CI_NOTE}], n = pairs; "
                f"'{ZERO_MARK}' marks an interval that includes 0 (no evidence of a difference); one pair "
                "gives no CI.")
