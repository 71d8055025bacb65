"""Trials: records, protocols, determinism, resume after a kill, restarts by Ray, clear errors."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from orchestrator.config import OptimConfig, TrialConfig
from orchestrator.errors import ConfigError
from orchestrator.provenance import environment
from orchestrator.trial import CHECKPOINT_FILE, prepare_trial, run_trial, trial_id
from orchestrator.trial_data import canonical_train_order, load_trial_data
from orchestrator.training import protocol_summary
from faults import injected
from resume_check import crash_resume_compare

EPOCH_COLUMNS = ["epoch", "train_loss", "valid_loss", "valid_acc", "test_acc", "lr", "seconds", "train_samples",
                 "samples_per_s"]


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
    provenance = saved["provenance"]  # the process that finished it (here this one), in summary.json only
    assert provenance == environment() | {k: provenance[k] for k in ("device", "started_at", "first_started_at",
                                                                     "finished_at")} and "provenance" not in config
    assert provenance["device"].startswith("cpu")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", provenance["finished_at"])
    assert provenance["first_started_at"] == provenance["started_at"] <= provenance["finished_at"]
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


def test_training_rows_load_in_one_order_whatever_the_file_order():
    rows = pd.DataFrame([(f"{digit}_spk_{take}", copy, digit) for digit in range(3) for take in range(4)
                         for copy in (-1, 1)], columns=["clip_id", "aug_copy", "label"])
    forward = rows.iloc[canonical_train_order(rows, None, seed=0)]
    backward = rows.iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(forward.reset_index(drop=True),
                                  backward.iloc[canonical_train_order(backward, None, seed=0)].reset_index(drop=True))
    assert forward["label"].tolist() == [0] * 8 + [1] * 8 + [2] * 8  # sorted by clip id ...
    assert forward["aug_copy"].tolist()[:2] == [-1, 1]  # ... then original before its augmented copy
    subset = rows.iloc[canonical_train_order(rows, 9, seed=3)]
    assert len(subset) == 9 and set(subset["label"]) == {0, 1, 2}  # a seeded random subset, not the first rows
    assert subset["clip_id"].tolist() == backward.iloc[canonical_train_order(backward, 9, seed=3)]["clip_id"].tolist()
    with pytest.raises(ConfigError, match="training split is empty"):
        canonical_train_order(rows.iloc[:0], None, seed=0)


def test_trial_data_comes_from_the_one_fold_function(tiny_fsdd):
    data = load_trial_data(tiny_fsdd, test_fold=2, valid_fold=None)
    assert len(data.train_labels) == 400 and len(data.valid.labels) == len(data.test.labels) == 100
    assert all("_jackson_" in c for c in data.test.clip_ids) and data.test.clip_ids == sorted(data.test.clip_ids)
    assert data.specs.dtype == np.float16 and data.specs.shape[1:] == (3, 32, 32)
    assert isinstance(data.specs, np.memmap) and not data.specs.flags.writeable  # mapped, shared, read-only
    assert len(data.rows_used()) == 600 and len(data.rows_used(evaluates=False)) == 400
    ranks = [load_trial_data(tiny_fsdd, 2, None, max_train_rows=96, seed=7, rank=r, world_size=2) for r in (0, 1)]
    assert [len(r.train_labels) for r in ranks] == [48, 48]  # disjoint halves of one seeded subset
    with pytest.raises(ConfigError, match="valid fold 2 must be one of .* other than the test fold 2"):
        load_trial_data(tiny_fsdd, test_fold=2, valid_fold=2)


def test_trial_killed_after_epoch_1_resumes_at_epoch_2_with_the_same_curve(tiny_fsdd, tmp_path):
    cfg = tiny_trial(tiny_fsdd, init="random", checkpoint_every=1, optim=OptimConfig(epochs=3, lr=1e-3, batch_size=16))
    _, curve = crash_resume_compare(cfg, tmp_path)  # same id + storage: resumes from checkpoint.pt
    assert curve["epoch"].tolist() == [1, 2, 3]


def test_checkpoints_every_k_epochs_and_ray_retries_from_the_last_one(tiny_fsdd, tmp_path):
    import ray

    cfg = tiny_trial(tiny_fsdd, init="random", checkpoint_every=2, optim=OptimConfig(epochs=3, lr=1e-3, batch_size=16))
    # crash after epoch 2 in the Ray task; Ray restarts it once (max_failures 1), from the epoch-2 checkpoint
    with injected({trial_id(cfg): {"after_epoch": 2, "log": str(tmp_path / "faults.log")}}):
        summary = run_trial(cfg, str(tmp_path), max_failures=1, ray_address=ray.get_runtime_context().gcs_address)
    assert (tmp_path / "faults.log").read_text().splitlines() == ["epoch 2"]
    assert summary["resumed_at_epoch"] == 3 and summary["epochs"] == 3  # the epoch-2 checkpoint was there
    blob = torch.load(tmp_path / trial_id(cfg) / CHECKPOINT_FILE, weights_only=True)
    assert [row["epoch"] for row in blob["meta"]["epochs"]] == [1, 2, 3]  # always checkpointed at the end
    assert trial_id(cfg) == trial_id(dataclasses.replace(cfg, checkpoint_every=7))  # not part of the identity


def test_bad_trials_fail_before_any_worker_starts(tiny_fsdd, tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'vgg16'; valid models: densenet121"):
        prepare_trial(tiny_trial(tiny_fsdd, model="vgg16"), str(tmp_path))
    with pytest.raises(ConfigError, match="K must be in 1-4"):
        prepare_trial(tiny_trial(tiny_fsdd, init="cutoff:0"), str(tmp_path))
    with pytest.raises(ConfigError, match="test fold 9 is not one of the dataset.s folds"):
        prepare_trial(tiny_trial(tiny_fsdd, fold=9), str(tmp_path))
    with pytest.raises(ConfigError, match="valid fold 2 must be one of"):
        prepare_trial(tiny_trial(tiny_fsdd, valid_fold=2), str(tmp_path))


def test_protocol_summary_known_answers():
    curve = [{"epoch": 1, "valid_acc": 0.5, "test_acc": 0.40}, {"epoch": 2, "valid_acc": 0.7, "test_acc": 0.55},
             {"epoch": 3, "valid_acc": 0.7, "test_acc": 0.65}, {"epoch": 4, "valid_acc": 0.6, "test_acc": 0.60}]
    s = protocol_summary(curve)
    assert (s["best_epoch"], s["best_epoch_epoch"]) == (0.65, 3)
    assert (s["last_epoch"], s["last_epoch_epoch"]) == (0.60, 4)
    assert (s["valid_selected"], s["valid_selected_epoch"]) == (0.55, 2)  # tie on valid: earlier epoch


def test_single_worker_trial_on_a_named_cluster_runs_as_one_ray_task(tiny_fsdd, tmp_path):
    import ray

    cfg = tiny_trial(tiny_fsdd, optim=OptimConfig(epochs=1, lr=1e-3, batch_size=16))
    summary = run_trial(cfg, str(tmp_path), ray_address=ray.get_runtime_context().gcs_address)
    assert summary["epochs"] == 1 and not summary["reused"]
    _, epochs, saved, predictions = read_records(tmp_path / trial_id(cfg))
    assert saved["trial_id"] == trial_id(cfg) and len(predictions) == 200
    # last_epoch is the test-fold accuracy after the final (here the only) epoch: the curve's last test_acc,
    # and the accuracy of the softmax rows the trial stored for that protocol
    last = predictions[predictions["protocol"] == "last_epoch"]
    stored = (np.stack(last["probs"]).argmax(1) == last["label"]).mean()
    assert summary["last_epoch_epoch"] == 1 and summary["last_epoch"] == epochs["test_acc"].iloc[-1]
    assert summary["last_epoch"] == pytest.approx(stored, abs=1e-9)
    # (numbers may differ from an in-process run in the last digits: a 1-CPU Ray task trains on one thread)
    assert run_trial(cfg, str(tmp_path), ray_address="unused: the trial is finished")["reused"]


def test_two_ddp_workers_train_and_record(tiny_fsdd, tmp_path, monkeypatch):
    import orchestrator.trial as trial_module

    built = []
    original = trial_module.build_trainer
    monkeypatch.setattr(trial_module, "build_trainer", lambda *a, **k: built.append(1) or original(*a, **k))
    cfg = tiny_trial(tiny_fsdd, init="random", num_workers=2, optim=OptimConfig(epochs=1, lr=1e-3, batch_size=16),
                     cpus_per_worker=0.5)  # both workers fit the 1-CPU Ray of a `make test` worker
    summary = run_trial(cfg, str(tmp_path))
    _, epochs, _, predictions = read_records(tmp_path / trial_id(cfg))
    assert built == [1]  # multi-worker trials still go through Ray Train's TorchTrainer
    assert summary["epochs"] == 1 and len(epochs) == 1 and np.isfinite(epochs["train_loss"]).all()
    assert len(predictions) == 200  # rank 0 evaluates the whole test fold, once per protocol


def test_training_code_imports_without_ray_or_librosa():
    import subprocess
    import sys

    code = ("import sys, orchestrator.training, orchestrator.features, orchestrator.losses, orchestrator.models; "
            "bad = [m for m in ('ray', 'librosa', 'pandas', 'pyarrow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
