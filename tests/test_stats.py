"""Paired differences with a bootstrap CI (analysis/stats.py) and their place in the tables and the report.

Hand-worked bootstrap: the differences 25, 30, 30, 35 are 30 + 5 * (B1 + B2 - 1) per draw, with B1, B2 fair
coins, so the mean of 4 resampled pairs is 30 + 5 * (S - 4) / 4 with S ~ Binomial(8, 1/2). P(S <= 0) = 1/256
and P(S <= 1) = 9/256 = 3.5 %: the 2.5 % quantile is S = 1, i.e. 26.25, and by symmetry the 97.5 % one is
33.75, whatever the 10,000 draws (3.5 % is far from 2.5 % for that many). That is Table I's pretrained −
random under best_epoch (pretrained .90 .95 .85 .90, random .60 everywhere: 30 35 25 30).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import records_fixture as F
from analysis.collect import load_predictions, load_results
from analysis.ensembles import ensemble_per_fold, ensemble_summary
from analysis.report import comparison_lines
from analysis.stats import NO_PAIRS, PairedDiff, fmt_paired, from_columns, paired_difference
from analysis.tables import build_tables, table_ensembles, table_pretrained_vs_random, table_settings


def arm(values: dict[tuple[int, int], float]) -> pd.Series:
    """One arm of a comparison indexed by (fold, seed)."""
    index = pd.MultiIndex.from_tuples(list(values), names=["fold", "seed"])
    return pd.Series(list(values.values()), index=index, dtype=float)


GRID = [(1, 0), (1, 1), (2, 0), (2, 1)]


def test_constant_differences_give_a_zero_width_interval_at_that_value():
    diff = paired_difference(arm(dict(zip(GRID, [80, 70, 60, 90]))), arm(dict(zip(GRID, [75, 65, 55, 85]))))
    assert (diff.mean, diff.low, diff.high, diff.pairs, diff.dropped) == (5.0, 5.0, 5.0, 4, 0)
    assert not diff.includes_zero and fmt_paired(diff) == "+5.00 [+5.00, +5.00] (n=4)"
    same = paired_difference(arm(dict(zip(GRID, [80, 70, 60, 90]))), arm(dict(zip(GRID, [80, 70, 60, 90]))))
    assert same.includes_zero and fmt_paired(same) == "+0.00 [+0.00, +0.00] (n=4) ~0"  # no difference at all


def test_interval_is_the_percentile_bootstrap_of_a_seeded_generator():
    a, b = arm(dict(zip(GRID[:3], [3.0, 1.0, 7.0]))), arm(dict(zip(GRID[:3], [1.0, 2.0, 3.0])))
    diff = paired_difference(a, b, n_boot=2000, seed=7)
    d = np.array([2.0, -1.0, 4.0])  # a - b on (1, 0), (1, 1), (2, 0)
    means = d[np.random.default_rng(7).integers(0, 3, size=(2000, 3))].mean(axis=1)
    assert (diff.low, diff.high) == tuple(np.quantile(means, [0.025, 0.975]))
    assert diff.mean == pytest.approx(5 / 3) and diff.pairs == 3
    # the resample mean is -1 only when all three draws are -1: 1/27 = 3.7 % > 2.5 %, so the bound is -1
    assert diff.low == -1.0 and diff.includes_zero and fmt_paired(diff).endswith("(n=3) ~0")
    assert paired_difference(a, b, n_boot=2000, seed=7) == diff  # same seed, same interval
    narrow = paired_difference(a, b, n_boot=2000, seed=7, level=0.5)
    assert diff.low <= narrow.low <= narrow.high <= diff.high


def test_hand_worked_binomial_interval():
    diff = paired_difference(arm(dict(zip(GRID, [90, 95, 85, 90]))), arm(dict(zip(GRID, [60] * 4))))
    assert (diff.mean, diff.low, diff.high) == pytest.approx((30.0, 26.25, 33.75))


def test_only_matched_runs_count_and_the_rest_are_dropped():
    a = arm({(1, 0): 80, (1, 1): 90, (2, 0): 70, (2, 1): float("nan")})  # NaN: no run there
    b = arm({(1, 0): 60, (2, 0): 60, (3, 0): 10})
    diff = paired_difference(a, b)
    assert (diff.mean, diff.pairs, diff.dropped) == (15.0, 2, 2)  # (1, 1) and (3, 0) have no partner
    assert (diff.low, diff.high) == (10.0, 20.0)  # pairs 20 and 10: resample means 10, 15, 20


def test_one_pair_has_no_interval_and_none_has_no_difference():
    one = paired_difference(arm({(1, 0): 80}), arm({(1, 0): 75, (2, 0): 70}))
    assert (one.mean, one.pairs, one.dropped) == (5.0, 1, 1) and math.isnan(one.low) and not one.has_ci
    assert not one.includes_zero and fmt_paired(one) == "+5.00 (n=1, no CI)"
    none = paired_difference(arm({(1, 0): 80}), arm({(2, 0): 75}))
    assert none.pairs == 0 and none.dropped == 2 and fmt_paired(none) == "—" and fmt_paired(NO_PAIRS) == "—"


def test_bad_inputs_are_clear_errors():
    twice = pd.Series([1.0, 2.0], index=pd.MultiIndex.from_tuples([(1, 0), (1, 0)], names=["fold", "seed"]))
    with pytest.raises(ValueError, match=r"arm a has several runs for \[\(1, 0\)\]"):
        paired_difference(twice, arm({(1, 0): 1.0}))
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        paired_difference(arm({(1, 0): 1.0}), arm({(1, 0): 1.0}), level=95)


def test_numbers_round_trip_through_the_csv_columns():
    diff = PairedDiff(1.5, -0.5, 3.0, 6, 1)
    row = {"x_diff": 1.5, "x_ci_low": -0.5, "x_ci_high": 3.0, "x_pairs": 6, "x_dropped": 1}
    assert from_columns(row, "x") == diff and from_columns({}, "x") == NO_PAIRS
    assert fmt_paired(diff) == "+1.50 [-0.50, +3.00] (n=6) ~0"


# ---------------------------------------------------------------- in the tables and the report


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The mixed sweep of tests/test_analysis_splits.py: results and per-fold ensemble scores."""
    base = tmp_path_factory.mktemp("stats")
    root = str(F.write_mixed_sweep(base / "results", F.write_dataset(base / "esc50-paper3ch-hash")))
    results = load_results(root)
    return results, ensemble_per_fold(load_predictions(root, results))


def test_table1_difference_row_shows_the_interval_and_pairs(mixed):
    results, _ = mixed
    table = table_pretrained_vs_random(results[results["split"] == "nested"])
    diff = table.display.set_index("init").loc["pretrained − random"]
    assert diff["best_epoch"] == "+30.00 [+26.25, +33.75] (n=4)"  # the module docstring's hand-worked case
    numbers = table.numbers.set_index("init").loc["pretrained − random"]
    assert (numbers["best_epoch_diff"], numbers["best_epoch_ci_low"], numbers["best_epoch_pairs"]) == (
        pytest.approx(30.0), pytest.approx(26.25), 4)
    assert "best_epoch_ci_high,best_epoch_pairs,best_epoch_dropped" in table.to_csv()
    assert "95% percentile bootstrap CI over pairs" in table.note
    assert comparison_lines([table]) == []  # every interval excludes 0


def test_ensemble_gain_is_paired_over_folds_and_a_zero_interval_is_reported(mixed):
    results, per_fold = mixed
    table = table_ensembles(results, ensemble_summary(per_fold), per_fold)
    gain = {(r["split"], r["init"]): r["ensemble gain"] for r in table.display.to_dict("records")}
    # nested pretrained, valid_selected: fold 1 ensemble .85 vs members (.90 + .85) / 2 -> -2.5; fold 2 .90 vs
    # (.70 + .90) / 2 -> +10; two pairs: resample means -2.5, 3.75, 10 -> interval [-2.5, 10]
    assert gain["nested", "pretrained"] == "+3.75 [-2.50, +10.00] (n=2) ~0"
    assert gain["nested", "random"] == "+0.00 [+0.00, +0.00] (n=2) ~0"  # identical members
    lines = comparison_lines([table])
    assert ("Table II, ESC-50 densenet201 nested pretrained: ensemble − single model: the 95 % CI includes 0 "
            "under valid_selected +3.75 [-2.50, +10.00] (n=2): no evidence of a difference.") in lines
    assert table_ensembles(results, ensemble_summary(per_fold)).display["ensemble gain"].iloc[0] == "+3.75"


def test_split_modes_are_compared_run_by_run(mixed):
    results, _ = mixed
    table = table_settings(results)
    rows = {r["init"]: r for r in table.display.to_dict("records")}
    pretrained = rows["pretrained"]
    # nested - paper per (seed, fold): best .90-.95, .95-.90, .85-.95, .90-.85 = -5 +5 -10 +5 -> -1.25;
    # last .85-.90, .80-.85, .85-.95, .75-.80 = -5 -5 -10 -5: resample means -5 - 1.25 K, K ~ Bin(4, 1/4),
    # P(K >= 3) = 5.1 %, P(K = 4) = 0.4 % -> [-8.75, -5]
    assert pretrained["comparison"] == "nested − paper"
    assert pretrained["best_epoch"].startswith("-1.25 [") and pretrained["best_epoch"].endswith("(n=4) ~0")
    assert pretrained["last_epoch"] == "-6.25 [-8.75, -5.00] (n=4)" and pretrained["valid_selected"] == "—"
    lines = comparison_lines([table])
    assert any(line.startswith("Split modes / recipes, ESC-50 densenet201 pretrained: nested − paper: the 95 % "
                               "CI includes 0 under best_epoch -1.25") for line in lines)
    assert not any("left out" in line for line in lines)  # paper has no valid_selected: nothing to pair
    nested_only = table_settings(results[results["split"] == "nested"])
    assert nested_only.empty and "two split modes or recipes" in nested_only.to_markdown()
    per_fold = mixed[1]
    tables = build_tables(results, ensemble_summary(per_fold), per_fold)
    assert [t.name for t in tables][3] == "table_settings_paired"


def test_unmatched_runs_are_reported(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for seed, acc in ((0, .80), (1, .90), (2, .70)):
        F.write_trial(trials, data, valid=[.5], test=[acc], seed=seed)
    for seed in (0, 1):
        F.write_trial(trials, data, valid=[.5], test=[.60], seed=seed, init="random")
    table = table_pretrained_vs_random(load_results(str(tmp_path / "results")))
    diff = table.display.set_index("init").loc["pretrained − random"]
    assert diff["valid_selected"] == "+25.00 [+20.00, +30.00] (n=2)"  # seed 2 has no random partner
    assert comparison_lines([table]) == [
        "Table I, ESC-50 densenet201 nested: pretrained − random: 1 run(s) without a matching run on the other "
        "side left out of the pairs."]
