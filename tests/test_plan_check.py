"""Whole-plan validation before compute: repeated YAML keys, empty grids, unknown models / init modes,
folds outside the declared layout, unsafe names: all listed in one message with key paths, before Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.plan import load_plan
from orchestrator.plan_check import PlanError, cluster_shortfalls, load_yaml, trial_request

PLANS = Path(__file__).resolve().parent.parent / "plans"
DEMO = yaml.safe_load((PLANS / "demo.yaml").read_text())


def write_plan(tmp_path: Path, patch: dict) -> Path:
    """The demo plan (absolute paths) with ``patch`` applied; ``fsdd`` patches that dataset's entry."""
    patch = dict(patch)
    fsdd = {**DEMO["datasets"]["fsdd"], "preprocess": {**DEMO["datasets"]["fsdd"]["preprocess"],
                                                       "root": str(PLANS.parent / "data" / "fsdd-mini")}}
    fsdd.update(patch.pop("fsdd", {}))
    raw = DEMO | {"storage": str(tmp_path / "runs"), "datasets": {"fsdd": fsdd}} | patch
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_problem_is_listed_at_once_with_its_key(tmp_path):
    path = write_plan(tmp_path, {
        "name": "../../escape", "models": ["efficientnet_lite0", "resnet9"], "inits": ["pretrained", "fusion:9"],
        "seeds": [], "optim": {"epochs": 0, "batch_size": 32, "lr": 0.001, "lrr": 1},
        "fsdd": {"folds": [1, 7]}, "resources": {"num_workers": 0, "cpus_per_worker": -1, "gpus_per_worker": 0},
        "ablations": [{"dataset": "esc50", "model": "resnet9", "inits": ["freeze:7"]}],
    })
    with pytest.raises(PlanError) as error:
        load_plan(path)
    message = str(error.value)
    expected = [
        "unknown key(s) plan.optim.lrr",
        "plan.name '../../escape' must be a single folder name",
        "plan.seeds must be a non-empty list, got []",
        "plan.models[1]: unknown model 'resnet9'; valid models: densenet121",
        "plan.inits[1]: init mode 'fusion:9': K must be in 0-4",
        "plan.datasets.fsdd.folds[1]: fold 7 is not in the dataset's folds 1-6",
        "plan.ablations[0]: ablation dataset 'esc50' is not in plan.datasets ['fsdd']",
        "plan.ablations[0].model: unknown model 'resnet9'",
        "plan.ablations[0].inits[0]: init mode 'freeze:7': K must be in 0-4",
        "plan.optim.epochs must be >= 1, got 0",
        "plan.resources.cpus_per_worker must be >= 0, got -1",
        "plan.resources.num_workers must be >= 1, got 0",
    ]
    for part in expected:
        assert part in message, part
    assert message.startswith(f"{path}: {len(expected)} problems: ") and "\n" not in message
    assert not (tmp_path.parent.parent / "escape").exists()


@pytest.mark.parametrize("patch,message", [
    ({"models": []}, "plan.models must be a non-empty list"),
    ({"inits": []}, "plan.inits must be a non-empty list"),
    ({"losses": ["ce", "focal"]}, "plan.losses[1]: unknown loss 'focal'"),
    ({"seeds": [0, "one"]}, "plan.seeds[1]: input should be a valid integer (got 'one')"),
    ({"optim": {"batch_size": 0}}, "plan.optim.batch_size must be >= 1, got 0"),
    ({"weights": {"efficientnet_lite0": "missing.pth"}}, "plan.weights.efficientnet_lite0: weights file"),
    ({"weights": {"resnet9": "s3://b/k"}}, "plan.weights.resnet9: unknown model"),
    ({"datasets": {}}, "plan.datasets must name at least one dataset"),
    ({"search": {"enabled": True, "model": "vgg", "fold": 9}}, "plan.search.fold: fold 9 is not in"),
])
def test_single_problems_name_their_key(tmp_path, patch, message):
    path = write_plan(tmp_path, patch)
    with pytest.raises(PlanError) as error:
        load_plan(path)
    assert message in str(error.value)


def test_gtzan_and_version_folds_come_from_options_and_the_card(tmp_path):
    import records_fixture as F

    data = F.write_dataset(tmp_path / "ds", folds=(1, 2, 3))
    path = write_plan(tmp_path, {})
    raw = yaml.safe_load(path.read_text())
    raw["datasets"]["fsdd"] = {"data": data, "folds": [4]}
    raw["datasets"]["gtzan"] = {"preprocess": {"dataset": "gtzan", "root": "/x", "options": {"folds": 4}},
                                "folds": [5]}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PlanError) as error:
        load_plan(path)
    assert "plan.datasets.fsdd.folds[0]: fold 4 is not in the dataset's folds 1-3" in str(error.value)
    assert "plan.datasets.gtzan.folds[0]: fold 5 is not in the dataset's folds 1-4" in str(error.value)


def test_repeated_yaml_keys_are_refused_with_their_lines(tmp_path):
    path = tmp_path / "plan.yaml"
    text = (PLANS / "demo.yaml").read_text().replace("datasets:\n", "datasets:\n  fsdd:\n    data: /elsewhere\n", 1)
    path.write_text(text)
    assert yaml.safe_load(text)["datasets"]["fsdd"].get("data") is None  # PyYAML alone keeps the last silently
    with pytest.raises(PlanError, match=r"key 'fsdd' repeated at line 9 \(first at line 7\): a YAML mapping keeps "
                                        "only the last value"):
        load_plan(path)
    with pytest.raises(PlanError, match="key 'a' repeated at line 3"):
        load_yaml("a: 1\nb: {c: 1}\na: 2\n", "x.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("a: [1", "x.yaml")


def test_cli_sweep_refuses_a_bad_plan_before_ray(tmp_path, capsys, monkeypatch):
    import orchestrator.ray_runtime

    ray_starts = []  # a session-wide Ray may already run (other tests): check that this sweep never asks for one
    monkeypatch.setattr(orchestrator.ray_runtime, "ensure_ray", lambda *a, **k: ray_starts.append(a))
    path = write_plan(tmp_path, {"name": "../../escape", "inits": ["fusion:9"], "seeds": []})
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {path}: 3 problems: ")
    assert ray_starts == []
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escape").exists()


def test_optim_config_names_the_bad_value():
    from orchestrator.config import OptimConfig

    with pytest.raises(ConfigError, match=r"^optim\.epochs must be >= 1, got 0$"):
        OptimConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"^optim\.batch_size must be >= 1, got 0$"):
        OptimConfig(batch_size=0)


def test_trial_request_against_the_cluster():
    plan = load_plan(PLANS / "paper.yaml")
    assert trial_request(plan) == {"CPU": 4.0, "GPU": 1.0}
    assert cluster_shortfalls(trial_request(plan), {"CPU": 16.0}) == [
        "plan.resources: a trial needs 1 GPU, the cluster has 0"]
    assert cluster_shortfalls(trial_request(plan), {"CPU": 4.0, "GPU": 1.0}) == []


def test_supcon_in_a_plan_is_refused_with_the_fix(tmp_path):
    """losses: [supcon] would train no classifier head: the plan check says so and names 'hybrid'."""
    with pytest.raises(PlanError, match=r"plan.losses\[1\]: loss 'supcon' is not available.*use 'hybrid'"):
        load_plan(write_plan(tmp_path, {"losses": ["ce", "supcon"]}))
