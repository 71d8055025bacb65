"""Experiment plans: shipped plans validate, strict keys, grid expansion, smoke shrinking."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import ConfigError
from orchestrator.plan import expand_grid, load_plan, smoke

PLANS = Path(__file__).resolve().parent.parent / "plans"
PAPER_FOLDS = {"esc50": [1, 2, 3, 4, 5], "us8k": list(range(1, 11)), "gtzan": [1, 2, 3, 4, 5]}


@pytest.mark.parametrize("name", ["demo", "paper", "soundclr"])
def test_shipped_plans_validate(name):
    plan = load_plan(PLANS / f"{name}.yaml")
    assert plan.name == name and plan.datasets


def test_paper_plan_grid_is_the_papers_study():
    plan = load_plan(PLANS / "paper.yaml")
    grid = expand_grid(plan, {k: f"uri/{k}" for k in plan.datasets}, PAPER_FOLDS)
    # 3 models x 2 inits x 5 seeds x 20 folds + 10 ablation inits x 5 ESC-50 folds
    assert len(grid) == 650 and len({(t.data, t.model, t.init, t.seed, t.fold) for t in grid}) == 650
    inits = collections.Counter(t.init for t in grid)
    assert inits["pretrained"] == inits["random"] == 300 and inits["fusion:2"] == inits["cutoff:3"] == 5
    random = next(t for t in grid if t.init == "random")
    pretrained = next(t for t in grid if t.init == "pretrained")
    assert (random.optim.epochs, random.optim.milestones) == (450, (300, 350))
    assert (pretrained.optim.epochs, pretrained.optim.step_size, pretrained.optim.lr) == (70, 30, 1e-4)
    assert all(t.use_gpu and t.download_weights for t in grid)
    shrunk = expand_grid(smoke(plan), {k: f"uri/{k}" for k in plan.datasets}, PAPER_FOLDS)
    assert len(shrunk) == 3 * 3 * 2 + 10 and {t.fold for t in shrunk} == {1} and {t.seed for t in shrunk} == {0}
    assert {t.optim.epochs for t in shrunk} == {1} and {t.max_train_clips for t in shrunk} == {64}


def test_demo_plan_paths_are_relative_to_the_plan_file():
    plan = load_plan(PLANS / "demo.yaml")
    assert plan.storage == str((PLANS.parent / "runs").resolve())
    assert plan.datasets["fsdd"].preprocess.root == str((PLANS.parent / "data" / "fsdd-mini").resolve())
    assert len(expand_grid(plan, {"fsdd": "u"}, {"fsdd": [1, 2, 3, 4, 5, 6]})) == 2 * 3 * 2


@pytest.mark.parametrize("patch,message", [
    ({"optim": {"lrr": 1}}, "unknown key(s) plan.optim.lrr"),
    ({"datasets": {"fsdd": {"preprocess": {"dataset": "fsdd", "root": "x", "featurs": {}}}}},
     "unknown key(s) plan.datasets.fsdd.preprocess.featurs"),
    ({"seed": [1]}, "unknown key(s) plan.seed; valid keys:"),
    ({"datasets": {"fsdd": {}}}, "exactly one of 'data'"),
    ({"ablations": [{"dataset": "esc50", "model": "densenet201", "inits": ["freeze:1"]}]},
     "ablation dataset 'esc50' is not in plan.datasets"),
    ({"optim": {"preset": "fast"}}, "unknown schedule preset 'fast'"),
])
def test_bad_plans_name_the_key(tmp_path, patch, message):
    raw = yaml.safe_load((PLANS / "demo.yaml").read_text()) | patch
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert message in str(err.value)


def test_missing_or_malformed_plan_files(tmp_path):
    with pytest.raises(ConfigError, match="plan file not found"):
        load_plan(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_plan(tmp_path / "bad.yaml")
