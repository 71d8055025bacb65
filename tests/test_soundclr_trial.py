"""A SoundCLR-recipe trial on Ray on the bundled FSDD subset: hybrid loss with the linear projection, masks,
AdamW with warm-up; killed after epoch 1 it resumes (LambdaLR state from a weights_only checkpoint) and
reproduces the uninterrupted curve, learning rates included."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.config import LossConfig, MaskConfig, OptimConfig, TrialConfig
from orchestrator.trial import InjectedFault, run_trial, trial_id


def test_soundclr_trial_resumes_with_the_same_curve(tiny_fsdd, tmp_path):
    optim = OptimConfig.preset("soundclr", epochs=3, warmup_epochs=2, batch_size=16, lr=1e-3)
    cfg = TrialConfig(data=tiny_fsdd, model="efficientnet_lite0", init="pretrained", fold=2, seed=3,
                      optim=optim, loss=LossConfig(name="hybrid"), mask=MaskConfig(max_freq=8, max_time=8),
                      max_train_clips=96, checkpoint_every=1)
    with pytest.raises(InjectedFault):
        run_trial(cfg, str(tmp_path / "crashed"), fault={"after_epoch": 1, "log": str(tmp_path / "faults.log")})
    summary = run_trial(cfg, str(tmp_path / "crashed"))
    assert summary["resumed_at_epoch"] == 2
    run_trial(cfg, str(tmp_path / "whole"))
    curves = [pq.read_table(tmp_path / run / trial_id(cfg) / "epochs.parquet").to_pandas()
              for run in ("crashed", "whole")]
    timing = ["seconds", "samples_per_s"]
    pd.testing.assert_frame_equal(curves[0].drop(columns=timing), curves[1].drop(columns=timing))
    # warm-up 0.1 + 0.9 (e + 1) / 2: 0.55 lr, lr; then x0.98 from the end of warm-up
    assert curves[1]["lr"].tolist() == pytest.approx([0.55e-3, 1e-3, 1e-3], rel=1e-9)
    config = json.loads((tmp_path / "whole" / trial_id(cfg) / "config.json").read_text())
    trial = config["trial"]
    assert trial["loss"]["projection"] == "linear" and trial["optim"]["optimizer"] == "adamw"
