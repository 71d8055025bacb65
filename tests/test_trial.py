"""Trials on Ray Train: records, protocols, determinism, resume after a kill, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.config import FeatureConfig, OptimConfig, TrialConfig
from orchestrator.errors import ConfigError
from orchestrator.preprocess import PreprocessRequest, preprocess
from orchestrator.trial import InjectedFault, build_trainer, load_train_rows, plan_trial, run_trial, trial_id
from orchestrator.training import protocol_summary

EPOCH_COLUMNS = ["epoch", "train_loss", "valid_loss", "valid_acc", "test_acc", "lr", "seconds", "samples_per_s"]


@pytest.fixture(scope="module")
def tiny_fsdd(ray_local, fsdd_root, tmp_path_factory) -> str:
    """The bundled FSDD subset at 3 x 32 x 32: real audio, small enough for CPU trials in seconds."""
    out = tmp_path_factory.mktemp("datasets")
    return preprocess(PreprocessRequest("fsdd", str(fsdd_root), str(out),
                                        features=FeatureConfig(height=32, width=32))).uri


def tiny_trial(data: str, **overrides) -> TrialConfig:
    base = dict(data=data, model="efficientnet_lite0", init="pretrained", fold=2, seed=7,
                optim=OptimConfig(epochs=2, lr=1e-3, batch_size=16), max_train_clips=96)
    return TrialConfig(**(base | overrides))


def read_records(folder) -> tuple[dict, pd.DataFrame, dict, pd.DataFrame]:
    return (json.loads((folder / "config.json").read_text()), pq.read_table(folder / "epochs.parquet").to_pandas(),
            json.loads((folder / "summary.json").read_text()), pq.read_table(folder / "predictions.parquet").to_pandas())


def test_two_epoch_trial_writes_all_records(tiny_fsdd, tmp_path):
    cfg = tiny_trial(tiny_fsdd)
    summary = run_trial(cfg, str(tmp_path))
    folder = tmp_path / trial_id(cfg)
    config, epochs, saved, predictions = read_records(folder)
    assert config["folds"] == {"train": [1, 4, 5, 6], "valid": [3], "test": [2]}
    assert config["trial"]["model"] == "efficientnet_lite0" and config["num_classes"] == 10
    assert list(epochs.columns) == EPOCH_COLUMNS and epochs["epoch"].tolist() == [1, 2]
    assert np.isfinite(epochs[["train_loss", "valid_loss"]].to_numpy()).all()
    assert saved == {k: v for k, v in summary.items() if k != "reused"} and not summary["reused"]
    assert saved | protocol_summary(epochs.to_dict("records")) == saved  # protocols agree with the curve
    # predictions: the 100 test-fold clips (speaker 2) under both stored protocols, softmax rows
    assert predictions.groupby("protocol").size().to_dict() == {"last_epoch": 100, "valid_selected": 100}
    assert (predictions["fold"] == 2).all() and predictions["clip_id"].str.contains("_jackson_").all()
    probs = np.stack(predictions["probs"].to_numpy())
    assert probs.shape == (200, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    last = predictions[predictions["protocol"] == "last_epoch"]
    assert np.isclose((np.stack(last["probs"]).argmax(1) == last["label"]).mean(), saved["last_epoch"])
    assert run_trial(cfg, str(tmp_path))["reused"]  # finished trials are not rerun


def reversed_copy(dataset_uri: str, dest) -> str:
    """A copy of a dataset version with every Parquet file's rows reversed: what another preprocessing run,
    whose parallel writers finished in another order, may produce."""
    import shutil
    from pathlib import Path

    copy = Path(shutil.copytree(dataset_uri, dest / Path(dataset_uri).name))
    for file in copy.rglob("*.parquet"):
        table = pq.read_table(file, partitioning=None)
        pq.write_table(table.take(np.arange(table.num_rows)[::-1]), file)
    return str(copy)


def test_same_seed_same_metrics_on_any_copy_of_the_dataset(tiny_fsdd, tmp_path):
    cfg = tiny_trial(tiny_fsdd, optim=OptimConfig(epochs=1, lr=1e-3, batch_size=16))
    run_trial(cfg, str(tmp_path / "a"))
    run_trial(cfg, str(tmp_path / "b"))
    shuffled = tiny_trial(reversed_copy(tiny_fsdd, tmp_path), optim=cfg.optim)
    run_trial(shuffled, str(tmp_path / "c"))
    a = read_records(tmp_path / "a" / trial_id(cfg))[1].drop(columns=["seconds", "samples_per_s"])
    b = read_records(tmp_path / "b" / trial_id(cfg))[1].drop(columns=["seconds", "samples_per_s"])
    c = read_records(tmp_path / "c" / trial_id(shuffled))[1].drop(columns=["seconds", "samples_per_s"])
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)  # the trial sorts its training rows: file order does not matter


class InMemoryShard:
    """Rows served in numpy batches, as a Ray Data shard's ``iter_batches`` serves them."""

    def __init__(self, rows: list[tuple[str, float | None, int]], batch_size: int = 3):
        self.rows, self.batch_size = rows, batch_size

    def iter_batches(self, batch_size, batch_format):
        for start in range(0, len(self.rows), self.batch_size):
            part = self.rows[start : start + self.batch_size]
            yield {"clip_id": np.array([r[0] for r in part], dtype=object),
                   "aug_copy": np.array([r[1] for r in part], dtype=float),  # nulls arrive as NaN
                   "label": np.array([r[2] for r in part]),
                   "spec": np.stack([np.full((1, 2, 2), r[2] * 10 + (r[1] or 0), np.float16) for r in part])}


def test_training_rows_load_in_one_order_whatever_the_file_order():
    rows = [(f"{digit}_spk_{take}", copy, digit) for digit in range(3) for take in range(4) for copy in (None, 1.0)]
    forward = load_train_rows(InMemoryShard(rows), None, seed=0)
    backward = load_train_rows(InMemoryShard(rows[::-1], batch_size=5), None, seed=0)
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
    specs, labels = forward
    assert labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8  # sorted by clip id ...
    assert specs[:2, 0, 0, 0].tolist() == [0, 1]  # ... then original before its augmented copy
    subset = load_train_rows(InMemoryShard(rows), 9, seed=3)[1]
    assert len(subset) == 9 and set(subset) == {0, 1, 2}  # a seeded random subset, not the first rows
    np.testing.assert_array_equal(subset, load_train_rows(InMemoryShard(rows[::-1]), 9, seed=3)[1])
    with pytest.raises(ConfigError, match="training split is empty"):
        load_train_rows(InMemoryShard([]), None, seed=0)


def test_trial_killed_after_epoch_1_resumes_at_epoch_2(tiny_fsdd, tmp_path):
    cfg = tiny_trial(tiny_fsdd, init="random", optim=OptimConfig(epochs=3, lr=1e-3, batch_size=16))
    plan = plan_trial(cfg, str(tmp_path))
    fault = {"after_epoch": 1, "marker": str(tmp_path / "fault-fired")}
    with pytest.raises(Exception, match="injected fault after epoch 1"):
        build_trainer(plan, max_failures=0, fault=fault).fit()  # like a crash: no retry allowed
    assert not (tmp_path / plan.trial_id / "summary.json").exists()
    summary = run_trial(cfg, str(tmp_path))  # same id + storage: Ray Train restores the latest checkpoint
    _, epochs, _, _ = read_records(tmp_path / plan.trial_id)
    assert summary["resumed_at_epoch"] == 2 and epochs["epoch"].tolist() == [1, 2, 3]


def test_bad_trials_fail_before_any_worker_starts(tiny_fsdd, tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'vgg16'; valid models: densenet121"):
        plan_trial(tiny_trial(tiny_fsdd, model="vgg16"), str(tmp_path))
    with pytest.raises(ConfigError, match="K must be in 1-4"):
        plan_trial(tiny_trial(tiny_fsdd, init="cutoff:0"), str(tmp_path))
    with pytest.raises(ConfigError, match="--fold 9 is not in"):
        plan_trial(tiny_trial(tiny_fsdd, fold=9), str(tmp_path))
    with pytest.raises(ConfigError, match="valid fold 2 must be one of"):
        plan_trial(tiny_trial(tiny_fsdd, valid_fold=2), str(tmp_path))


def test_protocol_summary_known_answers():
    curve = [{"epoch": 1, "valid_acc": 0.5, "test_acc": 0.40}, {"epoch": 2, "valid_acc": 0.7, "test_acc": 0.55},
             {"epoch": 3, "valid_acc": 0.7, "test_acc": 0.65}, {"epoch": 4, "valid_acc": 0.6, "test_acc": 0.60}]
    s = protocol_summary(curve)
    assert (s["best_epoch"], s["best_epoch_epoch"]) == (0.65, 3)
    assert (s["last_epoch"], s["last_epoch_epoch"]) == (0.60, 4)
    assert (s["valid_selected"], s["valid_selected_epoch"]) == (0.55, 2)  # tie on valid: earlier epoch


def test_two_ddp_workers_train_and_record(tiny_fsdd, tmp_path):
    cfg = tiny_trial(tiny_fsdd, init="random", num_workers=2, optim=OptimConfig(epochs=1, lr=1e-3, batch_size=16))
    summary = run_trial(cfg, str(tmp_path))
    _, epochs, _, predictions = read_records(tmp_path / trial_id(cfg))
    assert summary["epochs"] == 1 and len(epochs) == 1 and np.isfinite(epochs["train_loss"]).all()
    assert len(predictions) == 200  # rank 0 evaluates the whole test fold, once per protocol


def test_training_code_imports_without_ray_or_librosa():
    import subprocess
    import sys

    code = ("import sys, orchestrator.training, orchestrator.features, orchestrator.losses, orchestrator.models; "
            "bad = [m for m in ('ray', 'librosa', 'pandas', 'pyarrow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
