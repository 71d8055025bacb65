"""A modern recipe (AdamW, warm-up + cosine, mixup, label smoothing) piece by piece against hand-worked
numbers, from its plan, and as a real trial on the bundled FSDD subset that resumes from its checkpoint with
the uninterrupted curve; inputs standardised with the training folds' statistics from the dataset card. It is
no named preset: it lost to the paper's recipe (README "A modern recipe")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.trialnet import final_network, read_trial
from orchestrator import spectra
from orchestrator.config import SCHEDULE_PRESETS, LossConfig, MaskConfig, OptimConfig, TrialConfig
from orchestrator.errors import ConfigError, StorageError
from orchestrator.models import Standardize
from orchestrator.losses import make_loss
from orchestrator.plan import expand_grid, load_plan
from orchestrator.training import TrainStep, make_optimizer, make_scheduler, mixup
from orchestrator.trial import trial_id

PLANS = Path(__file__).resolve().parent.parent / "plans"
from resume_check import crash_resume_compare


def lrs(optim: OptimConfig) -> list[float]:
    """The learning rate of every epoch, stepping once per epoch as the trial loop does."""
    optimizer = make_optimizer(nn.Linear(2, 2), optim)
    scheduler = make_scheduler(optimizer, optim)
    out = []
    for _ in range(optim.epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_then_cosine_by_hand():
    """W = 2 warm-up epochs (0.1 + 0.9 (e + 1) / 2: 0.55, 1), then half a cosine over the T = 4 epochs left:
    0.5 (1 + cos(pi a / 4)) for a = 0..3 = 1, 0.853553, 0.5, 0.146447."""
    got = lrs(OptimConfig(lr=1.0, epochs=6, warmup_epochs=2, schedule="cosine", optimizer="adamw"))
    assert got == pytest.approx([0.55, 1.0, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627], rel=1e-12)
    # no warm-up: cosine from the first epoch, 0.5 (1 + cos(pi e / 4))
    assert lrs(OptimConfig(lr=2.0, epochs=4, schedule="cosine")) == pytest.approx(
        [2.0, 1.7071067811865475, 1.0, 0.2928932188134524], rel=1e-12)


# The modern side of plans/recipes-modern.yaml (at the demo's scale)
MODERN = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1, "schedule": "cosine",
          "mixup_alpha": 0.3, "label_smoothing": 0.1}


def test_modern_fields_and_their_validation():
    optim = OptimConfig(**{**MODERN, "epochs": 70, "warmup_epochs": 5})
    assert lrs(optim)[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 64 / 65)), rel=1e-12)  # ~6e-7
    assert "modern" not in SCHEDULE_PRESETS  # it lost to the paper's recipe: no named preset
    for bad, message in (({"mixup_alpha": -0.1}, "optim.mixup_alpha must be >= 0"),
                         ({"label_smoothing": 1.0}, r"optim.label_smoothing must be in \[0, 1\)"),
                         ({"schedule": "cosine", "milestones": (3,)}, "milestones only apply")):
        with pytest.raises(ConfigError, match=message):
            OptimConfig(**bad)
    for key in ("mixup_alpha", "label_smoothing"):
        with pytest.raises(ConfigError, match=f"optim.{key} applies to loss 'ce' only"):
            TrialConfig(data="d", optim=OptimConfig(**{key: 0.2}), loss=LossConfig(name="hybrid"))


def test_modern_recipe_from_its_plan():
    plan = load_plan(PLANS / "recipes-modern.yaml")
    trials = expand_grid(plan, {"fsdd": "uri"}, {"fsdd": [1, 2]})
    assert len(trials) == 6 and {t.seed for t in trials} == {0, 1, 2}
    for t in trials:
        o = t.optim
        assert (o.optimizer, o.weight_decay, o.schedule, o.mixup_alpha, o.label_smoothing) == (
            "adamw", 0.05, "cosine", 0.3, 0.1)
        assert (o.epochs, o.lr, o.warmup_epochs, t.mask.max_freq, t.split) == (6, 1e-3, 1, 8, "nested")
    paper = expand_grid(load_plan(PLANS / "recipes.yaml"), {"fsdd": "uri"}, {"fsdd": [1, 2]})
    # the two sides differ only in recipe: same seeds, folds, epochs, lr; different trial ids
    assert [(t.seed, t.fold, t.optim.epochs, t.optim.lr) for t in paper] == [
        (t.seed, t.fold, t.optim.epochs, t.optim.lr) for t in trials]
    assert not {trial_id(t) for t in paper} & {trial_id(t) for t in trials}
    assert {t.mask for t in paper} == {None}


def test_old_trial_ids_unchanged_by_the_new_fields():
    """mixup_alpha 0 and label_smoothing 0 are what every trial did before: left out of the id."""
    cfg = TrialConfig(data="d", model="resnet18", augmented="all")
    assert trial_id(cfg) == "resnet18-pretrained-ce-fold1-seed0-a982319c"  # tests/test_optim.py OLD_IDS["ce"]
    assert trial_id(TrialConfig(data="d", model="resnet18", augmented="all",
                                optim=OptimConfig(mixup_alpha=0.3))) != trial_id(cfg)
    assert trial_id(TrialConfig(data="d", model="resnet18", augmented="all", standardize=True)) != trial_id(cfg)


def test_card_input_stats_give_the_training_folds_mean_and_std(tiny_fsdd):
    """The card's per-fold sums give exactly the mean/std numpy computes over the training folds' original
    clips (augmented copies and other folds left out); a card without them is answered from the Parquet."""
    card = spectra.read_card(tiny_fsdd)
    assert set(card["input_stats"]) == {str(f) for f in card["folds"]}
    table = spectra.read_table(tiny_fsdd, folds=[1, 3], columns=["spec", "aug_copy"])
    originals = spectra.spec_array(table)[table["aug_copy"].is_null().to_numpy(zero_copy_only=False)]
    values = originals.astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1)
    mean, std = spectra.input_stats(tiny_fsdd, [1, 3])
    assert mean == pytest.approx(values.mean(axis=1), rel=1e-5) and std == pytest.approx(values.std(axis=1), rel=1e-5)
    fold1 = spectra.read_table(tiny_fsdd, folds=[1], columns=["aug_copy"])
    assert card["input_stats"]["1"]["count"] == fold1["aug_copy"].null_count * 32 * 32
    older = {k: v for k, v in card.items() if k != "input_stats"}
    again = spectra.input_stats(tiny_fsdd, [1, 3], card=older)
    assert np.allclose(again[0], mean) and np.allclose(again[1], std)
    with pytest.raises(StorageError, match="no statistics for training folds"):
        spectra.input_stats(tiny_fsdd, [99])
    standardised = (torch.from_numpy(originals.astype(np.float32)) - torch.from_numpy(mean).view(3, 1, 1)) \
        / torch.from_numpy(std).view(3, 1, 1)
    assert torch.allclose(Standardize(mean, std)(torch.from_numpy(originals.astype(np.float32))), standardised)
    per_channel = standardised.transpose(0, 1).reshape(3, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-3 and (per_channel.std(dim=1) - 1).abs().max() < 1e-3


def test_label_smoothing_is_torchs_and_the_textbook_formula():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    got = make_loss("ce", label_smoothing=0.1)(logits, labels)
    assert got == pytest.approx(float(F.cross_entropy(logits, labels, label_smoothing=0.1)), rel=1e-6)
    logp = logits.log_softmax(dim=1)  # (1 - eps) * CE + eps * mean over classes of -log p
    by_hand = 0.9 * -logp[torch.arange(8), labels] + 0.1 * -logp.mean(dim=1)
    assert got == pytest.approx(float(by_hand.mean()), rel=1e-6)
    with pytest.raises(ConfigError, match="label_smoothing applies to loss 'ce' only"):
        make_loss("hybrid", label_smoothing=0.1)


def test_mixup_is_deterministic_given_the_seed():
    x = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    torch.manual_seed(3)
    mixed, perm, lam = mixup(x, 0.4)
    torch.manual_seed(3)
    again = mixup(x, 0.4)
    assert torch.equal(mixed, again[0]) and torch.equal(perm, again[1]) and lam == again[2]
    assert 0 < lam < 1 and sorted(perm.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    assert not torch.equal(mixed, x)
    torch.manual_seed(9)
    assert not torch.equal(mixup(x, 0.4)[0], mixed)


def test_mixup_step_loss_is_the_mix_of_two_cross_entropies():
    """TrainStep's loss = lam * CE(y) + (1 - lam) * CE(y[perm]) on the mixed batch, label smoothing included."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x, y = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    cfg = TrialConfig(data="d", optim=OptimConfig(mixup_alpha=0.3, label_smoothing=0.1))
    step = TrainStep(network, torch.optim.SGD(network.parameters(), lr=0.0), cfg, torch.device("cpu"))
    torch.manual_seed(11)
    mixed, perm, lam = mixup(x, 0.3)
    with torch.no_grad():
        out = network(mixed)
        expected = lam * F.cross_entropy(out, y, label_smoothing=0.1) + (1 - lam) * F.cross_entropy(
            out, y[perm], label_smoothing=0.1)
    torch.manual_seed(11)
    assert float(step(x, y)) == pytest.approx(float(expected), rel=1e-6)
    plain = TrainStep(network, torch.optim.SGD(network.parameters(), lr=0.0), TrialConfig(data="d"),
                      torch.device("cpu"))
    assert float(plain(x, y)) == pytest.approx(float(F.cross_entropy(network(x), y)), rel=1e-6)


def test_modern_trial_resumes_with_the_same_curve(tiny_fsdd, tmp_path):
    """Killed after epoch 1, the trial resumes (torch RNG, so the mixup draws, from the checkpoint) and
    reproduces the uninterrupted curve: losses, accuracies and the warm-up + cosine learning rates."""
    optim = OptimConfig(**{**MODERN, "epochs": 3, "batch_size": 16})
    cfg = TrialConfig(data=tiny_fsdd, model="efficientnet_lite0", init="pretrained", fold=2, seed=3, optim=optim,
                      mask=MaskConfig(max_freq=6, max_time=6), max_train_clips=96, checkpoint_every=1,
                      standardize=True)
    _, curve = crash_resume_compare(cfg, tmp_path)
    # warm-up 0.1 + 0.9 * 1 / 1 = 1, then 0.5 (1 + cos(pi a / 2)): 1, 0.5
    assert curve["lr"].tolist() == pytest.approx([1e-3, 1e-3, 0.5e-3], rel=1e-9)
    assert curve["train_loss"].notna().all() and (curve["test_acc"] > 0).all()
    # the statistics are the training folds' (split nested, test 2, valid 3: the others), in the checkpoint
    info = read_trial(str(tmp_path / "whole" / trial_id(cfg)))
    assert info.train_folds == tuple(f for f in spectra.read_card(tiny_fsdd)["folds"] if f not in (2, 3))
    network = final_network(info)
    mean, std = spectra.input_stats(tiny_fsdd, info.train_folds)
    assert torch.equal(network.stem.standardize.mean.flatten(), torch.from_numpy(mean))
    assert torch.equal(network.stem.standardize.std.flatten(), torch.from_numpy(std))
    assert not np.allclose(mean, spectra.input_stats(tiny_fsdd, [2, 3])[0])  # other folds: other statistics


def test_recipe_plans_smoke_into_one_results_root(tiny_fsdd, tmp_path, capsys):
    """plans/recipes.yaml and plans/recipes-standardized.yaml --smoke: both land in one root (their shared
    name), the standardised trial carries its training folds' statistics, and the tables keep the recipes
    apart (each row labelled with what differs)."""
    from layouts import seed_dataset
    from orchestrator.cli import main

    seed_dataset(tiny_fsdd, tmp_path, "recipes-smoke")  # the smoke plans' 32 x 32 FSDD version: reused
    for plan in ("recipes.yaml", "recipes-standardized.yaml"):
        assert main(["sweep", str(PLANS / plan), "--smoke", "--storage", str(tmp_path), "--json"]) == 0
    root = tmp_path / "recipes-smoke"
    assert len(list((root / "datasets").iterdir())) == 1  # no second featurizing
    configs = {t.name: json.loads((t / "config.json").read_text()) for t in (root / "trials").iterdir()}
    assert sorted(c["trial"]["standardize"] for c in configs.values()) == [False, True]
    standardised = next(t for t, c in configs.items() if c["trial"]["standardize"])
    assert configs[standardised]["trial"]["optim"]["mixup_alpha"] == 0.3
    network = final_network(read_trial(str(root / "trials" / standardised)))
    mean, _ = spectra.input_stats(tiny_fsdd, configs[standardised]["folds"]["train"])
    assert torch.equal(network.stem.standardize.mean.flatten(), torch.from_numpy(mean))
    capsys.readouterr()
    assert main(["tables", "--results", str(root), "--out", str(tmp_path / "report"), "--json"]) == 0
    table = (tmp_path / "report" / "tables" / "table1_pretrained_vs_random.md").read_text()
    assert "standardize True" in table and "standardize False" in table
