"""Sweeps on Ray Tune: the demo plan in smoke mode, a crashing trial, a killed driver, phase-1 search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from orchestrator.cli import main
from orchestrator.plan import expand_grid, load_plan
from orchestrator.sweep import plan_root, prepare_datasets, run_sweep
from orchestrator.trial import trial_id

REPO = Path(__file__).resolve().parent.parent


def write_plan(tmp_path: Path, **overrides) -> Path:
    """A small real plan on the bundled FSDD subset (32 x 32 inputs, 64 training clips per epoch)."""
    raw = {
        "name": "t", "storage": str(tmp_path / "store"),
        "datasets": {"fsdd": {"preprocess": {"dataset": "fsdd", "root": str(REPO / "data" / "fsdd-mini"),
                                             "features": {"height": 32, "width": 32}}, "folds": [2]}},
        "models": ["efficientnet_lite0"], "inits": ["pretrained", "random"], "seeds": [0],
        "optim": {"epochs": 2, "lr": 0.001, "batch_size": 16}, "max_train_clips": 64,
        "max_concurrent_trials": 2, "max_failures": 2,
    } | overrides
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def summaries(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (root / "trials").glob("*/summary.json")}


def test_demo_plan_smoke_end_to_end(ray_local, tmp_path, capsys):
    code = main(["sweep", str(REPO / "plans" / "demo.yaml"), "--smoke", "--storage", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["trials"] == summary["finished"] == 2 and summary["failed"] == []
    assert "[sweep] 1/2 trials done (0 failed)" in out and "[sweep] 2/2 trials done (0 failed)" in out
    assert "ETA 0.0 min" in out  # nothing left after the last trial
    root = tmp_path / "demo-smoke"
    done = summaries(root)
    assert sorted(s["epochs"] for s in done.values()) == [1, 1]
    assert {name.split("-")[1] for name in done} == {"pretrained", "random"}
    assert json.loads((root / "plan.json").read_text())["max_folds"] == 1
    assert json.loads((root / "search" / "best.json").read_text())["source"].startswith("plan")
    for name in done:
        assert (root / "trials" / name / "predictions.parquet").exists()
    # `rethink-audio demo --smoke` is the same plan: it reuses these trials and goes on to the report
    assert main(["demo", "--smoke", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[sweep] phase 2: all 2 trials already finished" in out
    assert "**Table I. Pretrained (ImageNet) vs random" in out and "**Table II. Single model vs deep" in out
    assert summaries(root) == done  # nothing retrained
    report = root / "report"
    assert "Integrated Gradients" in (report / "report.md").read_text() and (report / "report.html").exists()
    for figure in ("fig2a_svcca.png", "fig3_integrated_gradients_fsdd.png"):
        assert (report / "figures" / figure).stat().st_size > 1000


def test_retries_resume_from_checkpoints_and_a_deterministic_crash_costs_max_failures_plus_one(ray_local, tmp_path):
    plan = load_plan(write_plan(tmp_path, seeds=[0, 1], checkpoint_every=1))
    uris, folds = prepare_datasets(plan, plan_root(plan))
    grid = {(t.init, t.seed): t for t in expand_grid(plan, uris, folds)}
    crashes_once, always_fails = grid["random", 0], grid["pretrained", 1]
    faults = {trial_id(crashes_once): {"after_epoch": 1, "log": str(tmp_path / "once.log")},
              trial_id(always_fails): {"after_epoch": 1, "log": str(tmp_path / "always.log"), "times": 99}}
    result = run_sweep(plan, faults=faults)
    assert (tmp_path / "once.log").read_text().splitlines() == ["epoch 1"]  # the fault really happened
    # one retry budget per trial, owned by Tune (max_failures 2): 3 attempts, not (2 + 1)^2
    assert len((tmp_path / "always.log").read_text().splitlines()) == plan.max_failures + 1
    assert result.failed == [trial_id(always_fails)] and result.finished == 3 and result.trials == 4
    done = summaries(Path(result.root))
    assert done[trial_id(crashes_once)]["resumed_at_epoch"] == 2  # restarted from the epoch-1 checkpoint
    epochs = pq.read_table(Path(result.root) / "trials" / trial_id(crashes_once) / "epochs.parquet").to_pandas()
    assert epochs["epoch"].tolist() == [1, 2]
    assert [s["resumed_at_epoch"] for n, s in done.items() if n != trial_id(crashes_once)] == [None, None]


def test_resume_applies_an_edited_plan(ray_local, tmp_path, capsys):
    plan = load_plan(write_plan(tmp_path, optim={"epochs": 1, "lr": 0.001, "batch_size": 16}, max_failures=0))
    uris, folds = prepare_datasets(plan, plan_root(plan))
    broken = next(t for t in expand_grid(plan, uris, folds) if t.init == "random")
    first = run_sweep(plan, faults={trial_id(broken): {"after_epoch": 1, "log": str(tmp_path / "f.log"), "times": 9}})
    assert first.failed == [trial_id(broken)] and first.finished == 1
    root = Path(first.root)
    kept = {n: (root / "trials" / n / "summary.json").stat().st_mtime_ns for n in summaries(root)}
    edited = load_plan(write_plan(tmp_path, optim={"epochs": 1, "lr": 0.001, "batch_size": 16}, max_failures=0,
                                  inits=["pretrained"], seeds=[0, 1]))
    capsys.readouterr()
    result = run_sweep(edited, resume=True)
    out = capsys.readouterr().out
    assert "--resume: the plan changed since the last run: 1 new trial(s) will run, 1 trial(s) no longer" in out
    assert trial_id(broken) in out  # named as dropped
    assert result.trials == result.finished == 2 and result.failed == []
    assert len((tmp_path / "f.log").read_text().splitlines()) == 1  # the dropped trial was not started again
    assert all((root / "trials" / n / "summary.json").stat().st_mtime_ns == t for n, t in kept.items())  # reused
    assert {n.split("-seed")[1][0] for n in summaries(root) if "-pretrained-" in n} == {"0", "1"}


def test_killed_driver_resumes_with_one_result_per_grid_point(ray_local, tmp_path):
    plan_file = write_plan(tmp_path, seeds=[0, 1], max_concurrent_trials=1)
    root = tmp_path / "store" / "t"
    env = os.environ | {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", str(plan_file)], cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 420
    while time.time() < deadline and not (summaries(root) and list((root / "grid").glob("experiment_state*"))):
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, mid-sweep
    driver.wait()
    before = {name: (root / "trials" / name / "summary.json").stat().st_mtime_ns for name in summaries(root)}
    assert 1 <= len(before) < 4
    result = run_sweep(load_plan(plan_file), resume=True)
    done = summaries(root)
    assert result.trials == result.finished == 4 and len(done) == 4 and result.failed == []
    assert all((root / "trials" / n / "summary.json").stat().st_mtime_ns == t for n, t in before.items())
    assert all(s["epochs"] == 2 for s in done.values())


def test_resume_without_a_sweep_is_a_clear_error(ray_local, tmp_path, capsys):
    assert main(["sweep", str(write_plan(tmp_path)), "--resume"]) == 2
    assert "no sweep to restore" in capsys.readouterr().err


def test_phase1_search_scores_on_valid_and_feeds_phase2(ray_local, tmp_path):
    plan = load_plan(write_plan(tmp_path, inits=["pretrained"], optim={"epochs": 1, "lr": 0.001, "batch_size": 16},
                                search={"enabled": True, "num_samples": 2, "max_concurrent": 2, "fold": 3}))
    result = run_sweep(plan)
    root = Path(result.root)
    best = json.loads((root / "search" / "best.json").read_text())
    assert best["source"] == "hyperopt TPE" and best["scored_on"] == "valid_acc" and best["inner_fold"] == 3
    tried = pq.read_table(root / "search" / "trials.parquet").to_pandas()
    assert len(tried) == 2 and tried["valid_acc"].max() == pytest.approx(best["valid_acc"])
    assert ((tried["lr"] - 1e-3).abs() < 1e-12).any()  # the plan's own recipe is evaluated first
    assert result.optim.lr == best["optim"]["lr"] and result.optim.batch_size in (16, 32, 64)
    phase2 = json.loads(next((root / "trials").glob("*/config.json")).read_text())
    assert phase2["trial"]["optim"]["lr"] == best["optim"]["lr"]
