"""Integrated Gradients (captum) over the input spectrogram: which time-frequency cells drive a prediction.

Attributions are for the logit of the clip's true class (logits rather than softmax: IG's completeness,
sum of attributions = f(x) - f(baseline), holds for any f, but the path integral of a near-linear logit
needs far fewer steps than a saturating softmax). The baseline is silence: every cell at the log floor
``log(log_eps)`` of the dataset's features (log(1e-6) by default), the value a silent clip has; an all-zero
baseline would be a loud, flat spectrum in log-mel space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients

from analysis import trialnet
from orchestrator import spectra
from orchestrator.errors import StorageError

DEFAULT_LOG_EPS = 1e-6


@dataclass
class Attributions:
    """IG maps of a few clips of one trial, with what is needed to plot them."""

    trial_id: str
    model: str
    init: str
    clip_ids: list[str]
    labels: np.ndarray
    predicted: np.ndarray
    classes: list[str]
    specs: np.ndarray  # (N, 3, H, W) inputs
    attributions: np.ndarray  # (N, 3, H, W)
    delta: np.ndarray  # (N,) completeness error: sum(attr) - (f(x) - f(baseline))

    def completeness_error(self) -> float:
        """Sum of |delta| over the clips relative to the sum of |f(x) - f(baseline)|: how far the
        attributions are from adding up to the logit change (per-clip ratios explode when a clip's change is
        near 0, so the ratio is of sums). Shrinks as the number of steps grows."""
        gain = self.attributions.reshape(len(self.delta), -1).sum(axis=1) - self.delta
        return float(np.abs(self.delta).sum() / max(np.abs(gain).sum(), 1e-12))


def integrated_gradients(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor | np.ndarray,
                         baseline: torch.Tensor | float = 0.0, steps: int = 64,
                         internal_batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """IG attributions of ``model``'s logit ``targets`` w.r.t. ``inputs``; returns (attributions, delta).

    ``model`` is put in eval mode (dropout and BatchNorm statistics must not change along the path).
    """
    model.eval()
    explainer = IntegratedGradients(trialnet.logits_of(model))
    targets = torch.tensor(np.array(targets, dtype=np.int64))  # a copy: pandas arrays may be read-only
    if not isinstance(baseline, torch.Tensor):
        baseline = torch.full_like(inputs, float(baseline))
    attr, delta = explainer.attribute(inputs, baselines=baseline, target=targets, n_steps=steps,
                                      internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return attr.detach().numpy(), delta.detach().numpy()


def silence_level(data_uri: str) -> float:
    """The log floor of the dataset's features: ``log(log_eps)`` from its card (log(1e-6) if absent)."""
    try:
        eps = spectra.read_card(data_uri).get("features", {}).get("log_eps", DEFAULT_LOG_EPS)
    except StorageError:
        eps = DEFAULT_LOG_EPS
    return math.log(eps)


def trial_attributions(trial_dir_uri: str, data_uri: str | None = None, clips_per_class: int = 1,
                       max_clips: int = 10, steps: int = 64) -> Attributions:
    """IG maps of the trial's final model on its test fold: ``clips_per_class`` clips per class, at most
    ``max_clips`` in all (a fixed, class-balanced choice; ``data_uri`` defaults to the trial's dataset)."""
    info = trialnet.read_trial(trial_dir_uri)
    data = data_uri or info.cfg.data
    clips = trialnet.fixed_clips(data, info.test_fold, n_clips=max_clips, per_class=clips_per_class)
    network = trialnet.final_network(info)
    with torch.no_grad():
        predicted = trialnet.logits_of(network)(clips.specs).argmax(dim=1).numpy()
    attr, delta = integrated_gradients(network, clips.specs, clips.labels, silence_level(data), steps,
                                       internal_batch_size=min(steps, 16))  # bounds memory on big inputs
    return Attributions(info.trial_id, info.cfg.model, info.cfg.init, clips.clip_ids, clips.labels, predicted,
                        clips.classes, clips.specs.numpy(), attr, delta)
