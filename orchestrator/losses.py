"""Training objectives: cross-entropy (the paper), supervised contrastive and the SoundCLR hybrid.

Defaults follow SoundCLR (Nasiri & Hu, 2021) and are documented where they are defined: temperature 0.05,
alpha 0.5 (equal weight of the contrastive and cross-entropy terms) and a 64-d projection.

``make_loss`` returns an :class:`Objective` with one calling convention for every loss,
``objective(outputs, labels)``, where ``outputs`` is the logits tensor or a ``(logits, projections)``
pair (what :class:`orchestrator.models.ClassifierWithProjection` returns). ``objective.needs_projection``
tells the trainer whether the model must be wrapped with a projection head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.errors import ConfigError

DEFAULT_TEMPERATURE = 0.05  # SoundCLR: temperature of the supervised contrastive loss
DEFAULT_ALPHA = 0.5  # SoundCLR hybrid: weight of the contrastive term; 1 - alpha weighs cross-entropy
DEFAULT_PROJECTION_DIM = 64  # SoundCLR: size of the L2-normalised projection the contrastive loss sees

LOSS_NAMES = ("ce", "supcon", "hybrid")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, C) against integer ``labels`` (B,)."""
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al., 2020, the L_out form), one view per sample.

    Input: L2-normalised ``features`` (B, D) and integer ``labels`` (B,). For anchor i with positives
    P(i) (the other samples sharing its label) and all others A(i) = {a != i}::

        L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )

    The loss is the mean of L_i over anchors that have at least one positive; anchors alone in their class
    carry no signal and are excluded (a batch with no positive pair gives 0, still differentiable).
    ``base_temperature``: when set, the loss is scaled by ``temperature / base_temperature`` as in the
    authors' reference code (their default 0.07); None (default) leaves the formula above unscaled.
    """

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, base_temperature: float | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.base_temperature = base_temperature

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss over anchors with a positive; see the class docstring."""
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
        loss = -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()
        if self.base_temperature is not None:
            loss = loss * (self.temperature / self.base_temperature)
        return loss


class HybridLoss(nn.Module):
    """SoundCLR hybrid loss: ``alpha * SupCon(projections) + (1 - alpha) * CE(logits)``."""

    def __init__(self, alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
                 base_temperature: float | None = None) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.supcon = SupConLoss(temperature, base_temperature)

    def forward(self, logits: torch.Tensor, projections: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the contrastive loss on ``projections`` and cross-entropy on ``logits``."""
        return self.alpha * self.supcon(projections, labels) + (1 - self.alpha) * cross_entropy(logits, labels)


class ProjectionHead(nn.Module):
    """SoundCLR projection: Linear -> ReLU -> Linear, then L2-normalised (the input SupCon expects).

    ``hidden_dim`` defaults to ``in_dim`` (the common SimCLR/SupCon choice).
    """

    def __init__(self, in_dim: int, out_dim: int = DEFAULT_PROJECTION_DIM, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project (B, in_dim) features to unit-norm (B, out_dim) vectors."""
        return F.normalize(self.net(features), dim=1)


def split_outputs(outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, projections)`` from a model output: a logits tensor or a ``(logits, projections)`` pair."""
    if isinstance(outputs, torch.Tensor):
        return outputs, None
    logits, projections = outputs
    return logits, projections


class Objective(nn.Module):
    """One calling convention for every loss: ``objective(outputs, labels)``; built by :func:`make_loss`."""

    def __init__(self, name: str, alpha: float, temperature: float, base_temperature: float | None) -> None:
        super().__init__()
        self.name = name
        self.hybrid = HybridLoss(alpha, temperature, base_temperature)  # its .supcon serves "supcon" too
        self.needs_projection = name != "ce"

    def forward(self, outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``outputs`` (logits, or ``(logits, projections)``) against ``labels``."""
        logits, projections = split_outputs(outputs)
        if self.name == "ce":
            return cross_entropy(logits, labels)
        if projections is None:
            raise ValueError(f"loss {self.name!r} needs (logits, projections); wrap the model with "
                             "ClassifierWithProjection")
        if self.name == "supcon":
            return self.hybrid.supcon(projections, labels)
        return self.hybrid(logits, projections, labels)


def make_loss(name: str, *, alpha: float = DEFAULT_ALPHA, temperature: float = DEFAULT_TEMPERATURE,
              base_temperature: float | None = None) -> Objective:
    """The objective called ``name``: ``"ce"`` (the paper), ``"supcon"`` or ``"hybrid"`` (SoundCLR).

    ``alpha`` only matters for ``"hybrid"``; ``temperature`` / ``base_temperature`` for the contrastive ones.
    """
    if name not in LOSS_NAMES:
        raise ConfigError(f"unknown loss {name!r}; valid losses: {', '.join(LOSS_NAMES)}")
    return Objective(name, alpha, temperature, base_temperature)
