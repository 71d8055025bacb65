"""Losses: SupCon against a naive per-pair loop and against SoundCLR's own code, the hybrid's exact
composition, gradients, factory errors (supcon alone and alpha 1 are refused)."""

import math

import pytest
import torch
import torch.nn.functional as F

from orchestrator.config import LossConfig
from orchestrator.errors import ConfigError
from orchestrator.losses import (
    DEFAULT_TEMPERATURE,
    HybridLoss,
    SupConLoss,
    cross_entropy,
    make_loss,
)


def naive_supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float, positiveless: str = "zero") -> float:
    """Khosla et al. L_out written pair by pair, in float64 Python arithmetic; ``positiveless`` "zero" counts
    anchors without a positive as 0 in the mean, "exclude" leaves them out."""
    z = z.double()
    n = len(labels)
    per_anchor = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            if positiveless == "zero":
                per_anchor.append(0.0)
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / temperature) for a in range(n) if a != i)
        terms = [math.log(math.exp(float(z[i] @ z[p]) / temperature) / denom) for p in positives]
        per_anchor.append(-sum(terms) / len(positives))
    return sum(per_anchor) / len(per_anchor)


def soundclr_supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SoundCLR's loss_fn/contrastive_loss.py SupConLoss.forward (one view, labels given), transcribed line for
    line from github.com/alireza-nasiri/SoundCLR; called as train_hybridLoss.py does, on (B, 1, D)."""
    features = features.unsqueeze(1)
    batch_size = features.shape[0]
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float()
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    anchor_feature, anchor_count = contrast_feature, contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch_size * anchor_count).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    eps = 1e-30
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + eps)
    mean_log_prob_pos = (mask * log_prob).sum(1) / (mask.sum(1) + eps)
    return (-mean_log_prob_pos).view(anchor_count, batch_size).mean()


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


def test_supcon_exclude_leaves_out_anchors_without_positive():
    z, _ = random_batch(3, n=5)
    labels = torch.tensor([0, 0, 1, 2, 3])  # only anchors 0 and 1 have a positive
    got = SupConLoss(0.1, positiveless="exclude")(z, labels).item()
    assert got == pytest.approx(naive_supcon(z, labels, 0.1, "exclude"), abs=1e-6)
    # Changing the lone samples' labels among themselves must not change the loss's anchor set.
    relabelled = SupConLoss(0.1, positiveless="exclude")(z, torch.tensor([0, 0, 3, 1, 2])).item()
    assert relabelled == pytest.approx(got, abs=1e-12)


def test_supcon_zero_counts_anchors_without_positive_as_zero():
    """The default, as SoundCLR: 2 of 5 anchors have a positive, so the loss is 2/5 of the 'exclude' mean."""
    z, _ = random_batch(3, n=5)
    labels = torch.tensor([0, 0, 1, 2, 3])
    zero = SupConLoss(0.1)(z, labels).item()
    assert SupConLoss(0.1).positiveless == "zero"
    assert zero == pytest.approx(naive_supcon(z, labels, 0.1, "zero"), abs=1e-6)
    assert zero == pytest.approx(SupConLoss(0.1, positiveless="exclude")(z, labels).item() * 2 / 5, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n, classes", [(12, 4), (16, 10), (32, 24)])
def test_supcon_default_matches_soundclr_code(seed, n, classes):
    """Our default SupConLoss computes what SoundCLR's contrastive_loss.py computes, lone anchors included."""
    z, labels = random_batch(seed, n=n, classes=classes)
    assert SupConLoss(0.05)(z, labels).item() == pytest.approx(soundclr_supcon(z, labels, 0.05).item(),
                                                               abs=1e-9, rel=1e-9)


def test_supcon_rejects_unknown_positiveless():
    with pytest.raises(ConfigError, match="positiveless must be one of"):
        SupConLoss(positiveless="drop")


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


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.99])
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
    """Temperature 0.05 is what SoundCLR trains with: train_hybridLoss.py passes config.temperature (0.05) to
    HybridLoss, which hands it to SupConLoss; the classes' own 0.07 default is never used."""
    assert DEFAULT_TEMPERATURE == 0.05 and SupConLoss().temperature == 0.05
    hybrid = HybridLoss()
    assert hybrid.alpha == 0.5 and hybrid.supcon.temperature == 0.05 and hybrid.supcon.positiveless == "zero"
    assert make_loss("hybrid").hybrid.supcon.positiveless == "zero"
    assert make_loss("hybrid", positiveless="exclude").hybrid.supcon.positiveless == "exclude"
    cfg = LossConfig(name="hybrid")
    assert (cfg.temperature, cfg.alpha, cfg.projection_dim, cfg.projection, cfg.positiveless) == (
        0.05, 0.5, 64, "linear", "zero")


def test_loss_config_leaves_contrastive_options_unset_for_ce():
    """Cross-entropy trials carry no projection / positiveless (None), so their ids do not change."""
    assert (LossConfig().projection, LossConfig().positiveless) == (None, None)
    assert LossConfig(name="hybrid", projection="mlp", positiveless="exclude").projection == "mlp"
    with pytest.raises(ConfigError, match="loss.projection must be one of"):
        LossConfig(name="hybrid", projection="deep")
    with pytest.raises(ConfigError, match="loss.positiveless must be one of"):
        LossConfig(positiveless="maybe")


def test_make_loss_objectives():
    z, labels = random_batch(8)
    z = z.float()
    logits = torch.randn(12, 4)
    assert make_loss("ce")(logits, labels).item() == pytest.approx(cross_entropy(logits, labels).item())
    assert make_loss("ce")((logits, z), labels).item() == pytest.approx(cross_entropy(logits, labels).item())
    assert make_loss("hybrid", alpha=0.25)((logits, z), labels).item() == pytest.approx(
        HybridLoss(0.25)(logits, z, labels).item())
    assert not make_loss("ce").needs_projection
    assert make_loss("hybrid").needs_projection


def test_make_loss_errors():
    with pytest.raises(ConfigError, match="valid losses: ce, hybrid"):
        make_loss("triplet")
    with pytest.raises(ValueError, match="ClassifierWithProjection"):
        make_loss("hybrid")(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="alpha"):
        make_loss("hybrid", alpha=1.5)


def test_supcon_alone_is_refused_with_the_fix():
    """SupCon alone never trains the classifier head (chance accuracy): refused everywhere, naming 'hybrid'."""
    for refuse in (lambda: make_loss("supcon"), lambda: LossConfig(name="supcon")):
        with pytest.raises(ConfigError, match="loss 'supcon' is not available.*untrained.*use 'hybrid'"):
            refuse()


def test_hybrid_with_alpha_one_is_refused():
    """alpha 1 weighs cross-entropy by 0: the same untrained classifier as SupCon alone."""
    with pytest.raises(ConfigError, match="alpha 1 gives cross-entropy weight 0"):
        LossConfig(name="hybrid", alpha=1.0)
    with pytest.raises(ConfigError, match="classifier head is never trained"):
        make_loss("hybrid", alpha=1.0)
    assert LossConfig(name="ce", alpha=1.0).alpha == 1.0  # irrelevant to cross-entropy: allowed
