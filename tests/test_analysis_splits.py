"""Split modes and recipes in the tables: trials of another split or recipe are never averaged together.

The mixed sweep (tests/records_fixture.py ``write_mixed_sweep``): the hand-worked sweep of
tests/test_analysis_tables.py (split "nested") plus the same grid on split "paper" (no validation fold):

    paper pretrained (test accuracies per epoch)      best   last
    seed 0 fold 1: .85 .95 .90                         .95    .90
    seed 0 fold 2: .80 .90 .85                         .90    .85
    seed 1 fold 1: .90 .95 .95                         .95    .95
    seed 1 fold 2: .85 .85 .80                         .85    .80
    mean ± std (ddof 1)                  91.25 ± 4.79   87.50 ± 6.45

    paper random: every trial .50 .60 .55: best 60, last 55. Seed 1 is the more confident member, so each
    ensemble follows seed 1: best_epoch .95 / .85 per fold -> 90.00 ± 7.07.

Pooled with the nested trials, pretrained best_epoch would read 90.62; each split keeps its own numbers.
"""

from __future__ import annotations

from pathlib import Path

import json

import pandas as pd
import pytest

import records_fixture as F
from analysis.collect import load_epochs, load_predictions, load_results
from analysis.ensembles import ensemble_per_fold, ensemble_summary
from analysis.recipes import recipe_id, recipe_labels, recipe_of
from analysis.figures import figure_learning_curves
from analysis.tables import table_ensembles, table_published, table_pretrained_vs_random
from orchestrator import storage
from orchestrator.config import MaskConfig, OptimConfig, TrialConfig, to_dict


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("mixed")
    return str(F.write_mixed_sweep(base / "results", F.write_dataset(base / "esc50-paper3ch-hash")))


@pytest.fixture(scope="module")
def results(mixed) -> pd.DataFrame:
    return load_results(mixed)


@pytest.fixture(scope="module")
def per_fold(mixed, results) -> pd.DataFrame:
    return ensemble_per_fold(load_predictions(mixed, results))


def by(table, *keys) -> dict[tuple, dict]:
    return {tuple(r[k] for k in keys): r for r in table.display.to_dict("records")}


def test_results_rows_carry_split_and_recipe(results):
    assert len(results) == 16 and results["split"].value_counts().to_dict() == {"nested": 8, "paper": 8}
    paper = results[results["split"] == "paper"]
    assert paper["valid_fold"].isna().all() and paper["valid_selected"].isna().all()
    assert results[results["split"] == "nested"]["valid_fold"].notna().all()
    # the split is part of the recipe: two recipes, but no recipe label (the split column says it all)
    assert results["recipe"].nunique() == 2 and set(results["recipe_label"]) == {""}


def test_table1_never_pools_the_splits_and_labels_them(results):
    table = table_pretrained_vs_random(results)
    rows = by(table, "split", "init")
    nested, paper = rows["nested", "pretrained"], rows["paper", "pretrained"]
    assert (nested["best_epoch"], nested["valid_selected"], nested["best − valid_selected"]) == (
        "90.00 ± 4.08", "83.75 ± 9.46", "+6.25")  # the nested sweep's own numbers, as if alone
    assert (paper["best_epoch"], paper["last_epoch"], paper["valid_selected"], paper["best − valid_selected"]) == (
        "91.25 ± 4.79", "87.50 ± 6.45", "—", "—")
    assert paper["runs"] == "4 (2 seeds × 2 folds)"
    diff = rows["paper", "pretrained − random"]
    assert (diff["best_epoch"], diff["last_epoch"], diff["valid_selected"], diff["best − valid_selected"]) == (
        "+31.25 (pairs: +35.00, +35.00, +30.00, +25.00; too few pairs for an interval)",
        "+32.50 (pairs: +35.00, +40.00, +30.00, +25.00; too few pairs for an interval)", "—", "—")
    assert "recipe" not in table.display.columns and "paper = trained on the k-1" in table.note


def test_ensembles_per_split_use_each_splits_stored_epoch(per_fold, results):
    assert set(per_fold["members"]) == {2}  # two seeds: never the other split's trials
    protocols = per_fold.groupby("split")["protocol"].agg(lambda p: sorted(set(p))).to_dict()
    assert protocols == {"nested": ["last_epoch", "valid_selected"], "paper": ["best_epoch", "last_epoch"]}
    table = table_ensembles(results, ensemble_summary(per_fold))
    rows = by(table, "split", "init")
    paper, nested = rows["paper", "pretrained"], rows["nested", "pretrained"]
    assert (paper["ensemble best_epoch"], paper["ensemble valid_selected"], paper["single best_epoch"]) == (
        "90.00 ± 7.07", "—", "91.25 ± 1.77")
    assert paper["ensemble gain"] == "-1.25" and paper["best − valid_selected (single)"] == "—"
    assert (nested["ensemble best_epoch"], nested["ensemble valid_selected"], nested["ensemble gain"]) == (
        "—", "87.50 ± 3.54", "+3.75")


def test_learning_curves_keep_the_splits_apart(mixed, results, tmp_path):
    epochs = load_epochs(mixed, results)
    assert epochs[epochs["split"] == "paper"]["valid_acc"].isna().all() and epochs["valid_acc"].dtype == float
    assert epochs[epochs["split"] == "nested"]["valid_acc"].notna().all()
    written = figure_learning_curves(epochs, storage.resolve(str(tmp_path)))
    assert [Path(p).suffix for p in written] == [".png", ".svg"] and Path(written[0]).stat().st_size > 1000


def test_table3_compares_published_rows_with_the_paper_split_only(results, per_fold):
    table = table_published(results, ensemble_summary(per_fold))
    shown = table.display
    assert shown["split"].tolist() == [""] * 5 + ["paper"] * 4 + ["nested"] * 4  # like for like first
    assert shown["source"].tolist()[5:] == ["this run"] * 8
    ours = shown.set_index(["split", "method"])
    ensemble = ours.loc[("paper", "densenet201 pretrained, 2-seed ensemble")]
    assert (ensemble["best_epoch"], ensemble["valid_selected"], ensemble["best − valid_selected"]) == (
        "90.00 ± 7.07", "—", "—")
    honest = ours.loc[("nested", "densenet201 pretrained, 2-seed ensemble")]
    assert honest["valid_selected"] == "87.50 ± 3.54"
    assert "compare like for like only with our split paper rows" in table.note
    assert "No split paper trials" not in table.note
    nested_only = table_published(results[results["split"] == "nested"], ensemble_summary(per_fold))
    assert "No split paper trials for ESC-50" in nested_only.note


def test_two_learning_rates_give_two_rows(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for seed, (paper_lr, high_lr) in enumerate(((.60, .80), (.70, .90))):
        F.write_trial(trials, data, valid=[.5], test=[paper_lr], seed=seed)  # lr 1e-4, batch 32
        F.write_trial(trials, data, valid=[.5], test=[high_lr], seed=seed, optim={"lr": 1e-3, "batch_size": 64})
        F.write_trial(trials, data, valid=[.5], test=[.40], seed=seed, init="random")
    results = load_results(str(tmp_path / "results"))
    assert set(results["recipe_label"]) == {"lr 1e-4 · bs 32", "lr 1e-3 · bs 64"}
    table = table_pretrained_vs_random(results)
    got = [(r["recipe"], r["init"], r["valid_selected"]) for r in table.display.to_dict("records")]
    assert sorted(got) == sorted([
        ("lr 1e-4 · bs 32", "pretrained", "65.00 ± 7.07"), ("lr 1e-4 · bs 32", "random", "40.00 ± 0.00"),
        ("lr 1e-4 · bs 32", "pretrained − random", "+25.00 (pairs: +20.00, +30.00; too few pairs for an interval)"),
        ("lr 1e-3 · bs 64", "pretrained", "85.00 ± 7.07")])
    paper_recipe = [init for recipe, init, _ in got if recipe == "lr 1e-4 · bs 32"]
    assert paper_recipe == ["pretrained", "random", "pretrained − random"]  # the difference of its own recipe
    per_fold = ensemble_per_fold(load_predictions(str(tmp_path / "results"), results))
    assert set(per_fold["members"]) == {2}
    table2 = table_ensembles(results, ensemble_summary(per_fold))
    assert sorted(table2.display[table2.display["init"] == "pretrained"]["recipe"]) == [
        "lr 1e-3 · bs 64", "lr 1e-4 · bs 32"]


def test_random_init_on_its_own_schedule_is_still_compared(tmp_path):
    """A plan's ``random_optim`` gives random init another recipe: the pair is still compared, each row
    labelled with its recipe and the difference row with none."""
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    F.write_trial(trials, data, valid=[.5], test=[.80])
    F.write_trial(trials, data, valid=[.5], test=[.50], init="random", optim={"lr": 1e-3, "milestones": [300, 350]})
    got = [(r["init"], r["recipe"], r["valid_selected"])
           for r in table_pretrained_vs_random(load_results(str(tmp_path / "results"))).display.to_dict("records")]
    assert got == [("pretrained", "lr 1e-4 · milestones none", "80.00"),
                   ("random", "lr 1e-3 · milestones 300,350", "50.00"),
                   ("pretrained − random", "", "+30.00 (pairs: +30.00; too few pairs for an interval)")]


# ---------------------------------------------------------------- what a recipe is


def test_missing_keys_mean_what_the_trial_ids_say():
    """A record written before a field existed pools with one that holds the field at its old-behaviour value
    (the value trial ids leave out): for every such field."""
    from orchestrator.config import LossConfig, MaskConfig
    from orchestrator.study import ID_DEFAULTS

    for path, old in ID_DEFAULTS.items():
        *sections, key = path.split(".")
        cfg = to_dict(TrialConfig(data="d", mask=MaskConfig(), loss=LossConfig()))
        holder = cfg[sections[0]] if sections else cfg
        holder[key] = old
        record = json.loads(json.dumps(cfg))
        del (record[sections[0]] if sections else record)[key]
        assert recipe_of(record) == recipe_of(cfg), path


def test_recipe_is_the_config_minus_what_varies_within_a_pool():
    base = TrialConfig(data="/d/esc50-a", optim=OptimConfig(epochs=5))
    same = TrialConfig(data="/elsewhere/esc50-a", model="resnet18", init="random", seed=3, fold=2, valid_fold=4,
                       optim=OptimConfig(epochs=5), num_workers=2, use_gpu=True, gpus_per_worker=1.0,
                       cpus_per_worker=4, custom_resources={"x": 1}, checkpoint_every=1, weights="/w.pt")
    assert recipe_of(to_dict(base)) == recipe_of(to_dict(same))
    for other in (dict(optim=OptimConfig(epochs=6)), dict(split="paper"), dict(augmented="none"),
                  dict(max_train_clips=64)):
        changed = TrialConfig(**({"data": "/d/esc50-a", "optim": OptimConfig(epochs=5)} | other))
        assert recipe_of(to_dict(changed)) != recipe_of(to_dict(base)), other
    # a field this code does not know (added later) joins the recipe without any change here
    newer = to_dict(base)
    newer["optim"]["lookahead_steps"] = 3
    assert recipe_labels({recipe_id(r): r for r in (recipe_of(to_dict(base)), recipe_of(newer))}) == {
        recipe_id(recipe_of(to_dict(base))): "lookahead_steps —", recipe_id(recipe_of(newer)): "lookahead_steps 3"}


def test_masks_are_a_column_not_a_recipe_label():
    masked, plain = (recipe_of(to_dict(TrialConfig(data="/d", mask=m))) for m in (MaskConfig(), None))
    assert masked != plain and set(recipe_labels({"a": masked, "b": plain}).values()) == {""}


def test_records_older_than_a_field_pool_with_its_old_behaviour():
    old = to_dict(TrialConfig(data="/d", mask=MaskConfig(fill="mean")))
    del old["split"], old["augmented"], old["mask"]["fill"]  # written before these fields existed
    then = TrialConfig(data="/d", augmented="all", mask=MaskConfig(fill="mean"))
    assert recipe_of(old) == recipe_of(to_dict(then))
    assert recipe_of(old) != recipe_of(to_dict(TrialConfig(data="/d", augmented="draw", mask=MaskConfig(fill="mean"))))
    unmasked = to_dict(TrialConfig(data="/d"))
    assert not any(k.startswith("mask") for k in recipe_of(unmasked))  # no mask.fill without masks
