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
from jobs import analyze, paper, sweep
from orchestrator.cli import main



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


@pytest.mark.filterwarnings("ignore:'jobs.*' found in sys.modules")
def test_preprocess_job_smoke_overrides_the_sizes_it_was_given(monkeypatch):
    given = ["--dataset", "fsdd", "--root", "data/fsdd-mini", "--out", "s3://b/d", "--height", "64",
             "--augment-copies", "4"]
    plain = cli_sees("preprocess", given, monkeypatch)
    assert (plain.command, plain.dataset, plain.out, plain.height, plain.augment_copies) == (
        "preprocess", "fsdd", "s3://b/d", 64, 4)
    smoke = cli_sees("preprocess", [*given, "--smoke"], monkeypatch)
    assert (smoke.dataset, smoke.root, smoke.height, smoke.width, smoke.augment_copies) == (
        "fsdd", "data/fsdd-mini", 32, 32, 0)


@pytest.mark.parametrize("job", [sweep, analyze, paper])
def test_every_job_takes_smoke_and_documents_itself(job, capsys):
    with pytest.raises(SystemExit) as done:
        main(job.arguments(["--help"]))
    assert done.value.code == 0 and "--smoke" in capsys.readouterr().out


def test_analyze_job_builds_the_report_of_a_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # run by hand: no Ray at all
    data = F.write_dataset(tmp_path / "ds")
    for seed in (0, 1):
        F.write_trial(tmp_path / "study" / "trials", data, valid=[0.5, 0.6], test=[0.6, 0.7], seed=seed)
    out = tmp_path / "report"
    assert main(analyze.arguments([str(tmp_path / "study"), "--out", str(out), "--smoke"])) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["trials"] == 2 and summary["report"] == str(out / "report.html")
    assert "SVCCA off, Integrated Gradients off" in captured.err  # --smoke
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
