"""A SoundCLR-recipe trial on Ray on the bundled FSDD subset: hybrid loss with the linear projection, masks,
AdamW with warm-up; killed after epoch 1 it resumes (LambdaLR state from a weights_only checkpoint) and
reproduces the uninterrupted curve, learning rates included."""

from __future__ import annotations

import json

import pytest

from orchestrator.config import LossConfig, MaskConfig, OptimConfig, TrialConfig
from orchestrator.trial import trial_id
from resume_check import crash_resume_compare


def test_soundclr_trial_resumes_with_the_same_curve(tiny_fsdd, tmp_path):
    optim = OptimConfig.preset("soundclr", epochs=3, warmup_epochs=2, batch_size=16, lr=1e-3)
    cfg = TrialConfig(data=tiny_fsdd, model="efficientnet_lite0", init="pretrained", fold=2, seed=3,
                      optim=optim, loss=LossConfig(name="hybrid"), mask=MaskConfig(max_freq=8, max_time=8),
                      max_train_clips=96, checkpoint_every=1)
    summary, curve = crash_resume_compare(cfg, tmp_path)
    # warm-up 0.1 + 0.9 (e + 1) / 2: 0.55 lr, lr; then x0.98 from the end of warm-up
    assert curve["lr"].tolist() == pytest.approx([0.55e-3, 1e-3, 1e-3], rel=1e-9)
    config = json.loads((tmp_path / "whole" / trial_id(cfg) / "config.json").read_text())
    trial = config["trial"]
    assert trial["loss"]["projection"] == "linear" and trial["optim"]["optimizer"] == "adamw"
