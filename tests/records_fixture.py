"""Synthetic sweep results in the exact on-disk layout trials leave, for the analysis tests.

* :func:`write_dataset`: a tiny dataset version (``dataset.json`` card + ``data/fold=K/part.parquet`` with a
  float16 ``fixed_shape_tensor`` spec column), in the layout of :mod:`orchestrator.spectra`.
* :func:`write_trial`: one trial folder written by the real ``orchestrator.trial.write_records`` (so
  config.json / epochs.parquet / summary.json / predictions.parquet are exactly what trials write), from
  chosen per-epoch accuracies; predictions are generated to match the summary's accuracies unless given; its
  provenance is this process's, with chosen fields replaced (or none, as in records older than provenance).
* :func:`write_checkpoint` / :func:`write_weights`: a trial's checkpoint.pt (or a legacy Ray Train folder) holding
  {"model": state_dict}, and an ImageNet-format weights file for "pretrained" trials.
* :func:`write_real_trial`: a finished resnet18 trial with a checkpoint (for SVCCA / Integrated Gradients).
* :func:`write_sweep`: the small sweep whose tables the table tests work out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from orchestrator.config import LossConfig, MaskConfig, OptimConfig, TrialConfig, to_dict
from orchestrator.models import build_native, create_model
from orchestrator.provenance import trial_provenance, utc_now
from orchestrator.trial import trial_id, write_records
from orchestrator.training import TrialState

SIZE = 32  # spectrograms are 3 x SIZE x SIZE


def write_dataset(folder: Path, name: str = "esc50", classes=("dog", "rain"), folds=(1, 2, 3),
                  clips_per_class: int = 3, seed: int = 0, version: str | None = None) -> str:
    """A finished dataset version at ``folder``: card + one Parquet file per fold. Returns its URI."""
    rng = np.random.default_rng(seed)
    for fold in folds:
        rows = [(f"{fold}-{c}-{j}", label, c) for label, c in enumerate(classes) for j in range(clips_per_class)]
        # class-dependent means so the clips are not all alike
        specs = np.stack([rng.normal(label, 1.0, (3, SIZE, SIZE)) for _, label, _ in rows]).astype(np.float16)
        n = len(rows)
        table = pa.table({
            "clip_id": [r[0] for r in rows], "source_id": [r[0] for r in rows], "split": ["test"] * n,
            "label": pa.array([r[1] for r in rows], pa.int64()), "label_name": [r[2] for r in rows],
            "group": ["g"] * n, "duration": [5.0] * n, "aug_copy": pa.nulls(n, pa.int64()),
            "aug_pitch": pa.nulls(n, pa.float64()), "aug_stretch": pa.nulls(n, pa.float64()),
            "spec": pa.FixedShapeTensorArray.from_numpy_ndarray(specs),
        })
        (folder / "data" / f"fold={fold}").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "data" / f"fold={fold}" / "part.parquet")
    card = _card(folder, name, list(classes), list(folds), clips_per_class, version or f"{name}hash0123456789")
    (folder / "dataset.json").write_text(json.dumps(card, indent=2))
    return str(folder)


def _card(folder: Path, name: str, classes: list[str], folds: list[int], per_class_fold: int, version: str) -> dict:
    """A card with the keys ``orchestrator.preprocess._write_card`` writes."""
    features = {"variant": "paper3ch", "sample_rate": 44100, "windows_ms": [25.0, 50.0, 100.0],
                "hops_ms": [10.0, 25.0, 50.0], "n_fft_ms": 100.0, "n_mels": 128, "height": SIZE, "width": SIZE,
                "log_eps": 1e-6}
    total = len(classes) * len(folds) * per_class_fold
    return {
        "name": name, "version": version, "uri": str(folder),
        "source": {"root": "/data/x", "options": {}, "manifest_rows": total},
        "created_at": "2026-01-01T00:00:00+00:00", "features": features,
        "augment": {"copies": 0, "pitch_semitones": [-2, 2], "stretch_range": [0.9, 1.2], "seed": 0},
        "feature_code_version": 1, "spec": {"shape": [3, SIZE, SIZE], "dtype": "float16"},
        "classes": classes, "folds": folds,
        "counts": {"total": total, "originals": total, "augmented": 0,
                   "per_fold": {str(f): len(classes) * per_class_fold for f in folds},
                   "per_class": {c: len(folds) * per_class_fold for c in classes}},
        "rejected": [],
    }


def trial_config(data_uri: str, *, model="densenet201", init="pretrained", seed=0, fold=1, loss="ce",
                 mask=False, epochs=3, weights=None, split="nested", optim: dict | None = None) -> TrialConfig:
    """The TrialConfig a sweep would have run (``optim``: overrides of the recipe, e.g. {"lr": 1e-3})."""
    return TrialConfig(data=data_uri, model=model, init=init, seed=seed, fold=fold, weights=weights,
                       optim=OptimConfig(epochs=epochs, **(optim or {})), loss=LossConfig(name=loss),
                       mask=MaskConfig() if mask else None, split=split)


def write_trial(trials: Path, data_uri: str, *, valid: list[float] | None, test: list[float], num_classes: int = 2,
                folds=(1, 2, 3), n_clips: int = 20, finished: bool = True, predictions: dict | None = None,
                confidence: float = 0.7, provenance: dict | None = {}, **config) -> str:
    """One trial folder under ``trials`` from per-epoch valid/test accuracies; returns its trial id.

    ``valid=None`` with ``split="paper"``: a trial without validation fold (null valid columns, no
    valid_selected; its stored selected epoch is best_epoch). ``predictions``: protocol -> (clip_ids, labels,
    probs); by default generated so the first ``round(acc * n_clips)`` clips are right (probability
    ``confidence`` on the predicted class), matching the summary's accuracy for that protocol. ``provenance``:
    fields that replace this process's (e.g. another ``code_version``); None writes none, as records written
    before provenance existed.
    """
    cfg = trial_config(data_uri, epochs=len(test), **config)
    tid = trial_id(cfg)
    valid_folds = [] if cfg.split == "paper" else [folds[(list(folds).index(cfg.fold) + 1) % len(folds)]]
    payload = {"trial": to_dict(cfg), "trial_id": tid, "num_classes": num_classes,
               "folds": {"train": [f for f in folds if f != cfg.fold and f not in valid_folds], "valid": valid_folds,
                         "test": [cfg.fold]},
               "dataset": {"uri": data_uri, "version": json.loads((Path(data_uri) / "dataset.json").read_text())
                           ["version"]},
               "records_uri": str(trials / tid)}
    state = _state(valid, test, cfg.fold, num_classes, n_clips, predictions, confidence)
    if finished:
        write_records(payload, state, None if provenance is None else trial_provenance("cpu", utc_now()) | provenance)
    else:  # a trial still running: config and curve so far, no summary.json
        (trials / tid).mkdir(parents=True, exist_ok=True)
        (trials / tid / "config.json").write_text(json.dumps({k: payload[k] for k in payload if k != "records_uri"}))
    return tid


def _state(valid, test, fold, num_classes, n_clips, predictions, confidence) -> TrialState:
    """A TrialState as the trial loop would have left it after these epochs (``valid`` None: split "paper",
    the selected epoch is the best test epoch)."""
    state = TrialState()
    for epoch, t in enumerate(test, 1):
        v = valid[epoch - 1] if valid is not None else None
        state.epochs.append({"epoch": epoch, "train_loss": 1.0 / epoch, "valid_loss": None if v is None else 1.0 - v,
                             "valid_acc": v, "test_acc": t, "lr": 1e-4, "seconds": 2.0,
                             "samples_per_s": 100.0 * epoch})
    score = "valid_acc" if valid is not None else "test_acc"
    selected = max(state.epochs, key=lambda r: (r[score], -r["epoch"]))
    for name, row in (("selected", selected), ("last", state.epochs[-1])):
        protocol = "last_epoch" if name == "last" else ("valid_selected" if valid is not None else "best_epoch")
        ids, labels, probs = (predictions or {}).get(protocol) or _generated(
            row["test_acc"], fold, num_classes, n_clips, confidence)
        setattr(state, name, {"epoch": row["epoch"], "select_acc": row[score], "clip_ids": list(ids),
                              "labels": np.asarray(labels, np.int64), "probs": np.asarray(probs, np.float32)})
    return state


def _generated(accuracy: float, fold: int, num_classes: int, n_clips: int, confidence: float):
    """Clip ids, labels and softmax rows where exactly round(accuracy * n_clips) clips (the first ones) are
    right: ``confidence`` on the guessed class, the rest spread evenly."""
    labels = np.arange(n_clips) % num_classes
    right = np.arange(n_clips) < round(accuracy * n_clips)
    guess = np.where(right, labels, (labels + 1) % num_classes)
    probs = np.full((n_clips, num_classes), (1 - confidence) / max(1, num_classes - 1), np.float32)
    probs[np.arange(n_clips), guess] = confidence
    return [f"{fold}-clip{j:03d}" for j in range(n_clips)], labels, probs


def write_checkpoint(trial_dir: Path, state_dict: dict, legacy: bool = False) -> Path:
    """The trial's ``checkpoint.pt`` holding {"model": state_dict, ...} (what trials save), or with ``legacy``
    a Ray Train ``checkpoint_<timestamp>/state.pt`` folder (results written before checkpoint.pt)."""
    blob = {"model": state_dict, "optimizer": {}, "rng": torch.get_rng_state()}
    if legacy:
        folder = trial_dir / "checkpoint_2026-01-01_00-00-00.000000"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(blob, folder / "state.pt")
        return folder / "state.pt"
    trial_dir.mkdir(parents=True, exist_ok=True)
    torch.save(blob, trial_dir / "checkpoint.pt")
    return trial_dir / "checkpoint.pt"


def write_weights(name: str, path: Path, seed: int = 123) -> Path:
    """An ImageNet-format weights file for ``name`` (a seeded native model): 'pretrained' without a download."""
    torch.manual_seed(seed)
    torch.save(build_native(name).state_dict(), path)
    return path


def write_real_trial(trials: Path, data_uri: str, *, init: str, weights: Path | None = None, seed: int = 0,
                     final: str = "same", model: str = "resnet18", fold: int = 1, num_classes: int = 3,
                     n_clips: int = 24) -> str:
    """A finished trial with a checkpoint: its final weights are the initial network's (``final="same"``,
    i.e. nothing moved) or another seed's fresh random init (``final="other"``). Returns the trial id."""
    from analysis.trialnet import initial_network, read_trial

    tid = write_trial(trials, data_uri, valid=[0.5, 2 / 3], test=[0.5, 2 / 3], model=model, init=init,
                      weights=str(weights) if weights else None, seed=seed, fold=fold, num_classes=num_classes,
                      n_clips=n_clips)
    if final == "same":
        network = initial_network(read_trial(str(trials / tid)))
    else:
        torch.manual_seed(seed + 1000)
        network = create_model(model, num_classes=num_classes, init="random")
    write_checkpoint(trials / tid, network.state_dict())
    return tid


# (seed, fold) -> (valid accuracies, test accuracies) per epoch of the pretrained trials
PRETRAINED = {(0, 1): ([.5, .7, .6], [.80, .90, .85]), (0, 2): ([.6, .5, .4], [.70, .95, .80]),
              (1, 1): ([.4, .5, .8], [.75, .80, .85]), (1, 2): ([.7, .7, .6], [.90, .80, .75])}


def write_sweep(root: Path, data: str) -> Path:
    """ESC-50 densenet201, pretrained and random, seeds 0-1, folds 1-2 (the sweep whose tables
    tests/test_analysis_tables.py works out by hand), plus one unfinished trial.

    Pretrained seed 1 is more confident (0.8 vs 0.7), so where the two seeds disagree on a clip the
    ensemble follows seed 1: ensemble accuracy = seed 1's accuracy. Random: every trial alike."""
    trials = root / "trials"
    for (seed, fold), (valid, test) in PRETRAINED.items():
        write_trial(trials, data, valid=valid, test=test, seed=seed, fold=fold, confidence=0.7 + 0.1 * seed)
        write_trial(trials, data, valid=[.5, .6, .7], test=[.50, .60, .55], seed=seed, fold=fold, init="random")
    write_trial(trials, data, valid=[.5], test=[.5], seed=2, fold=1, finished=False)
    return root


# (seed, fold) -> test accuracies per epoch of the split "paper" pretrained trials (no validation fold)
PAPER = {(0, 1): [.85, .95, .90], (0, 2): [.80, .90, .85], (1, 1): [.90, .95, .95], (1, 2): [.85, .85, .80]}


def write_mixed_sweep(root: Path, data: str) -> Path:
    """:func:`write_sweep` plus the same grid on split "paper" (the paper's protocol): pretrained from
    :data:`PAPER`, random every trial test .50 .60 .55. Both splits share every other setting, so only the
    split tells them apart (tests/test_analysis_splits.py works their tables out by hand)."""
    write_sweep(root, data)
    trials = root / "trials"
    for (seed, fold), test in PAPER.items():
        write_trial(trials, data, valid=None, test=test, seed=seed, fold=fold, split="paper",
                    confidence=0.7 + 0.1 * seed)
        write_trial(trials, data, valid=None, test=[.50, .60, .55], seed=seed, fold=fold, init="random",
                    split="paper")
    return root
