"""Optimisers and learning-rate schedules (orchestrator/training.py): the paper's Adam + StepLR unchanged,
SoundCLR's AdamW + warm-up + x0.98 per epoch against hand-worked numbers, and scheduler state that survives
a checkpoint read with ``torch.load(weights_only=True)``."""

import io

import pytest
import torch
from torch import nn

from orchestrator.config import LossConfig, MaskConfig, OptimConfig, TrialConfig
from orchestrator.errors import ConfigError
from orchestrator.training import make_optimizer, make_scheduler
from orchestrator.trial import trial_id


def lrs(optim: OptimConfig, epochs: int) -> list[float]:
    """The learning rate each 0-based epoch trains with, stepping once per epoch as the trial loop does."""
    optimizer = make_optimizer(nn.Linear(2, 2), optim)
    scheduler = make_scheduler(optimizer, optim)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_soundclr_preset_is_the_reference_recipe():
    optim = OptimConfig.preset("soundclr")
    assert (optim.optimizer, optim.lr, optim.weight_decay, optim.batch_size, optim.epochs) == (
        "adamw", 5e-4, 1e-3, 128, 800)
    assert (optim.warmup_epochs, optim.schedule, optim.gamma) == (10, "exponential", 0.98)
    optimizer = make_optimizer(nn.Linear(2, 2), optim)
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["weight_decay"] == 1e-3


def test_soundclr_schedule_by_hand():
    """SoundCLR's WarmUpExponentialLR(cold_epochs=0, warm_epochs=10, gamma=0.98) at base lr 5e-4:
    epoch e < 10: 5e-4 * (0.1 + 0.09 * (e + 1)) = 0.95e-4, 1.4e-4, ..., 5e-4; then 5e-4 * 0.98 ** (e - 10)."""
    got = lrs(OptimConfig.preset("soundclr"), 14)
    warm = [0.95e-4, 1.4e-4, 1.85e-4, 2.3e-4, 2.75e-4, 3.2e-4, 3.65e-4, 4.1e-4, 4.55e-4, 5e-4]
    after = [5e-4, 4.9e-4, 4.802e-4, 4.70596e-4]
    assert got == pytest.approx(warm + after, rel=1e-12)


def test_soundclr_schedule_epoch_800():
    got = lrs(OptimConfig.preset("soundclr", lr=1e-4), 800)  # US8K's lr
    assert got[-1] == pytest.approx(1e-4 * 0.98 ** 789, rel=1e-9)  # ~1.2e-11: the lr is ~0 long before 800


def test_paper_recipes_are_unchanged():
    """Default fields: the same Adam, the same StepLR / MultiStepLR objects and rates as before."""
    paper = OptimConfig.preset("paper")
    optimizer = make_optimizer(nn.Linear(2, 2), paper)
    assert type(optimizer) is torch.optim.Adam
    assert type(make_scheduler(optimizer, paper)) is torch.optim.lr_scheduler.StepLR
    assert lrs(paper, 70)[::10] == pytest.approx([1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-6], rel=1e-12)
    random = OptimConfig.preset("paper-random")
    assert type(make_scheduler(make_optimizer(nn.Linear(2, 2), random), random)) is torch.optim.lr_scheduler.MultiStepLR
    got = lrs(random, 351)
    assert (got[299], got[300], got[349], got[350]) == pytest.approx((1e-4, 1e-5, 1e-5, 1e-6), rel=1e-12)


def test_warmup_then_step_schedule():
    """Warm-up composes with step decay too; the step count starts after warm-up."""
    got = lrs(OptimConfig(lr=1.0, warmup_epochs=2, step_size=3, gamma=0.5), 9)
    assert got == pytest.approx([0.55, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25])


def test_scheduler_state_round_trips_through_a_weights_only_checkpoint():
    optim = OptimConfig.preset("soundclr")
    net = nn.Linear(2, 2)
    optimizer = make_optimizer(net, optim)
    scheduler = make_scheduler(optimizer, optim)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    blob = torch.load(buffer, weights_only=True)
    fresh_optimizer = make_optimizer(net, optim)
    fresh = make_scheduler(fresh_optimizer, optim)
    fresh_optimizer.load_state_dict(blob["optimizer"])
    fresh.load_state_dict(blob["scheduler"])
    for _ in range(3):
        assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-15)
        for opt, sched in ((optimizer, scheduler), (fresh_optimizer, fresh)):
            opt.step()
            sched.step()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.98 ** 5, rel=1e-12)


def test_optim_fields_are_validated():
    for bad, message in (({"optimizer": "sgd"}, "optim.optimizer must be one of"),
                         ({"schedule": "linear"}, "optim.schedule must be one of"),
                         ({"warmup_epochs": -1}, "optim.warmup_epochs must be >= 0"),
                         ({"schedule": "exponential", "milestones": (5,)}, "milestones only apply")):
        with pytest.raises(ConfigError, match=message):
            OptimConfig(**bad)


# Trial ids pinned from an earlier version of the code. The rule: a config that means the same training keeps
# its id (finished results are reused); a config whose training changed (hybrid's projection / positiveless,
# the mask fill) gets a new one.
OLD_IDS = {
    "ce": "resnet18-pretrained-ce-fold1-seed0-a982319c",
    "ce_random": "resnet18-random-ce-fold1-seed0-3d329c7b",
    "ce_mask": "resnet50-pretrained-ce-fold1-seed0-c40c4630",
    "hybrid_mask": "resnet50-pretrained-hybrid-fold1-seed0-ef4bdcf7",
    "hybrid": "resnet50-pretrained-hybrid-fold1-seed0-87de4420",
}


def test_trial_ids_change_only_where_training_changed():
    # augmented="all" is what every trial did before split modes and the per-epoch draw existed (all stored
    # copies, every epoch); the new default "draw" trains differently on datasets with copies: a new id.
    old = {"augmented": "all"}
    same = {
        "ce": TrialConfig(data="d", model="resnet18", **old),
        "ce_random": TrialConfig(data="d", model="resnet18", init="random", optim=OptimConfig.preset("paper-random"),
                                 **old),
        "ce_mask": TrialConfig(data="d", model="resnet50", mask=MaskConfig(fill="mean"), **old),  # the old fill
    }
    for name, cfg in same.items():
        assert trial_id(cfg) == OLD_IDS[name], name
    changed = {
        "ce_mask": TrialConfig(data="d", model="resnet50", mask=MaskConfig()),  # fill max now
        "hybrid": TrialConfig(data="d", model="resnet50", loss=LossConfig(name="hybrid")),  # linear, zero now
        "hybrid_mask": TrialConfig(data="d", model="resnet50", mask=MaskConfig(), loss=LossConfig(name="hybrid")),
    }
    for name, cfg in changed.items():
        assert trial_id(cfg) != OLD_IDS[name], name
    # Even spelled out as before (MLP, exclude, mean fill), a hybrid trial gets a new id: ID_DEFAULTS holds
    # one old value per field and for projection / positiveless that is cross-entropy's None. Old hybrid
    # trials are retrained, never wrongly reused.
    spelled_out = TrialConfig(data="d", model="resnet50", mask=MaskConfig(fill="mean"), loss=LossConfig(
        name="hybrid", projection="mlp", positiveless="exclude"))
    assert trial_id(spelled_out) != OLD_IDS["hybrid_mask"]
    assert trial_id(TrialConfig(data="d", model="resnet18", optim=OptimConfig.preset("soundclr"), **old)) != OLD_IDS["ce"]
    assert trial_id(TrialConfig(data="d", model="resnet18")) != OLD_IDS["ce"]  # augmented: draw
    assert trial_id(TrialConfig(data="d", model="resnet18", split="paper", **old)) != OLD_IDS["ce"]
