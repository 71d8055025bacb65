"""Training objectives: cross-entropy (the paper) and the SoundCLR hybrid of SupCon and cross-entropy.

Defaults follow SoundCLR (Nasiri & Hu, 2021; github.com/alireza-nasiri/SoundCLR) and are documented where
they are defined: temperature 0.05, alpha 0.5 (equal weight of the contrastive and cross-entropy terms) and
anchors without a positive counted as 0 in the mean. The projection head is a model part
(:class:`orchestrator.models.ProjectionHead`).

``make_loss`` returns an :class:`Objective` with one calling convention for every loss,
``objective(outputs, labels)``, where ``outputs`` is the logits tensor or a ``(logits, projections)``
pair (what :class:`orchestrator.models.ClassifierWithProjection` returns). ``objective.needs_projection``
tells the trainer whether the model must be wrapped with a projection head.

SupCon alone is not offered (see ``orchestrator.config.SUPCON_REMOVED``): it never trains the classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.config import (DEFAULT_ALPHA, DEFAULT_POSITIVELESS, DEFAULT_TEMPERATURE, LOSSES, POSITIVELESS,
                                 SUPCON_REMOVED)
from orchestrator.errors import ConfigError



def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, C) against integer ``labels`` (B,)."""
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al., 2020, the L_out form), one view per sample.

    Input: L2-normalised ``features`` (B, D) and integer ``labels`` (B,). For anchor i with positives
    P(i) (the other samples sharing its label) and all others A(i) = {a != i}::

        L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )

    ``positiveless``: ``"zero"`` (SoundCLR) averages L_i over all B anchors with L_i = 0 for anchors that have
    no positive; ``"exclude"`` averages over anchors with a positive only (see ``DEFAULT_POSITIVELESS``).
    A batch with no positive pair gives 0 either way, still differentiable.
    ``base_temperature``: when set, the loss is scaled by ``temperature / base_temperature`` as in
    HobbitLong's SupContrast code (SoundCLR's copy drops it); None (default) leaves the formula unscaled.
    """

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, base_temperature: float | None = None,
                 positiveless: str = DEFAULT_POSITIVELESS) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if positiveless not in POSITIVELESS:
            raise ConfigError(f"positiveless must be one of {POSITIVELESS}, got {positiveless!r}")
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.positiveless = positiveless

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss over anchors; see the class docstring."""
        if features.ndim != 2 or labels.shape != features.shape[:1]:
            raise ValueError(f"expected features (B, D) and labels (B,), got {tuple(features.shape)} and "
                             f"{tuple(labels.shape)}")
        n = features.shape[0]
        self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
        # -inf on the diagonal removes each anchor from its own denominator (exp(-inf) = 0).
        sim = (features @ features.T / self.temperature).masked_fill(self_mask, float("-inf"))
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        positives = (labels[:, None] == labels[None, :]) & ~self_mask
        n_pos = positives.sum(dim=1)
        has_pos = n_pos > 0
        if not has_pos.any():
            return features.sum() * 0.0  # keeps the graph so backward() still works on such a batch
        # masked_fill (not multiplication) so the -inf diagonal never meets a 0 weight (0 * -inf = nan).
        pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
        per_anchor = -(pos_log_prob[has_pos] / n_pos[has_pos])
        loss = per_anchor.mean() if self.positiveless == "exclude" else per_anchor.sum() / n
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return loss


class HybridLoss(nn.Module):
    """SoundCLR hybrid loss: ``alpha * SupCon(projections) + (1 - alpha) * CE(logits)``."""

    def __init__(self, alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
                 base_temperature: float | None = None, positiveless: str = DEFAULT_POSITIVELESS) -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"alpha must be in [0, 1), got {alpha}: at 1 the cross-entropy weight is 0 and the "
                              "classifier head is never trained")
        self.alpha = alpha
        self.supcon = SupConLoss(temperature, base_temperature, positiveless)

    def forward(self, logits: torch.Tensor, projections: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the contrastive loss on ``projections`` and cross-entropy on ``logits``."""
        return self.alpha * self.supcon(projections, labels) + (1 - self.alpha) * cross_entropy(logits, labels)


def split_outputs(outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, projections)`` from a model output: a logits tensor or a ``(logits, projections)`` pair."""
    if isinstance(outputs, torch.Tensor):
        return outputs, None
    logits, projections = outputs
    return logits, projections


class Objective(nn.Module):
    """One calling convention for every loss: ``objective(outputs, labels)``; built by :func:`make_loss`."""

    def __init__(self, name: str, hybrid: HybridLoss | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.name = name
        self.hybrid = hybrid
        self.label_smoothing = label_smoothing
        self.needs_projection = hybrid is not None

    def forward(self, outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``outputs`` (logits, or ``(logits, projections)``) against ``labels``."""
        logits, projections = split_outputs(outputs)
        if self.hybrid is None:
            return cross_entropy(logits, labels, self.label_smoothing)
        if projections is None:
            raise ValueError(f"loss {self.name!r} needs (logits, projections); wrap the model with "
                             "ClassifierWithProjection")
        return self.hybrid(logits, projections, labels)


def make_loss(name: str, *, alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
              base_temperature: float | None = None, positiveless: str | None = None,
              label_smoothing: float = 0.0) -> Objective:
    """The objective called ``name``: ``"ce"`` (the paper) or ``"hybrid"`` (SoundCLR).

    ``label_smoothing`` is torch's cross-entropy smoothing, for ``"ce"`` only. ``alpha``, ``temperature``, ``base_temperature`` and ``positiveless`` (None: ``DEFAULT_POSITIVELESS``)
    only matter for ``"hybrid"``.
    """
    if name == "supcon":
        raise ConfigError(SUPCON_REMOVED)
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    if name == "ce":
        return Objective(name, label_smoothing=label_smoothing)
    if label_smoothing:
        raise ConfigError(f"label_smoothing applies to loss 'ce' only, not {name!r}: set it to 0")
    return Objective(name, HybridLoss(alpha, temperature, base_temperature, positiveless or DEFAULT_POSITIVELESS))
