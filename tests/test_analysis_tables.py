"""Collecting trial records and the paper's tables, on synthetic records with hand-worked answers.

The sweep: ESC-50, densenet201, init pretrained and random, seeds 0-1, folds 1-2, 3 epochs each.
Pretrained (valid accuracies -> test accuracies per epoch):

    seed 0 fold 1: valid .5 .7 .6 -> test .80 .90 .85   best .90  last .85  valid_selected .90 (epoch 2)
    seed 0 fold 2: valid .6 .5 .4 -> test .70 .95 .80   best .95  last .80  valid_selected .70 (epoch 1)
    seed 1 fold 1: valid .4 .5 .8 -> test .75 .80 .85   best .85  last .85  valid_selected .85 (epoch 3)
    seed 1 fold 2: valid .7 .7 .6 -> test .90 .80 .75   best .90  last .75  valid_selected .90 (tie: epoch 1)

    best           .90 .95 .85 .90  mean 90.00, std sqrt(.005/3)    = 4.08
    last_epoch     .85 .80 .85 .75  mean 81.25, std sqrt(.006875/3) = 4.79
    valid_selected .90 .70 .85 .90  mean 83.75, std sqrt(.026875/3) = 9.46
    best - valid_selected: 0 .25 0 0 -> +6.25

Random: every trial valid .5 .6 .7 -> test .50 .60 .55: best 60, last 55, valid_selected 55 (std 0), gap +5.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import records_fixture as F
from analysis.collect import COLUMNS, load_epochs, load_predictions, load_results
from analysis.ensembles import ensemble_per_fold, ensemble_summary
from analysis.tables import build_tables, table_ablation, table_ensembles, table_pretrained_vs_random
from orchestrator.errors import StorageError


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("sweep")
    data = F.write_dataset(base / "esc50-paper3ch-hash")
    return str(F.write_sweep(base / "results", data))


@pytest.fixture(scope="module")
def results(sweep) -> pd.DataFrame:
    return load_results(sweep)


@pytest.fixture(scope="module")
def ensembles(sweep, results) -> pd.DataFrame:
    return ensemble_summary(ensemble_per_fold(load_predictions(sweep, results)))


def rows(table) -> dict[str, dict]:
    """Display rows keyed by init (Table I / ablations) for easy assertions."""
    return {r["init"]: r for r in table.display.to_dict("records")}


def test_load_results_one_row_per_finished_trial(sweep, results):
    assert list(results.columns) == COLUMNS and len(results) == 8
    (skipped,) = results.attrs["skipped"]
    assert skipped == {"trial_id": skipped["trial_id"], "path": f"{sweep}/trials/{skipped['trial_id']}/summary.json",
                       "kind": "unfinished", "reason": "unfinished: no summary.json yet"}
    assert set(results["dataset"]) == {"esc50"} and set(results["init"]) == {"pretrained", "random"}
    row = results[(results["init"] == "pretrained") & (results["seed"] == 0) & (results["fold"] == 2)].iloc[0]
    assert (row["best_epoch"], row["last_epoch"], row["valid_selected"]) == (0.95, 0.80, 0.70)
    assert (row["best_epoch_epoch"], row["valid_selected_epoch"], row["valid_fold"]) == (2, 1, 3)
    assert row["method"] == "ce" and not row["mask"] and row["epochs"] == 3 and row["train_seconds"] == 6.0
    written = pq.read_table(Path(sweep) / "results.parquet").to_pandas()
    pd.testing.assert_frame_equal(written, results, check_like=True)


def test_predictions_and_epochs_carry_the_configuration(sweep, results):
    predictions = load_predictions(sweep, results)
    assert len(predictions) == 8 * 2 * 20 and set(predictions["protocol"]) == {"valid_selected", "last_epoch"}
    one = predictions[(predictions["init"] == "pretrained") & (predictions["seed"] == 0)
                      & (predictions["fold"] == 2) & (predictions["protocol"] == "valid_selected")]
    assert len(one) == 20 and one["epoch"].unique().tolist() == [1]
    epochs = load_epochs(sweep, results)
    assert len(epochs) == 8 * 3 and {"valid_acc", "test_acc", "model", "seed", "fold"} <= set(epochs.columns)


def test_no_trials_is_a_clear_error(tmp_path):
    with pytest.raises(StorageError, match="no trial folders under .*pass the results root"):
        load_results(str(tmp_path))


def test_table1_pretrained_vs_random_known_numbers(results):
    table = table_pretrained_vs_random(results)
    got = rows(table)
    assert got["pretrained"] | {} == {
        "dataset": "ESC-50", "model": "densenet201", "split": "nested", "init": "pretrained", "best_epoch": "90.00 ± 4.08",
        "last_epoch": "81.25 ± 4.79", "valid_selected": "83.75 ± 9.46", "best − valid_selected": "+6.25",
        "runs": "4 (2 seeds × 2 folds)"}
    assert (got["random"]["best_epoch"], got["random"]["last_epoch"], got["random"]["valid_selected"],
            got["random"]["best − valid_selected"]) == ("60.00 ± 0.00", "55.00 ± 0.00", "55.00 ± 0.00", "+5.00")
    diff = got["pretrained − random"]  # 4 pairs, (fold, seed) (1, 0) (1, 1) (2, 0) (2, 1): no interval
    few = "too few pairs for an interval"
    assert (diff["best_epoch"], diff["last_epoch"], diff["valid_selected"], diff["best − valid_selected"]) == (
        f"+30.00 (pairs: +30.00, +25.00, +35.00, +30.00; {few})",
        f"+26.25 (pairs: +30.00, +30.00, +25.00, +20.00; {few})",
        f"+28.75 (pairs: +35.00, +30.00, +15.00, +35.00; {few})", "+1.25")
    numbers = table.numbers.set_index("init")
    assert numbers.loc["pretrained", "valid_selected_std"] == pytest.approx(100 * (0.026875 / 3) ** 0.5)
    assert "| ESC-50 | densenet201 | nested | pretrained | 90.00 ± 4.08 |" in table.to_markdown()
    assert r"90.00 $\pm$ 4.08" in table.to_latex() and "valid\\_selected" in table.to_latex()
    csv = pd.read_csv(pd.io.common.StringIO(table.to_csv()))
    assert csv.loc[0, "best_epoch_mean"] == pytest.approx(90.0)


def test_table2_single_vs_ensemble_known_numbers(results, ensembles):
    table = table_ensembles(results, ensembles)
    got = rows(table)["pretrained"]
    # single: per seed mean over folds (seed 0: best .925, last .825, vs .80; seed 1: .875, .80, .875)
    assert (got["single best_epoch"], got["single last_epoch"], got["single valid_selected"]) == (
        "90.00 ± 3.54", "81.25 ± 1.77", "83.75 ± 5.30")
    # ensemble = seed 1 (more confident): valid_selected .85 / .90 per fold, last_epoch .85 / .75
    assert (got["ensemble valid_selected"], got["ensemble last_epoch"]) == ("87.50 ± 3.54", "80.00 ± 7.07")
    assert got["ensemble gain"] == "+3.75" and got["best − valid_selected (single)"] == "+6.25"
    assert (got["seeds"], got["folds"]) == ("2", "2")
    random = rows(table)["random"]  # identical members: ensemble = single model
    assert random["ensemble valid_selected"] == "55.00 ± 0.00" and random["ensemble gain"] == "+0.00"
    assert "valid_selected for split nested, best_epoch for split paper" in table.note
    assert "ensemble best_epoch" not in table.display.columns  # nested trials store no best_epoch predictions


def test_table3_puts_published_rows_beside_ours(results, ensembles):
    table3 = build_tables(results, ensembles)[2]
    methods = table3.display["method"].tolist()
    assert methods[:5] == ["Multi-Stream CNN with temporal attention", "Attention CRNN", "ES-ResNet",
                           "DenseNet ensemble (the paper's 'Ours')", "SoundCLR (hybrid loss)"]
    assert table3.display["reported"].tolist()[:5] == ["84.90", "86.10", "91.50", "92.89", "93.40"]
    # each published number says how it was measured: SoundCLR's is one held-out fold, not a CV mean
    assert "Nasiri & Hu 2021: ResNet-50, hybrid loss; fold 1 held out" in table3.note
    assert "Palanisamy et al. 2020, Table III: cross-validation over test folds" in table3.note
    assert table3.numbers.loc[table3.numbers["reported"].notna(), "protocol"].notna().all()
    ours = table3.display.set_index("method")
    assert ours.loc["densenet201 pretrained, 2-seed ensemble", "valid_selected"] == "87.50 ± 3.54"
    assert ours.loc["densenet201 pretrained, 2-seed ensemble", "best_epoch"] == "—"
    assert "Palanisamy et al. 2020, Table III" in table3.to_markdown()
    assert "UrbanSound8K" not in table3.to_markdown()  # only datasets the results hold


@pytest.mark.parametrize("kind", ["fusion", "freeze"])
def test_ablation_figures_under_split_paper_draw_the_protocol_it_selects(tmp_path, monkeypatch, kind):
    """Under split paper valid_selected is NaN: the curves and the pretrained/random references use
    best_epoch, the epoch that split selects, and no empty valid_selected series is drawn."""
    from analysis import figures
    from orchestrator import storage

    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for init in ("pretrained", "random", f"{kind}:1", f"{kind}:2"):
        for seed in (0, 1):
            F.write_trial(trials, data, valid=None, test=[.5, .6 + .1 * seed], seed=seed, init=init, split="paper")
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, out, stem: drawn.append(fig) or [stem])
    draw = figures.figure_fusion if kind == "fusion" else figures.figure_freeze
    assert draw(load_results(str(tmp_path / "results")), storage.resolve(str(tmp_path / "out")))
    labels = drawn[0].axes[0].get_legend_handles_labels()[1]
    assert labels and all("valid_selected" not in label for label in labels)
    reference = "random init, best_epoch" if kind == "fusion" else "nothing frozen (pretrained), best_epoch"
    assert reference in labels and f"{kind}:K, best_epoch" in labels


def test_cutoff_table_against_full_model(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for init, accs in (("pretrained", (.80, .90)), ("cutoff:3", (.70, .80)), ("cutoff:2", (.60, .60))):
        for seed, acc in enumerate(accs):
            F.write_trial(trials, data, valid=[.5], test=[acc], seed=seed, init=init)
    table = table_ablation(load_results(str(tmp_path / "results")), "cutoff")
    assert table.display["init"].tolist() == ["pretrained (full, 4 blocks)", "cutoff:3 (block 4 removed)",
                                              "cutoff:2 (blocks 3-4 removed)"]
    assert table.display["valid_selected"].tolist() == ["85.00 ± 7.07", "75.00 ± 7.07", "60.00 ± 0.00"]
    # paired on seed: cutoff:3 -10, -10; cutoff:2 -20, -30; two pairs: no interval
    assert table.display["Δ vs pretrained (valid_selected)"].tolist() == [
        "+0.00", "-10.00 (pairs: -10.00, -10.00; too few pairs for an interval)",
        "-25.00 (pairs: -20.00, -30.00; too few pairs for an interval)"]
    table1 = table_pretrained_vs_random(load_results(str(tmp_path / "results")))
    assert table1.display["init"].tolist() == ["pretrained"]  # no random trials: no difference row


def test_two_versions_of_one_dataset_are_never_pooled(tmp_path):
    trials = tmp_path / "results" / "trials"
    for version, acc in (("aaaa1111xyz", 0.6), ("bbbb2222xyz", 0.9)):
        data = F.write_dataset(tmp_path / version, version=version)
        F.write_trial(trials, data, valid=[.5], test=[acc])
    results = load_results(str(tmp_path / "results"))
    assert sorted(results["dataset"]) == ["esc50@aaaa1111", "esc50@bbbb2222"]
    assert set(results["dataset_name"]) == {"esc50"}
    labels = table_pretrained_vs_random(results).display[["dataset", "valid_selected"]].values.tolist()
    assert labels == [["ESC-50@aaaa1111", "60.00"], ["ESC-50@bbbb2222", "90.00"]]


def test_tables_without_rows_say_so(results, ensembles):
    for kind in ("cutoff", "fusion", "freeze"):
        table = table_ablation(results, kind)
        assert table.empty and f"no finished trials with init '{kind}:K'" in table.to_markdown()
        assert table.to_csv() == "" and "No trials for this table" in table.to_latex()
    empty = results.iloc[:0]
    for table in build_tables(empty, ensembles.iloc[:0]):
        assert table.empty and "No trials for this table" in table.to_markdown()
