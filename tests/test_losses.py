"""Losses: SupCon against a naive per-pair loop, the hybrid's exact composition, gradients, factory errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from orchestrator.errors import ConfigError
from orchestrator.losses import (
    HybridLoss,
    ProjectionHead,
    SupConLoss,
    cross_entropy,
    make_loss,
)


def naive_supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Khosla et al. L_out written pair by pair, in float64 Python arithmetic."""
    z = z.double()
    n = len(labels)
    per_anchor = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / temperature) for a in range(n) if a != i)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / temperature) / denom) for p in positives]
        per_anchor.append(-sum(terms) / len(positives))
    return sum(per_anchor) / len(per_anchor)


def random_batch(seed: int, n: int = 12, dim: int = 8, classes: int = 4):
    gen = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=1)
    labels = torch.randint(0, classes, (n,), generator=gen)
    labels[0] = labels[1]  # at least one positive pair in every batch
    return z, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
def test_supcon_matches_naive_loop(seed, temperature):
    z, labels = random_batch(seed)
    got = SupConLoss(temperature)(z, labels).item()
    assert got == pytest.approx(naive_supcon(z, labels, temperature), abs=1e-5, rel=1e-7)


def test_supcon_float32_matches_naive_loop():
    z, labels = random_batch(7)
    got = SupConLoss(0.05)(z.float(), labels).item()
    assert got == pytest.approx(naive_supcon(z, labels, 0.05), rel=1e-5)


def test_supcon_excludes_anchors_without_positive():
    z, _ = random_batch(3, n=5)
    labels = torch.tensor([0, 0, 1, 2, 3])  # only anchors 0 and 1 have a positive
    got = SupConLoss(0.1)(z, labels).item()
    assert got == pytest.approx(naive_supcon(z, labels, 0.1), abs=1e-6)
    # Changing the lone samples' labels among themselves must not change the loss's anchor set.
    assert SupConLoss(0.1)(z, torch.tensor([0, 0, 3, 1, 2])).item() == pytest.approx(got, abs=1e-12)


def test_supcon_no_positive_pairs_is_zero_and_differentiable():
    z = F.normalize(torch.randn(4, 6), dim=1).requires_grad_()
    loss = SupConLoss()(z, torch.arange(4))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_supcon_base_temperature_scales():
    z, labels = random_batch(1)
    plain = SupConLoss(0.05)(z, labels)
    scaled = SupConLoss(0.05, base_temperature=0.07)(z, labels)
    assert scaled.item() == pytest.approx(plain.item() * 0.05 / 0.07, rel=1e-12)


def test_supcon_gradients_flow_and_are_finite():
    z, labels = random_batch(2)
    raw = torch.randn(12, 8, dtype=torch.float64, requires_grad=True)
    loss = SupConLoss(0.05)(F.normalize(raw, dim=1), labels)
    loss.backward()
    assert torch.isfinite(raw.grad).all()
    assert raw.grad.abs().sum() > 0


def test_supcon_lower_for_clustered_embeddings():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    centres = F.normalize(torch.randn(4, 16, generator=gen), dim=1)
    clustered = F.normalize(centres[labels] + 0.05 * torch.randn(16, 16, generator=gen), dim=1)
    scattered = F.normalize(torch.randn(16, 16, generator=gen), dim=1)
    loss = SupConLoss(0.05)
    assert loss(clustered, labels) < loss(scattered, labels) - 1.0


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_hybrid_is_weighted_sum(alpha):
    z, labels = random_batch(5)
    logits = torch.randn(12, 4, dtype=torch.float64)
    expected = alpha * SupConLoss(0.05)(z, labels) + (1 - alpha) * F.cross_entropy(logits, labels)
    assert HybridLoss(alpha, 0.05)(logits, z, labels).item() == pytest.approx(expected.item(), abs=1e-12)


def test_hybrid_gradients_reach_both_inputs():
    z, labels = random_batch(6)
    raw = torch.randn(12, 8, requires_grad=True)
    logits = torch.randn(12, 4, requires_grad=True)
    HybridLoss()(logits, F.normalize(raw, dim=1), labels).backward()
    assert raw.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_defaults_match_soundclr():
    assert SupConLoss().temperature == 0.05
    hybrid = HybridLoss()
    assert hybrid.alpha == 0.5 and hybrid.supcon.temperature == 0.05
    assert ProjectionHead(32)(torch.randn(3, 32)).shape == (3, 64)


def test_projection_head_outputs_unit_vectors():
    head = ProjectionHead(32, 16)
    out = head(torch.randn(5, 32))
    assert out.shape == (5, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Linear"]


def test_make_loss_objectives():
    z, labels = random_batch(8)
    z = z.float()
    logits = torch.randn(12, 4)
    assert make_loss("ce")(logits, labels).item() == pytest.approx(cross_entropy(logits, labels).item())
    assert make_loss("ce")((logits, z), labels).item() == pytest.approx(cross_entropy(logits, labels).item())
    assert make_loss("supcon", temperature=0.1)((logits, z), labels).item() == pytest.approx(
        SupConLoss(0.1)(z, labels).item())
    assert make_loss("hybrid", alpha=0.25)((logits, z), labels).item() == pytest.approx(
        HybridLoss(0.25)(logits, z, labels).item())
    assert not make_loss("ce").needs_projection
    assert make_loss("supcon").needs_projection and make_loss("hybrid").needs_projection


def test_make_loss_errors():
    with pytest.raises(ConfigError, match="valid losses: ce, supcon, hybrid"):
        make_loss("triplet")
    with pytest.raises(ValueError, match="ClassifierWithProjection"):
        make_loss("hybrid")(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="alpha"):
        make_loss("hybrid", alpha=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        SupConLoss(0.0)
