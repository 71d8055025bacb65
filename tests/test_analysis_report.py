"""``build_report``: every table and figure plus report.md / report.html, from synthetic and tiny real trials."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import records_fixture as F
from analysis.collect import load_results
from analysis.report import attribution_candidates, attribution_caption, build_report

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The hand-worked sweep of test_analysis_tables, plus two resnet18 trials with checkpoints (pretrained
    from a local weights file, random), plus fusion/freeze ablations; report written to out/."""
    base = tmp_path_factory.mktemp("report")
    data = F.write_dataset(base / "ds", classes=("a", "b", "c"), clips_per_class=4)
    root = F.write_sweep(base / "results", data)
    trials = root / "trials"
    weights = F.write_weights("resnet18", base / "resnet18.pth")
    F.write_real_trial(trials, data, init="pretrained", weights=weights, final="same", n_clips=12)
    F.write_real_trial(trials, data, init="random", final="other", n_clips=12)
    for kind in ("fusion", "freeze"):
        for k in (1, 2):
            F.write_trial(trials, data, valid=[.5], test=[.6 + .1 * k], init=f"{kind}:{k}")
    written = build_report(str(root), str(base / "out"), svcca_clips=12, max_clips=2, ig_steps=8)
    return base / "out", written


def test_report_opens_with_tables_one_and_two(report):
    out, written = report
    text = (out / "report.md").read_text()
    first, second = text.index("**Table I."), text.index("**Table II.")
    assert first < second < text.index("## How to read the numbers") < text.index("## Datasets")
    # Table I's hand-worked row; the 3-epoch sweep and the 1-epoch ablations are two recipes, so a recipe column
    assert "| ESC-50 | densenet201 | nested | 3 ep | pretrained | 90.00 ± 4.08 |" in text
    # the legend lists every recipe (in recipe-id order, which a new config field may reshuffle)
    assert re.search(r"## Recipes\n\n.*\n\n(- `\w{8}`: .*\n)*- `\w{8}`: 3 ep; split nested; 8 trial\(s\)", text)
    assert "best_epoch: the best test accuracy over epochs" in text
    # paired comparisons: Table II's gain over 2 folds, too few pairs for an interval (tests/test_stats.py)
    paired = text[text.index("## Paired comparisons"):text.index("## Recipes")]
    assert "Student-t interval" in paired and "exact over all 2^n flips" in paired
    assert ("nested 3 ep pretrained: ensemble − single model: fewer than 5 matched pairs, no interval, no evidence "
            "either way: valid_selected +3.75 (pairs: -2.50, +10.00; too few pairs for an interval).") in paired
    # Table I's pretrained − random, best_epoch
    assert "+30.00 (pairs: +30.00, +25.00, +35.00, +30.00; too few pairs for an interval)" in text
    assert "3 classes, 36 clips" in text and "resized to 32 × 32" in text  # from the dataset card
    assert re.search(r"## Skipped\n\n- trial folder densenet201-pretrained-ce-fold1-seed2-\w+: unfinished", text)
    assert "Model cutoff" in text and "no finished trials with init 'cutoff:K'" in text
    assert written["report_md"] == str(out / "report.md") and written["unfinished"] == 1


def test_report_html_renders_tables_and_links_figures(report):
    out, _ = report
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<h3>Table I. Pretrained (ImageNet) vs random initialisation</h3>" in page
    assert page.count('class="dataframe results"') >= 5
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (out / src).is_file(), src


def test_every_table_and_figure_is_written(report):
    out, written = report
    for name in ("table1_pretrained_vs_random", "table2_single_vs_ensemble", "table3_published", "table_fusion",
                 "table_freeze"):
        assert {"md", "tex", "csv"} <= set(written["tables"][name]), name
        assert (out / "tables" / f"{name}.tex").read_text().startswith("\\begin{table}")
    assert set(written["tables"]["table_cutoff"]) == {"md", "tex"}  # no rows: no CSV
    expected = {"learning_curves", "fig2a_svcca", "fig2b_fusion", "fig2c_freeze", "fig3_integrated_gradients_esc50"}
    assert expected <= set(written["figures"])
    for stem in expected:
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    assert (out / "tables" / "svcca.csv").is_file() and (out / "tables" / "ensembles_per_fold.csv").is_file()
    # SVCCA ran for the resnet18 trials; the densenet201 ones have no checkpoint and are listed as skipped
    assert any("SVCCA of densenet201" in s and "no checkpoint.pt" in s for s in written["skipped"])


def test_report_with_only_unfinished_trials(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    F.write_trial(tmp_path / "results" / "trials", data, valid=[.5], test=[.5], finished=False)
    written = build_report(str(tmp_path / "results"), str(tmp_path / "out"))
    text = (tmp_path / "out" / "report.md").read_text()
    assert "No finished trials yet (1 trial folders without summary.json)" in text
    # I-III, settings, 3 ablations, representations
    assert text.count("No trials for this table") == 8 and written["figures"] == {}


def test_analysis_never_imports_ray_and_query_needs_no_torch():
    code = ("import sys\n"
            "import analysis.cli, analysis.query, analysis.tables, analysis.ensembles\n"
            "light = 'torch' in sys.modules\n"
            "import analysis.report, analysis.svcca, analysis.attribution, analysis.figures, analysis.trialnet\n"
            "print(light, sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "[]"]


def test_integrated_gradients_ranks_by_the_epoch_each_split_selects(tmp_path):
    """Under split paper valid_selected is NaN, so the trial is ranked by best_epoch (what that split selects);
    a dataset's nested configurations rank before its paper ones, and the caption states the rule."""
    data = F.write_dataset(tmp_path / "ds")
    trials = tmp_path / "results" / "trials"
    for seed in (0, 1):
        F.write_trial(trials, data, valid=None, test=[.50, .60], seed=seed, split="paper")  # densenet201
        F.write_trial(trials, data, valid=None, test=[.80, .90 - .1 * seed], seed=seed, split="paper",
                      model="resnet18")
    paper = load_results(str(tmp_path / "results"))
    ranked = attribution_candidates(paper)
    assert ranked[["model", "protocol", "seed", "fold"]].values.tolist() == [
        ["resnet18", "best_epoch", 0, 1], ["densenet201", "best_epoch", 0, 1]]
    assert ranked["score"].tolist() == pytest.approx([85.0, 60.0])
    F.write_trial(trials, data, valid=[.6, .7], test=[.60, .55], seed=0, model="resnet18")  # nested: first
    ranked = attribution_candidates(load_results(str(tmp_path / "results")))
    assert ranked[["model", "split", "protocol"]].values.tolist()[0] == ["resnet18", "nested", "valid_selected"]
    attr = SimpleNamespace(clip_ids=[1, 2], completeness_error=lambda: 0.05)
    caption = attribution_caption(attribution_candidates(paper).iloc[0], attr, 16)
    assert caption.startswith("Fig. 3: Integrated Gradients, ESC-50, resnet18 pretrained, split paper, seed 0 fold 1 "
                              "(2 clips, 16 steps")
    assert "the highest mean best_epoch (85.00 %; the epoch split paper selects" in caption
