"""Study facts: the rules of the study that need neither torch, Ray nor pandas, written once.

Training, the sweep, the plan check, the cost preview, the cluster fit and the analysis all read these; a
module that needs one of them imports it from here rather than from a module that pulls in torch.

* protocols and which epoch each split mode selects;
* init modes (:func:`parse_init`);
* the official folds of each catalog dataset and the roles a trial gives its folds (:func:`fold_roles`);
* one worker's Ray resource request (:func:`resource_bundle`);
* which config fields stay out of ids and version hashes while they hold their old default
  (:func:`without_defaults`) and which describe how a trial ran rather than what it computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError

# ---------------------------------------------------------------- protocols and split modes

# The three ways a trial's test accuracy is read off its curve (orchestrator.training records them):
# best_epoch: the best test accuracy over epochs (the paper's number, optimistic); last_epoch: the last epoch;
# valid_selected: the test accuracy at the epoch with the best validation accuracy (split "nested" only).
PROTOCOLS = ("best_epoch", "last_epoch", "valid_selected")

# How a trial's folds are used. nested: train on k-2 folds, a whole validation fold picks the epoch
# (valid_selected), the test fold is never read for a choice. paper: train on the k-1 folds that are not the
# test fold, as the paper does; there is no validation fold, so only best_epoch and last_epoch exist.
SPLIT_MODES = ("nested", "paper")
# The epoch each split mode selects, the one predictions.parquet keeps beside last_epoch.
SELECTED = {"nested": "valid_selected", "paper": "best_epoch"}
# The protocols a trial of each split mode has predictions for.
SPLIT_PROTOCOLS = {split: tuple(p for p in PROTOCOLS if p in ("last_epoch", chosen))
                   for split, chosen in SELECTED.items()}


def selected_protocol(split: str | None) -> str:
    """The protocol of the epoch a trial of split mode ``split`` selects (records without one: nested)."""
    return SELECTED[split or "nested"]


# ---------------------------------------------------------------- init modes

NUM_BLOCKS = 4  # every architecture is cut into 4 blocks (orchestrator.architectures)
# Init mode -> the allowed range of its block index K (None: the mode takes no K).
INIT_MODES: dict[str, tuple[int, int] | None] = {
    "pretrained": None, "random": None, "fusion": (0, NUM_BLOCKS), "freeze": (0, NUM_BLOCKS),
    "cutoff": (1, NUM_BLOCKS),
}


def parse_init(mode: str) -> tuple[str, int | None]:
    """Split an init mode such as ``"fusion:2"`` into ``("fusion", 2)``; ``"random"`` gives ``("random", None)``."""
    valid = "pretrained, random, fusion:K (K 0-4), freeze:K (K 0-4), cutoff:K (K 1-4)"
    if not isinstance(mode, str):
        raise ConfigError(f"init mode must be a string, got {mode!r}; valid modes: {valid}")
    kind, sep, arg = mode.strip().lower().partition(":")
    if kind not in INIT_MODES:
        raise ConfigError(f"unknown init mode {mode!r}; valid modes: {valid}")
    bounds = INIT_MODES[kind]
    if bounds is None:
        if sep:
            raise ConfigError(f"init mode {kind!r} takes no ':K' (got {mode!r}); valid modes: {valid}")
        return kind, None
    arg = arg.strip()
    if not (arg.isascii() and arg.isdigit()):
        raise ConfigError(f"init mode {mode!r} needs a block index, e.g. '{kind}:2' (K {bounds[0]}-{bounds[1]})")
    k = int(arg)
    if not bounds[0] <= k <= bounds[1]:
        raise ConfigError(f"init mode {mode!r}: K must be in {bounds[0]}-{bounds[1]}")
    return kind, k


# ---------------------------------------------------------------- folds

# Test folds of each catalog dataset with an official layout. FSDD's speakers are 1-6 in the full release (a
# subset may hold fewer: then its card decides, after preprocessing). GTZAN and generic folders have seeded
# folds, 1..options.folds (SEEDED_FOLDS_DEFAULT when not given).
OFFICIAL_FOLDS: dict[str, list[int]] = {"esc50": list(range(1, 6)), "esc10": list(range(1, 6)),
                                        "us8k": list(range(1, 11)), "fsdd": list(range(1, 7))}
SEEDED_FOLDS_DEFAULT = 5


def declared_folds(name: str, seeded_folds: int | None = None) -> list[int]:
    """The folds catalog dataset ``name`` will have: its official ones, else 1..``seeded_folds`` (default 5)."""
    if name in OFFICIAL_FOLDS:
        return OFFICIAL_FOLDS[name]
    return list(range(1, (seeded_folds or SEEDED_FOLDS_DEFAULT) + 1))


def default_valid_fold(folds: list[int], test_fold: int) -> int:
    """The fold after the test fold, cyclically (ESC-50: test 5 -> valid 1)."""
    ordered = sorted(folds)
    return ordered[(ordered.index(test_fold) + 1) % len(ordered)]


@dataclass(frozen=True)
class FoldRoles:
    """Which folds a trial trains on, validates on (none for split "paper") and tests on."""

    train: tuple[int, ...]
    valid: tuple[int, ...]
    test: int


def fold_roles(folds: list[int], test_fold: int, valid_fold: int | None = None, split: str = "nested") -> FoldRoles:
    """The one place that decides fold roles: nested = train on k-2 folds, valid = ``valid_fold`` (default:
    the fold after the test fold), test = ``test_fold``; paper = train on every fold but the test fold."""
    folds = sorted(int(f) for f in folds)
    if test_fold not in folds:
        raise ConfigError(f"test fold {test_fold} is not one of the dataset's folds {folds}")
    if split == "paper":
        if valid_fold is not None:
            raise ConfigError(f"split 'paper' has no validation fold, but valid fold {valid_fold} was given")
        if len(folds) < 2:
            raise ConfigError(f"split 'paper' needs >= 2 folds (train, test); the dataset's folds are {folds}")
        return FoldRoles(tuple(f for f in folds if f != test_fold), (), test_fold)
    if split != "nested":
        raise ConfigError(f"split must be 'nested' or 'paper', got {split!r}")
    if len(folds) < 3:
        raise ConfigError(f"split 'nested' needs >= 3 folds (train, valid, test); the dataset's folds are {folds}: "
                          f"use split 'paper' (train on every fold but the test fold)")
    valid_fold = default_valid_fold(folds, test_fold) if valid_fold is None else valid_fold
    if valid_fold == test_fold or valid_fold not in folds:
        raise ConfigError(f"valid fold {valid_fold} must be one of {folds} other than the test fold {test_fold}")
    return FoldRoles(tuple(f for f in folds if f not in (test_fold, valid_fold)), (valid_fold,), test_fold)


# ---------------------------------------------------------------- resources


def resource_bundle(cpus: float, gpus: float, custom: dict[str, float], memory: int = 0) -> dict[str, float]:
    """One worker's Ray resource request: CPUs, the GPU share when there is one, custom resources, and its
    private host memory in bytes when known (``orchestrator.memory``: the dataset is shared, not counted)."""
    bundle = {"CPU": cpus}
    if gpus > 0:
        bundle["GPU"] = gpus
    bundle |= custom
    if memory > 0:
        bundle["memory"] = memory
    return bundle


# ---------------------------------------------------------------- ids, hashes and pools

# Fields added after results existed ("section.key" paths), left out of a trial's id while they hold the value
# that reproduces the old behaviour: trials of configurations that predate a field keep their ids (and are
# reused, not retrained), while any other value is a different trial. A record that lacks such a key ran
# with this value (analysis pools it with the records that have it).
ID_DEFAULTS: dict[str, Any] = {
    # the old behaviour: no split modes; every stored copy, every epoch; inputs as they are
    "split": "nested", "augmented": "all", "standardize": False,
    # Adam + StepLR/MultiStepLR without warm-up: the paper's recipe, the only one before these fields
    "optim.optimizer": "adam", "optim.warmup_epochs": 0, "optim.schedule": "step",
    "optim.mixup_alpha": 0.0, "optim.label_smoothing": 0.0,  # no mixup, hard labels: all trials before them
    # None: a cross-entropy trial (no projection, no contrastive term). A hybrid trial resolves these to
    # SoundCLR's linear / zero, which is not what hybrid trials ran before (an MLP head, positiveless anchors
    # excluded), so they rightly get new ids.
    "loss.projection": None, "loss.positiveless": None,
    "mask.fill": "mean",  # masks were filled with the sample mean before; the new default (max) is a new trial
    "loss.l2_embedding": False,  # unnormalised pooled features, as every trial before the option
}
# The same for a dataset version's hash: the augmentation fields (AugmentConfig.identity) ...
AUGMENT_HASH_DEFAULTS: dict[str, Any] = {"kind": "paper"}
# ... and the feature fields (orchestrator.preprocess). mel_scale "slaney" was this project's first recipe:
# at that value a field is left out of the version hash, so an old dataset keeps its folder name and is found
# and reused; at any other value (mel_scale "htk", the paper's recipe and the default) the hash, and so the
# folder, is new. The card always records the field.
FEATURE_HASH_DEFAULTS: dict[str, Any] = {"mel_scale": "slaney", "kind": "logmel", "num_channels": 3, "n_mfcc": 40,
                                         "recipe": "paper", "clip_seconds": None, "clip_offset": "centre",
                                         "mel_norm": None}

# How a trial runs, not what it computes: left out of its id, so changing them never retrains finished trials.
EXECUTION_ONLY = ("checkpoint_every", "custom_resources", "data_cache_gb")
# Every key that says how a trial ran (resources, where its weights came from), never what it computed:
# EXECUTION_ONLY and those that were part of trial ids from the start (kept there so ids do not change).
HOW_IT_RAN = (*EXECUTION_ONLY, "num_workers", "use_gpu", "cpus_per_worker", "gpus_per_worker", "weights",
              "download_weights")


def without_defaults(payload: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``payload`` less the fields ``defaults`` names ("section.key" paths) while they hold the value given
    there: how a field added after results existed stays out of a hash at its old-behaviour value, so ids and
    version names written before it keep matching (any other value is a new id)."""
    payload = json.loads(json.dumps(payload))  # a deep copy; nested sections are edited below
    for path, default in defaults.items():
        *parents, key = path.split(".")
        section = payload
        for name in parents:
            section = section.get(name) if isinstance(section, dict) else None
        if isinstance(section, dict) and key in section and section[key] == default:
            del section[key]
    return payload
