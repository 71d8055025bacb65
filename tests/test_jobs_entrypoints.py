"""The job entrypoints without a cluster: each is one CLI command with the job's defaults, the analyze job
on synthetic trial records (no Ray), and a clear message when the analysis package is missing. The Ray
parts run in tests/test_jobs_submit.py."""

from __future__ import annotations

import argparse
import json
import runpy
import sys

import pytest
from s3_fixture import REPO

import records_fixture as F
from jobs import analyze, paper, preprocess, sweep
from orchestrator.cli import main
from orchestrator.plan import load_plan



def cli_sees(job: str, argv: list[str], monkeypatch) -> argparse.Namespace:
    """What ``python -m jobs.<job> ARGV`` hands the CLI, as the CLI's own parser reads it (nothing runs)."""
    import orchestrator.cli as cli

    seen = []
    monkeypatch.setattr(cli, "main", lambda arguments: seen.append(cli.build_parser().parse_args(arguments)) or 0)
    monkeypatch.setattr(sys, "argv", [f"jobs/{job}.py", *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_module(f"jobs.{job}", run_name="__main__")
    assert done.value.code == 0 and len(seen) == 1
    return seen[0]


@pytest.mark.filterwarnings("ignore:'jobs.*' found in sys.modules")
@pytest.mark.parametrize("job, command", [("sweep", "sweep"), ("paper", "run")])
def test_a_plan_job_is_its_cli_command_with_the_job_defaults(job, command, monkeypatch):
    args = cli_sees(job, ["plans/paper.yaml", "--smoke", "--storage", "s3://b/runs"], monkeypatch)
    assert (args.command, args.plan, args.storage, args.smoke) == (command, "plans/paper.yaml", "s3://b/runs", True)
    assert args.yes and args.json  # submitting was the confirmation; the log ends with the JSON summary


@pytest.mark.filterwarnings("ignore:'jobs.*' found in sys.modules")
def test_analyze_job_takes_its_target_as_the_results(monkeypatch):
    args = cli_sees("analyze", ["s3://b/runs/paper", "--smoke", "--out", "s3://b/report"], monkeypatch)
    assert (args.command, args.results, args.out, args.smoke, args.json) == (
        "tables", "s3://b/runs/paper", "s3://b/report", True, True)
    assert cli_sees("analyze", ["--results", "runs/demo"], monkeypatch).results == "runs/demo"


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
