"""Experiment plans: shipped plans validate, strict keys, grid expansion, smoke shrinking."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.plan import expand_grid, load_plan, smoke

PLANS = Path(__file__).resolve().parent.parent / "plans"
PAPER_FOLDS = {"esc50": [1, 2, 3, 4, 5], "us8k": list(range(1, 11)), "gtzan": [1, 2, 3, 4, 5]}


@pytest.mark.parametrize("path", sorted(PLANS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_plan_validates_and_previews_offline(path, capsys):
    """What ``rethink-audio plan PLAN`` checks, for every plan under plans/: the plan loads and validates, its
    smoke version too, and the cost preview prints (no Ray, no data read). Plans that share a results root
    (recipes-*.yaml) are named after it."""
    plan = load_plan(path)
    assert path.stem.startswith(plan.name) and plan.datasets and plan.models and plan.seeds
    assert smoke(plan).name == f"{plan.name}-smoke"
    capsys.readouterr()
    assert main(["plan", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"## Cost preview: plan {plan.name},")


def test_soundclr_plans_are_the_published_recipe():
    """SoundCLR's recipe reaches every trial: AdamW + warm-up + x0.98, max-filled masks, the linear projection
    and lone anchors as zero for hybrid, the soundclr waveform augmentation; US8K at lr 1e-4."""
    for name, lr, datasets in (("soundclr", 5e-4, {"esc10", "esc50"}), ("soundclr-us8k", 1e-4, {"us8k"})):
        plan = load_plan(PLANS / f"{name}.yaml")
        assert set(plan.datasets) == datasets
        assert all(d.preprocess.augment.kind == "soundclr" and d.preprocess.augment.copies > 0
                   for d in plan.datasets.values())
        grid = expand_grid(plan, {k: f"uri/{k}" for k in plan.datasets}, {k: [1, 2] for k in plan.datasets})
        assert {t.loss.name for t in grid} == {"ce", "hybrid"}
        for t in grid:
            assert (t.optim.optimizer, t.optim.lr, t.optim.weight_decay, t.optim.batch_size) == ("adamw", lr, 1e-3, 128)
            schedule = (t.optim.epochs, t.optim.warmup_epochs, t.optim.schedule, t.optim.gamma)
            assert schedule == (800, 10, "exponential", 0.98)
            assert t.mask.fill == "max" and t.loss.temperature == 0.05
            expected = ("linear", "zero") if t.loss.name == "hybrid" else (None, None)
            assert (t.loss.projection, t.loss.positiveless) == expected
            # as its code runs: unit-norm embeddings, every fold but the test fold, every sample augmented
            assert t.loss.l2_embedding and (t.split, t.augmented) == ("paper", "every")
        seconds = {"soundclr": 5.0, "soundclr-us8k": 4.0}[name]
        for d in plan.datasets.values():
            features = d.preprocess.features
            assert (features.recipe, features.clip_seconds, features.clip_offset) == ("soundclr", seconds, "random")
            assert features.image_width(features.sample_rate or 44100, 250) == {5.0: 431, 4.0: 345}[seconds]


def test_paper_plan_grid_is_the_papers_study():
    plan = load_plan(PLANS / "paper.yaml")
    grid = expand_grid(plan, {k: f"uri/{k}" for k in plan.datasets}, PAPER_FOLDS)
    # 3 models x 2 inits x 5 seeds x (5 + 10 + GTZAN's one 80/20 split) folds + 10 ablation inits x 5 ESC-50 folds
    assert len(grid) == 530 and len({(t.data, t.model, t.init, t.seed, t.fold) for t in grid}) == 530
    inits = collections.Counter(t.init for t in grid)
    assert inits["pretrained"] == inits["random"] == 240 and inits["fusion:2"] == inits["cutoff:3"] == 5
    assert {t.fold for t in grid if t.data == "uri/gtzan"} == {1}
    # the paper's protocol: every fold but the test fold trains, a fresh augmented draw per epoch
    assert {(t.split, t.augmented) for t in grid} == {("paper", "draw")}
    assert {name: ds.preprocess.augment.copies for name, ds in plan.datasets.items()} == {
        "esc50": 4, "us8k": 4, "gtzan": 4}
    random = next(t for t in grid if t.init == "random")
    pretrained = next(t for t in grid if t.init == "pretrained")
    assert (random.optim.epochs, random.optim.milestones) == (450, (300, 350))
    assert (pretrained.optim.epochs, pretrained.optim.step_size, pretrained.optim.lr) == (70, 30, 1e-4)
    assert all(t.use_gpu and t.download_weights for t in grid)
    shrunk = expand_grid(smoke(plan), {k: f"uri/{k}" for k in plan.datasets}, PAPER_FOLDS)
    assert len(shrunk) == 3 * 3 * 2 + 10 and {t.fold for t in shrunk} == {1} and {t.seed for t in shrunk} == {0}
    assert {t.optim.epochs for t in shrunk} == {1} and {t.max_train_clips for t in shrunk} == {64}
    assert {ds.preprocess.augment.copies for ds in smoke(plan).datasets.values()} == {1}  # augmentation checked too


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
    ({"resources": {"num_workers": 2, "gpus_per_worker": 0.5}}, "fractional GPUs only for single-worker trials"),
    ({"resources": {"gpus_per_worker": 1.5}}, "above 1 it must be a whole number of GPUs"),
    ({"checkpoint_every": 0}, "checkpoint_every"),
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


def test_fractional_gpus_pack_single_worker_trials(tmp_path):
    from orchestrator.trial import worker_resources

    raw = yaml.safe_load((PLANS / "demo.yaml").read_text()) | {
        "resources": {"gpus_per_worker": 0.25, "cpus_per_worker": 2, "custom": {"trial_slot": 1}},
        "checkpoint_every": 3, "storage": str(tmp_path)}
    raw["datasets"]["fsdd"]["preprocess"]["root"] = str(PLANS.parent / "data" / "fsdd-mini")
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(raw))
    trial = expand_grid(load_plan(tmp_path / "plan.yaml"), {"fsdd": "u"}, {"fsdd": [1, 2, 3]})[0]
    assert (trial.use_gpu, trial.gpus_per_worker, trial.cpus_per_worker) == (True, 0.25, 2)
    assert trial.custom_resources == {"trial_slot": 1} and trial.checkpoint_every == 3
    assert worker_resources(trial) == {"CPU": 2, "GPU": 0.25, "trial_slot": 1}
