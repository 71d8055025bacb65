"""Paired differences (analysis/stats.py): the t-interval's coverage by simulation, exact sign-flip p-values
worked by hand, the "too few pairs" rendering, and their place in the tables and the report.

Coverage: 10,000 simulated samples per (distribution, n), so the observed coverage of a true 95 % interval
has a standard error of sqrt(0.95 * 0.05 / 10,000) = 0.0022; a cell fails beyond 4 standard errors (0.0087,
a false alarm once in ~16,000 cells; the seed is fixed, so the run is deterministic). Normal differences: the
t-interval is exact, so that is the whole tolerance. The skewed, discrete accuracy-like differences: t is
not exact there (200,000 samples: 93.8 / 93.9 / 94.5 % at n = 5 / 10 / 25), so "~95 %" is held to 2 points
below nominal plus the same simulation tolerance. The percentile bootstrap the tables used before covers
84 % at n = 5 even for normal differences and fails this test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import records_fixture as F
from analysis.collect import PROTOCOLS, load_predictions, load_results
from analysis.ensembles import ensemble_per_fold, ensemble_summary
from analysis.report import comparison_lines
from analysis.stats import (EXACT_FLIPS, N_FLIPS, NO_PAIRS, PairedDiff, fmt_paired, from_columns,
                            paired_difference, sign_flip_p, t_interval)
from analysis.tables import build_tables, table_ensembles, table_pretrained_vs_random, table_settings

SIMULATIONS = 10_000
MC_TOLERANCE = 4 * math.sqrt(0.95 * 0.05 / SIMULATIONS)  # 4 standard errors of a 95 % coverage estimate
SKEW_ALLOWANCE = 0.02  # what "~95 %" grants t on skewed differences beyond the simulation's own error


def arm(values: dict[tuple[int, int], float]) -> pd.Series:
    """One arm of a comparison indexed by (fold, seed)."""
    index = pd.MultiIndex.from_tuples(list(values), names=["fold", "seed"])
    return pd.Series(list(values.values()), index=index, dtype=float)


GRID5 = [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]


def accuracy_like(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Differences of two accuracies (%) on a 40-clip test fold: A at 85 % except on one fold in five where it
    does no better than B (60 %): discrete steps of 2.5 points, skewness about −0.7. Returns (draws, mean)."""
    p_a = np.where(rng.random(shape) < 0.2, 0.60, 0.85)
    draws = (rng.binomial(40, p_a) - rng.binomial(40, 0.60, shape)) / 40 * 100
    return draws, (0.8 * 0.85 + 0.2 * 0.60 - 0.60) * 100


def normal(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    return rng.normal(3.0, 5.0, shape), 3.0


@pytest.mark.parametrize("draw, allowance", [(normal, 0.0), (accuracy_like, SKEW_ALLOWANCE)])
@pytest.mark.parametrize("n", [5, 10, 25])
def test_t_interval_covers_95_percent_at_small_n(draw, allowance, n):
    samples, mean = draw(np.random.default_rng(20 + n), (SIMULATIONS, n))
    low, high = t_interval(samples)
    coverage = np.mean((low <= mean) & (mean <= high))
    assert 0.95 - allowance - MC_TOLERANCE <= coverage <= 0.95 + MC_TOLERANCE, coverage


def test_hand_worked_t_interval_and_p_value():
    a, b = arm(dict(zip(GRID5, [81, 72, 63, 94, 55]))), arm(dict(zip(GRID5, [80, 70, 60, 90, 50])))
    diff = paired_difference(a, b)  # differences 1 2 3 4 5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert (diff.mean, diff.low, diff.high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    assert diff.p_value == 2 / 32  # only all-positive and all-negative reach |mean| 3
    assert fmt_paired(diff) == "+3.00 [+1.04, +4.96] (n=5, p=0.062)" and not diff.includes_zero
    assert diff.values == (1.0, 2.0, 3.0, 4.0, 5.0) and diff.pairs == 5 and diff.dropped == 0


@pytest.mark.parametrize("diffs, p", [
    ([1, 1, 1, 1, 1], 2 / 32),  # n = 5 all positive: the smallest p five pairs give
    ([1, 2, 3, 4, -1], 6 / 32),  # sum 9: none flipped, the -1 flipped (11), the 1 and the -1 flipped (9); x2
    ([2, 2, 2, 2, -2], 12 / 32),  # |sum| >= 6: no flip or one of five flips (10 or 6): 6 patterns; x2
    ([0, 0, 1, 1, 1], 2 / 8),  # zeros flip onto themselves: the p of (1, 1, 1)
    ([0, 0, 0, 0, 0], 1.0),
    ([3, -3, 3, -3, 0], 1.0),  # mean 0: every flip is at least as far from 0
])
def test_exact_sign_flip_p_values(diffs, p):
    assert sign_flip_p(np.array(diffs, dtype=float)) == pytest.approx(p, abs=1e-12)


def test_p_value_is_symmetric_and_ties_in_floating_point_count():
    d = np.array([0.1, 0.2, 0.3, -0.6, 0.7])  # 0.1 + 0.2 - 0.3 is not 0 in floating point
    assert sign_flip_p(d) == sign_flip_p(-d) == sign_flip_p(d[::-1])
    assert sign_flip_p(np.array([0.1, 0.2, -0.3, 0.1, 0.2])) == pytest.approx(sign_flip_p(np.array([1, 2, -3, 1, 2.])))


def test_random_flips_above_the_exact_limit_agree_with_the_exact_p():
    d = np.random.default_rng(3).normal(0.4, 1.0, EXACT_FLIPS)
    exact = sign_flip_p(d)
    padded = np.concatenate([d, [0.0, 0.0]])  # 22 values: random flips; the zeros change no flip's mean
    sampled = sign_flip_p(padded, seed=5)
    assert 0.01 < exact < 0.99 and abs(sampled - exact) <= 4 * math.sqrt(exact * (1 - exact) / N_FLIPS)
    assert sign_flip_p(padded, seed=5) == sampled  # seeded: reproducible
    assert sign_flip_p(np.ones(EXACT_FLIPS + 1)) == 1 / (1 + N_FLIPS)  # no random flip reaches it: (1 + 0)/(1 + N)


def test_fewer_than_five_pairs_show_the_differences_and_no_interval():
    a = arm({(1, 0): 85.0, (2, 0): 90.0, (3, 0): float("nan")})  # NaN: no run there
    b = arm({(1, 0): 60.0, (2, 0): 60.0, (4, 0): 50.0})
    diff = paired_difference(a, b)
    assert (diff.mean, diff.pairs, diff.dropped, diff.values) == (27.5, 2, 1, (25.0, 30.0))
    assert math.isnan(diff.low) and math.isnan(diff.p_value) and not diff.has_ci and not diff.includes_zero
    assert fmt_paired(diff) == "+27.50 (pairs: +25.00, +30.00; too few pairs for an interval)"
    four = paired_difference(arm(dict(zip(GRID5[:4], [5, 5, 5, 5]))), arm(dict(zip(GRID5[:4], [0, 0, 0, 0]))))
    assert fmt_paired(four) == "+5.00 (pairs: +5.00, +5.00, +5.00, +5.00; too few pairs for an interval)"
    one = paired_difference(arm({(1, 0): 80}), arm({(1, 0): 75}))
    assert fmt_paired(one) == "+5.00 (pairs: +5.00; too few pairs for an interval)" and one.too_few
    none = paired_difference(arm({(1, 0): 80}), arm({(2, 0): 75}))
    assert none.pairs == 0 and none.dropped == 2 and fmt_paired(none) == "—" and fmt_paired(NO_PAIRS) == "—"


def test_constant_differences_give_a_zero_width_interval_at_that_value():
    diff = paired_difference(arm(dict(zip(GRID5, [80, 70, 60, 90, 50]))), arm(dict(zip(GRID5, [75, 65, 55, 85, 45]))))
    assert (diff.mean, diff.low, diff.high, diff.p_value) == (5.0, 5.0, 5.0, 2 / 32)
    same = paired_difference(arm(dict(zip(GRID5, [80, 70, 60, 90, 50]))), arm(dict(zip(GRID5, [80, 70, 60, 90, 50]))))
    assert same.includes_zero and fmt_paired(same) == "+0.00 [+0.00, +0.00] (n=5, p=1.000) ~0"
    # a difference that rounds to zero from below prints +0.00, never -0.00
    tiny = paired_difference(arm(dict(zip(GRID5, [80.0] * 5))), arm(dict(zip(GRID5, [80.001] * 5))))
    assert fmt_paired(tiny).startswith("+0.00 [+0.00, +0.00]")


def test_bad_inputs_are_clear_errors():
    twice = pd.Series([1.0, 2.0], index=pd.MultiIndex.from_tuples([(1, 0), (1, 0)], names=["fold", "seed"]))
    with pytest.raises(ValueError, match=r"arm a has several runs for \[\(1, 0\)\]"):
        paired_difference(twice, arm({(1, 0): 1.0}))
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        paired_difference(arm({(1, 0): 1.0}), arm({(1, 0): 1.0}), level=95)


def test_numbers_round_trip_through_the_csv_columns():
    diff = PairedDiff(1.5, -0.5, 3.0, 6, 1, p_value=0.25, values=(1.0, 2.0, 1.0, 2.0, 0.5, 2.5))
    row = {"x_diff": 1.5, "x_ci_low": -0.5, "x_ci_high": 3.0, "x_p_value": 0.25, "x_pairs": 6, "x_dropped": 1,
           "x_pair_diffs": "1;2;1;2;0.5;2.5"}
    assert from_columns(row, "x") == diff and from_columns({}, "x") == NO_PAIRS
    assert fmt_paired(diff) == "+1.50 [-0.50, +3.00] (n=6, p=0.250) ~0"


# ---------------------------------------------------------------- in the tables and the report


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The mixed sweep of tests/test_analysis_splits.py (2 folds x 2 seeds): results and per-fold ensembles."""
    base = tmp_path_factory.mktemp("stats")
    root = str(F.write_mixed_sweep(base / "results", F.write_dataset(base / "esc50-paper3ch-hash")))
    results = load_results(root)
    return results, ensemble_per_fold(load_predictions(root, results))


def test_table1_with_four_pairs_lists_them(mixed):
    results, _ = mixed
    table = table_pretrained_vs_random(results[results["split"] == "nested"])
    diff = table.display.set_index("init").loc["pretrained − random"]
    # pretrained .90 .85 .95 .90 on (fold, seed) (1, 0) (1, 1) (2, 0) (2, 1), random .60 everywhere
    assert diff["best_epoch"] == "+30.00 (pairs: +30.00, +25.00, +35.00, +30.00; too few pairs for an interval)"
    numbers = table.numbers.set_index("init").loc["pretrained − random"]
    assert numbers["best_epoch_diff"] == pytest.approx(30.0) and numbers["best_epoch_pairs"] == 4
    assert math.isnan(numbers["best_epoch_ci_low"]) and math.isnan(numbers["best_epoch_p_value"])
    assert numbers["best_epoch_pair_diffs"] == "30;25;35;30"
    assert "best_epoch_p_value,best_epoch_pairs,best_epoch_dropped,best_epoch_pair_diffs" in table.to_csv()
    assert "Student-t interval" in table.note and "too few pairs for an interval" in table.note
    assert "too few pairs for an interval" in table.to_latex()
    lines = comparison_lines([table])
    assert lines == ["Table I, ESC-50 densenet201 nested: pretrained − random: fewer than 5 matched pairs, no "
                     "interval, no evidence either way: " + " · ".join(f"{p} {diff[p]}" for p in PROTOCOLS) + "."]


def test_table1_with_five_pairs_shows_the_interval_and_p_value(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for seed, acc in enumerate((.80, .85, .90, .85, .95)):
        F.write_trial(trials, data, valid=[.5], test=[acc], seed=seed)
        F.write_trial(trials, data, valid=[.5], test=[.60], seed=seed, init="random")
    table = table_pretrained_vs_random(load_results(str(tmp_path / "results")))
    diff = table.display.set_index("init").loc["pretrained − random"]
    # differences 20 25 30 25 35: mean 27, sd sqrt(32.5), half-width 2.776445 * sqrt(6.5) = 7.08
    assert diff["valid_selected"] == "+27.00 [+19.92, +34.08] (n=5, p=0.062)"
    assert comparison_lines([table]) == []  # the interval excludes 0, nothing left out
    assert "[+19.92, +34.08]" in table.to_markdown() and "(n=5, p=0.062)" in table.to_latex()


def test_ensemble_gain_over_two_folds_lists_them(mixed):
    results, per_fold = mixed
    table = table_ensembles(results, ensemble_summary(per_fold), per_fold)
    gain = {(r["split"], r["init"]): r["ensemble gain"] for r in table.display.to_dict("records")}
    # nested pretrained, valid_selected: fold 1 ensemble .85 vs members (.90 + .85) / 2 -> -2.5; fold 2 .90 vs
    # (.70 + .90) / 2 -> +10
    assert gain["nested", "pretrained"] == "+3.75 (pairs: -2.50, +10.00; too few pairs for an interval)"
    assert ("Table II, ESC-50 densenet201 nested pretrained: ensemble − single model: fewer than 5 matched pairs, "
            "no interval, no evidence either way: valid_selected +3.75 (pairs: -2.50, +10.00; too few pairs for an "
            "interval).") in comparison_lines([table])
    assert table_ensembles(results, ensemble_summary(per_fold)).display["ensemble gain"].iloc[0] == "+3.75"


def test_split_modes_are_compared_run_by_run(mixed):
    results, _ = mixed
    table = table_settings(results)
    pretrained = {r["init"]: r for r in table.display.to_dict("records")}["pretrained"]
    # nested − paper last_epoch per (fold, seed) (1, 0) (1, 1) (2, 0) (2, 1): .85-.90, .85-.95, .80-.85, .75-.80
    assert pretrained["comparison"] == "nested − paper" and pretrained["valid_selected"] == "—"
    assert pretrained["last_epoch"] == "-6.25 (pairs: -5.00, -10.00, -5.00, -5.00; too few pairs for an interval)"
    lines = comparison_lines([table])
    assert any(line.startswith("Split modes / recipes, ESC-50 densenet201 pretrained: nested − paper: fewer than 5 "
                               "matched pairs, no interval, no evidence either way: best_epoch -1.25 (pairs: ")
               for line in lines)
    assert not any("left out" in line for line in lines)  # paper has no valid_selected: nothing to pair
    nested_only = table_settings(results[results["split"] == "nested"])
    assert nested_only.empty and "two split modes or recipes" in nested_only.to_markdown()
    per_fold = mixed[1]
    assert [t.name for t in build_tables(results, ensemble_summary(per_fold), per_fold)][3] == "table_settings_paired"


def test_unmatched_runs_are_reported(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for seed, acc in ((0, .80), (1, .90), (2, .70)):
        F.write_trial(trials, data, valid=[.5], test=[acc], seed=seed)
    for seed in (0, 1):
        F.write_trial(trials, data, valid=[.5], test=[.60], seed=seed, init="random")
    table = table_pretrained_vs_random(load_results(str(tmp_path / "results")))
    diff = table.display.set_index("init").loc["pretrained − random"]
    assert diff["valid_selected"] == "+25.00 (pairs: +20.00, +30.00; too few pairs for an interval)"
    assert ("Table I, ESC-50 densenet201 nested: pretrained − random: 1 run(s) without a matching run on the other "
            "side left out of the pairs.") in comparison_lines([table])
