"""The job entrypoints without a cluster: each is one CLI command with the job's defaults, the analyze job
on synthetic trial records (no Ray), and a clear message when the analysis package is missing. The Ray
parts run in tests/test_jobs_submit.py."""

from __future__ import annotations

import json
import sys

import pytest
from s3_fixture import REPO

import records_fixture as F
from orchestrator.cli import main
from orchestrator.plan import load_plan

sys.path.insert(0, str(REPO))  # jobs/ is not an installed package: it travels as the job's working dir
from jobs import analyze, paper, preprocess, sweep  # noqa: E402


def test_each_job_is_one_cli_command_with_the_job_defaults():
    assert sweep.arguments(["plans/paper.yaml", "--smoke"]) == ["sweep", "plans/paper.yaml", "--smoke", "--yes",
                                                                "--json"]
    assert paper.arguments(["plans/paper.yaml"]) == ["run", "plans/paper.yaml", "--yes", "--json"]
    assert analyze.arguments(["s3://b/runs/paper", "--smoke"]) == ["tables", "--results", "s3://b/runs/paper",
                                                                   "--smoke", "--json"]


@pytest.mark.parametrize("job", [sweep, analyze, paper])
def test_every_job_takes_smoke_and_documents_itself(job, capsys):
    with pytest.raises(SystemExit) as done:
        main(job.arguments(["--help"]))
    assert done.value.code == 0 and "--smoke" in capsys.readouterr().out


def test_preprocess_job_smoke_is_the_plans_smoke_dataset():
    from orchestrator.cli import build_parser, preprocess_request
    from orchestrator.plan import smoke

    argv = ["--dataset", "fsdd", "--root", "data/fsdd-mini", "--out", "s3://b/d", "--augment-copies", "3"]
    full = preprocess_request(build_parser().parse_args(preprocess.arguments(argv)))
    small = preprocess_request(build_parser().parse_args(preprocess.arguments([*argv, "--smoke"])))
    assert (full.features.height, full.augment.copies) == (128, 3)
    assert (small.features.height, small.features.width, small.augment.copies) == (32, 32, 1)
    # the same shrinking as a plan's --smoke: one definition, orchestrator.plan.smoke
    plan = load_plan(REPO / "plans" / "demo.yaml")
    shrunk = smoke(plan).datasets["fsdd"].preprocess
    assert (shrunk.features.height, shrunk.features.width) == (small.features.height, small.features.width)


def test_analyze_job_builds_the_report_of_a_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # run by hand: no Ray at all
    data = F.write_dataset(tmp_path / "ds")
    for seed in (0, 1):
        F.write_trial(tmp_path / "study" / "trials", data, valid=[0.5, 0.6], test=[0.6, 0.7], seed=seed)
    out = tmp_path / "report"
    assert main(analyze.arguments([str(tmp_path / "study"), "--out", str(out), "--no-svcca", "--no-ig"])) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["trials"] == 2 and summary["report"] == str(out / "report.html")
    assert "SVCCA off, Integrated Gradients off" in captured.err
    assert (out / "report.md").is_file() and list((out / "tables").glob("*.csv"))


def test_analyze_job_finds_a_plans_results(tmp_path):
    from analysis.cli import results_of

    assert results_of(str(REPO / "plans" / "demo.yaml"), str(tmp_path), smoke=True) == str(tmp_path / "demo-smoke")
    assert results_of("s3://bucket/runs/paper", None, smoke=False) == "s3://bucket/runs/paper"


def test_missing_analysis_package_is_a_clear_message(monkeypatch, capsys, tmp_path):
    from orchestrator.pipeline import make_report

    monkeypatch.setitem(sys.modules, "analysis.report", None)  # what an absent module looks like
    assert make_report(str(tmp_path), str(tmp_path / "out"), svcca=True, attribution=True) is None
    out = capsys.readouterr().out
    assert "tables stage unavailable" in out and "rethink-audio tables --results" in out
