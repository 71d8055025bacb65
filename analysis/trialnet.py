"""A finished trial's networks and a fixed batch of its test-fold clips, for SVCCA and attributions.

* :func:`initial_network`: the network the trial started from, rebuilt exactly as the trial did
  (``seed_everything(seed)`` then ``build_network``): ImageNet weights for 'pretrained' (so the weights
  must be available offline, as they were for the trial), the seeded default init for 'random'.
* :func:`final_network`: the same architecture with the weights of the trial's final ``checkpoint.pt``
  (read with ``torch.load(..., weights_only=True)``: tensors only, never pickles).
* :func:`fixed_clips`: clips of the test fold in a fixed, class-balanced order (original clips only).

Global RNG states are restored afterwards, so analysing a trial does not change the caller's randomness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import torch
from torch import nn

from orchestrator import spectra, storage
from orchestrator.config import TrialConfig, from_dict
from orchestrator.errors import StorageError
from orchestrator.trial import CHECKPOINT_FILE
from orchestrator.training import build_network, seed_everything

LEGACY_STATE_FILE, CHECKPOINT_PREFIX = "state.pt", "checkpoint_"  # Ray Train checkpoint folders (older results)


@dataclass(frozen=True)
class TrialInfo:
    """What a trial folder says about itself."""

    uri: str
    trial_id: str
    cfg: TrialConfig
    num_classes: int
    test_fold: int
    train_folds: tuple[int, ...]
    input_channels: int = 3  # the dataset's channels (records written before the field: 3)
    input_stats: list | None = None  # [mean, std] per channel or band the trial standardised with; None: it did not


def read_trial(trial_uri: str) -> TrialInfo:
    """Parse ``config.json`` of a trial folder into a TrialConfig (keys this version does not know are
    dropped, so records written by a newer or older orchestrator still load)."""
    loc = storage.resolve(trial_uri)
    config = storage.read_json(loc.join("config.json"))
    known = {f.name for f in dataclasses.fields(TrialConfig)}
    cfg = from_dict(TrialConfig, {k: v for k, v in config["trial"].items() if k in known})
    return TrialInfo(loc.uri, config["trial_id"], cfg, int(config["num_classes"]), int(config["folds"]["test"][0]),
                     tuple(int(f) for f in config["folds"]["train"]), int(config["dataset"].get("channels", 3)),
                     config["dataset"].get("input_stats"))


def newest_checkpoint(trial_uri: str) -> storage.Location:
    """The trial's ``checkpoint.pt`` (written after its last epoch), or in results written before that file
    existed, ``state.pt`` of the newest Ray Train ``checkpoint_<timestamp>`` folder (names sort by time)."""
    found = _checkpoint(trial_uri)
    if found is None:
        raise StorageError(f"{trial_uri} holds no {CHECKPOINT_FILE} (nor a legacy {CHECKPOINT_PREFIX}* folder): "
                           "no final weights to analyse (were the trial's checkpoints deleted or written elsewhere?)")
    return found


def has_checkpoint(trial_uri: str) -> bool:
    """Whether the trial left final weights to analyse."""
    return _checkpoint(trial_uri) is not None


def _checkpoint(trial_uri: str) -> storage.Location | None:
    loc = storage.resolve(trial_uri)
    if storage.exists(loc.join(CHECKPOINT_FILE)):
        return loc.join(CHECKPOINT_FILE)
    legacy = [n for n in storage.list_dirs(loc) if n.startswith(CHECKPOINT_PREFIX)]
    return loc.join(max(legacy), LEGACY_STATE_FILE) if legacy else None


@contextlib.contextmanager
def preserved_rng():
    """Restore Python, numpy and torch CPU RNG states on exit (seed_everything reseeds all three)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def initial_network(info: TrialInfo) -> nn.Module:
    """The network exactly as the trial built it before its first step, in eval mode."""
    with preserved_rng():
        seed_everything(info.cfg.seed)
        return build_network(info.cfg, info.num_classes, info.input_stats, info.input_channels).eval()


def final_network(info: TrialInfo) -> nn.Module:
    """The trial's final network (newest checkpoint), in eval mode.

    The skeleton is built with random init where the architecture does not depend on the init mode
    (pretrained, random, fusion, freeze), so no ImageNet weights are needed to look at a finished trial.
    """
    state_file = newest_checkpoint(info.uri)  # first: a missing checkpoint fails before any model is built
    kind = info.cfg.init.partition(":")[0]
    skeleton = info.cfg if kind == "cutoff" else dataclasses.replace(info.cfg, init="random")
    with preserved_rng():
        network = build_network(skeleton, info.num_classes, info.input_stats, info.input_channels)
    blob = torch.load(io.BytesIO(storage.read_bytes(state_file)), map_location="cpu", weights_only=True)
    network.load_state_dict(blob["model"])
    return network.eval()


def block_net(network: nn.Module) -> nn.Module:
    """The BlockNet inside ``network`` (SupCon/hybrid trials wrap it with a projection head)."""
    return network if hasattr(network, "block_outputs") else network.model


def logits_of(network: nn.Module):
    """A function inputs -> logits, also for networks whose forward returns (logits, projections)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = network(x)
        return out[0] if isinstance(out, tuple) else out
    return forward


@dataclass
class Clips:
    """A fixed batch of clips: float32 spectrograms (N, 3, H, W), labels, ids and the class names."""

    specs: torch.Tensor
    labels: np.ndarray
    clip_ids: list[str]
    classes: list[str]


def fixed_clips(data_uri: str, fold: int, n_clips: int | None = None, per_class: int | None = None,
                max_classes: int | None = None) -> Clips:
    """Original (non-augmented) clips of ``fold``, class-balanced: round-robin over classes in label order,
    clip ids sorted within a class. ``per_class``/``max_classes`` cap clips per class and classes;
    ``n_clips`` caps the total. The same arguments always give the same clips."""
    table = spectra.read_table(data_uri, folds=[fold], columns=["clip_id", "label", "aug_copy", "spec"])
    table = table.filter(pc.is_null(table["aug_copy"]))
    meta = table.select(["clip_id", "label"]).to_pandas()
    meta["rank"] = meta.sort_values("clip_id").groupby("label").cumcount()
    if per_class is not None:
        meta = meta[meta["rank"] < per_class]
    if max_classes is not None:
        meta = meta[meta["label"].isin(sorted(meta["label"].unique())[:max_classes])]
    meta = meta.sort_values(["rank", "label"])[:n_clips]
    if meta.empty:
        raise StorageError(f"{data_uri}: fold {fold} holds no clips to analyse")
    specs = spectra.spec_array(table.take(meta.index.to_numpy())).astype(np.float32)
    classes = spectra.read_card(data_uri).get("classes", [])
    return Clips(torch.from_numpy(specs), meta["label"].to_numpy(np.int64), meta["clip_id"].tolist(), classes)
