"""SpecMask (orchestrator/spec_augment.py): bounded bands, training mode only, and each fill's values.

Inputs are real log-mel features of the bundled FSDD clips where the fill value matters, so "max" and
"mean" are checked on the value range a trainer actually sees.
"""

import numpy as np
import pytest
import torch

from layouts import fsdd_wave
from orchestrator.config import FeatureConfig, MaskConfig
from orchestrator.errors import ConfigError
from orchestrator.features import SpectrogramFeatures
from orchestrator.spec_augment import SpecMask


@pytest.fixture(scope="module")
def fsdd_features() -> torch.Tensor:
    """(4, 3, 64, 100) log-mel features of four real FSDD digit recordings (data/fsdd-mini) at 8 kHz."""
    module = SpectrogramFeatures(FeatureConfig(height=64), 8000, 100)
    waves = torch.from_numpy(np.stack([fsdd_wave(d, 8000, 0.5) for d in range(4)]))
    with torch.no_grad():
        return module(waves)


def masked_cells(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: cells changed in every channel."""
    return (y != x).all(dim=1)


def test_spec_mask_masks_bounded_bands_in_training_only():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 128, 250) + 10
    mask = SpecMask(freq_masks=2, max_freq=32, time_masks=1, max_time=32)
    assert torch.equal(mask.eval()(x), x)
    y = mask.train()(x)
    changed = y != x
    for i in range(8):
        rows = changed[i, 0].all(dim=1).sum().item()  # fully masked mel bins
        cols = changed[i, 0].all(dim=0).sum().item()  # fully masked frames
        assert rows <= 64 and cols <= 32
        assert changed[i].any()


def test_default_fill_is_each_channels_maximum(fsdd_features):
    """SoundCLR writes 0 into a ref=max dB spectrogram, i.e. the clip's maximum: masked cells hold the
    sample's per-channel maximum of the unmasked input."""
    assert SpecMask().fill == "max" and MaskConfig().fill == "max"
    torch.manual_seed(1)
    x = fsdd_features
    y = SpecMask(max_freq=16, max_time=16).train()(x)
    hit = masked_cells(x, y)
    assert hit.any()
    peak = x.amax(dim=(2, 3))  # (B, C)
    for b in range(len(x)):
        for c in range(3):
            assert torch.all(y[b, c][hit[b]] == peak[b, c])


def test_zero_fill_writes_zeros(fsdd_features):
    torch.manual_seed(2)
    x = fsdd_features
    assert (x != 0).all()  # natural-log mel power: no exact zeros, so every 0 below is a masked cell
    y = SpecMask(max_freq=16, max_time=16, fill="zero").train()(x)
    hit = (y == 0).all(dim=1)
    assert hit.any() and torch.equal(hit, masked_cells(x, y))


def test_mean_fill_is_unchanged(fsdd_features):
    """'mean' is the project's previous behaviour: the image mean recomputed before each band."""
    torch.manual_seed(3)
    x = fsdd_features
    y = SpecMask(freq_masks=1, max_freq=16, time_masks=0, fill="mean").train()(x)
    hit = masked_cells(x, y)
    for b in range(len(x)):
        if hit[b].any():
            assert torch.allclose(y[b][:, hit[b]], x[b].mean().expand(3, int(hit[b].sum())))


def test_fill_is_validated():
    with pytest.raises(ValueError, match="mask fill must be one of"):
        SpecMask(fill="noise")
    with pytest.raises(ConfigError, match="mask.fill must be one of"):
        MaskConfig(fill="noise")
