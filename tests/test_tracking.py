"""Opt-in MLflow tracking: a real tiny sweep logged to an sqlite store and read back with MLflow's own client;
plan validation of the tracking section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.plan import load_plan
from orchestrator.plan_check import PlanError
from orchestrator.sweep import run_sweep
from orchestrator.tracking import EPOCH_METRICS, flatten, local_uri
from sweep_helpers import write_plan as sweep_plan

def write_plan(tmp_path: Path, **overrides) -> Path:
    """tests/test_sweep.py's tiny FSDD plan (test fold 2, 32 x 32 inputs, 64 training clips per epoch), named
    "tracked", failures not retried."""
    return sweep_plan(tmp_path, **({"name": "tracked", "max_failures": 0} | overrides))


def test_sweep_logs_every_trial_to_mlflow(tiny_fsdd, tmp_path):
    from mlflow.tracking import MlflowClient

    # relative to the plan file, like every local path of a plan
    plan = load_plan(write_plan(tmp_path, tracking={"mlflow": "sqlite:///mlflow.db"},
                                search={"enabled": True, "num_samples": 1, "epochs": 1}, dataset=tiny_fsdd))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert plan.tracking.mlflow == uri
    result = run_sweep(plan)
    assert result.finished == result.trials == 2 and not result.failed

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tracked")  # the plan's name
    runs = client.search_runs([experiment.experiment_id])
    grid = {r.info.run_name: r for r in runs if r.data.tags["phase"] == "grid"}
    search = [r for r in runs if r.data.tags["phase"] == "search"]
    trials = {p.name for p in (tmp_path / "store" / "tracked" / "trials").iterdir()}
    assert set(grid) == trials and len(grid) == 2  # one run per phase-2 trial, named by its trial id
    card = json.loads(next((tmp_path / "store" / "tracked" / "datasets").glob("*/dataset.json")).read_text())
    for name, run in grid.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["results_root"] == result.root and run.data.tags["tune_trial"] == name
        params = run.data.params
        assert params["model"] == "efficientnet_lite0" and params["init"] in ("pretrained", "random")
        assert (params["seed"], params["fold"], params["split"]) == ("0", "2", "nested")
        assert params["optim.epochs"] == "2" and params["loss.name"] == "ce"
        assert params["dataset_version"] == card["version"]
        for key in ("valid_acc", "test_acc", "train_loss", "lr", "samples_per_s"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == [1, 2], key  # one value per epoch, at step = epoch
        summary = json.loads((tmp_path / "store" / "tracked" / "trials" / name / "summary.json").read_text())
        for key in ("best_epoch", "last_epoch", "valid_selected", "valid_selected_epoch", "valid_selected_valid_acc"):
            assert run.data.metrics[key] == pytest.approx(summary[key]), key
        assert run.data.metrics["mean_samples_per_s"] == pytest.approx(summary["samples_per_s"])
        assert "time_this_iter_s" not in run.data.metrics  # Tune's bookkeeping stays out

    # phase 1's search trial: its own run, named by the trial id its records use, with the sampled recipe
    (run,) = search
    search_trials = {p.name for p in (tmp_path / "store" / "tracked" / "search" / "trials").iterdir()}
    assert run.info.run_name in search_trials and run.data.tags["search"] == run.data.params["search"]
    assert run.data.params["optim.epochs"] == "1" and len(client.get_metric_history(run.info.run_id, "test_acc")) == 1


def test_tracking_uri_is_checked_with_the_other_plan_problems(tmp_path):
    with pytest.raises(PlanError) as err:
        load_plan(write_plan(tmp_path, tracking={"mlflow": "mlruns"}, seeds=[]))
    assert "plan.tracking.mlflow 'mlruns' is not an MLflow tracking URI" in str(err.value)
    assert "plan.seeds" in str(err.value)  # every problem at once
    with pytest.raises(PlanError, match=r"unknown key\(s\) plan.tracking.uri"):
        load_plan(write_plan(tmp_path, tracking={"uri": "sqlite:///x.db"}))
    with pytest.raises(ConfigError, match="plan.tracking.experiment without plan.tracking.mlflow"):
        load_plan(write_plan(tmp_path, tracking={"experiment": "x"}))
    plan = load_plan(write_plan(tmp_path))
    assert plan.tracking.mlflow is None  # off by default


@pytest.mark.parametrize("module", ["mlflow", "sqlalchemy"])
def test_missing_mlflow_fails_early_with_the_install_command(tmp_path, monkeypatch, module):
    # a None entry in sys.modules makes `import module` raise ImportError, as when it is not installed
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(PlanError, match=rf"needs the Python package '{module}'.*pip install 'rethink-audio\[mlflow\]'"):
        load_plan(write_plan(tmp_path, tracking={"mlflow": "sqlite:///mlflow.db"}))
    if module == "sqlalchemy":  # only a database store needs SQLAlchemy
        assert load_plan(write_plan(tmp_path, tracking={"mlflow": "http://localhost:5000"})).tracking.mlflow


def test_params_and_local_store_paths():
    assert flatten({"model": "m", "optim": {"lr": 0.1, "milestones": [1, 2]}, "mask": None, "custom": {}}) == {
        "model": "m", "optim.lr": "0.1", "optim.milestones": "[1, 2]", "mask": "None", "custom": "{}"}
    assert local_uri("sqlite:///db/m.db", "/plans") == "sqlite:////plans/db/m.db"
    assert local_uri("sqlite:////abs/m.db", "/plans") == "sqlite:////abs/m.db"
    assert local_uri("file:mlruns", "/plans") == "file:/plans/mlruns"
    assert local_uri("https://mlflow.example:5000", "/plans") == "https://mlflow.example:5000"
    assert "valid_acc" in EPOCH_METRICS and "test_acc" in EPOCH_METRICS


def test_a_logging_failure_is_reported_and_does_not_stop_the_sweep(tmp_path, capsys, monkeypatch):
    """A trial whose logging fails (here: its dataset card is unreadable) is printed once and skipped; the
    callback, on a file: store (MLflow 3 refuses those unless asked), keeps serving the other hooks."""
    from mlflow.tracking import MlflowClient
    from ray.tune.experiment import Trial

    from orchestrator.plan import TrackingConfig
    from orchestrator.tracking import mlflow_callback
    from orchestrator.tune_run import decode

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after the test (the callback sets it)
    uri = f"file:{tmp_path / 'mlruns'}"
    callback = mlflow_callback(TrackingConfig(mlflow=uri, experiment="exp"), "plan", str(tmp_path), decode)
    callback.setup()
    config = {"trial": {"data": str(tmp_path / "no-such-dataset")}, "trials_root": str(tmp_path / "trials")}
    trial = Trial("tune_trial", config=config, stub=True, trial_name_creator=lambda t: "t1")
    callback.log_trial_start(trial)
    callback.log_trial_result(1, trial, {"epoch": 1, "test_acc": 0.5})
    callback.log_trial_end(trial, failed=False)
    out = capsys.readouterr().out
    assert out.count("[tracking] MLflow logging of t1 (start)") == 1 and "the sweep goes on" in out
    experiment = MlflowClient(uri).get_experiment_by_name("exp")  # tracking.experiment overrides the name
    assert experiment is not None and MlflowClient(uri).search_runs([experiment.experiment_id]) == []
