"""Features against a straightforward librosa + PIL computation of the paper's recipe.

Tolerance: 5e-4 absolute on log-mel values (range about -14..6): float32 FFT rounding, which the log
amplifies in near-silent bins (typical error ~1e-6, worst seen 1.2e-4).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from layouts import fsdd_wave
from orchestrator.config import FeatureConfig
from orchestrator.errors import ConfigError
from orchestrator.features import LogMelSpectrogram3, featurize_clips, mel_filterbank

TOLERANCE = 5e-4


def librosa_reference(y: np.ndarray, sr: int, width: int) -> np.ndarray:
    """The paper's per-clip recipe: librosa mel power spectrogram, log(x + 1e-6), PIL bilinear resize."""
    import librosa

    channels = []
    for window_ms, hop_ms in ((25, 10), (50, 25), (100, 50)):
        spec = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=int(round(0.1 * sr)), win_length=int(round(window_ms * sr / 1000)),
            hop_length=int(round(hop_ms * sr / 1000)), n_mels=128)
        image = Image.fromarray(np.log(spec + 1e-6)).resize((width, 128), Image.BILINEAR)
        channels.append(np.asarray(image))
    return np.stack(channels)


@pytest.mark.parametrize("sr", [44100, 22050, 8000])
def test_mel_filterbank_equals_librosa(sr):
    import librosa

    ours = mel_filterbank(sr, int(round(0.1 * sr)), 128)
    theirs = librosa.filters.mel(sr=sr, n_fft=int(round(0.1 * sr)), n_mels=128)
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


@pytest.mark.parametrize("sr,seconds,width", [(44100, 5.0, 250), (22050, 1.3, 250), (22050, 3.0, 1500)])
def test_log_mel_matches_librosa_reference(sr, seconds, width):
    y = fsdd_wave(3, sr, seconds)
    module = LogMelSpectrogram3(FeatureConfig(), sr, width)
    ours = module(torch.from_numpy(y))[0].numpy()
    reference = librosa_reference(y, sr, width)
    assert ours.shape == reference.shape == (3, 128, width)
    assert np.abs(ours - reference).max() < TOLERANCE


def test_real_fsdd_clip_matches_reference(fsdd_root):
    y, sr = sf.read(fsdd_root / "recordings" / "7_jackson_3.wav", dtype="float32")
    ours = LogMelSpectrogram3(FeatureConfig(), sr, 250)(torch.from_numpy(y))[0].numpy()
    assert np.abs(ours - librosa_reference(y, sr, 250)).max() < TOLERANCE


def test_mono3x_replicates_the_first_channel():
    y = torch.from_numpy(fsdd_wave(1, 22050, 1.0))
    paper = LogMelSpectrogram3(FeatureConfig(), 22050, 100)(y)
    mono = LogMelSpectrogram3(FeatureConfig(variant="mono3x"), 22050, 100)(y)
    assert torch.equal(mono[:, 0], mono[:, 1]) and torch.equal(mono[:, 0], mono[:, 2])
    torch.testing.assert_close(mono[:, 0], paper[:, 0])


def test_batched_variable_lengths_equal_one_by_one():
    module = LogMelSpectrogram3(FeatureConfig(height=64), 8000, 50)
    clips = [fsdd_wave(i, 8000, s) for i, s in enumerate((0.3, 0.5, 0.3, 0.05))]
    batch = featurize_clips(module, clips)
    for clip, row in zip(clips, batch):
        single = module(torch.from_numpy(clip))[0].numpy()
        np.testing.assert_allclose(row, single, atol=1e-5)
    assert np.isfinite(batch).all()  # the 0.05 s clip (400 samples) is padded to one 800-sample window


def test_feature_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="variant must be one of"):
        FeatureConfig(variant="stereo")
    with pytest.raises(ConfigError, match="exactly 3 values"):
        FeatureConfig(windows_ms=(25.0, 50.0))
    with pytest.raises(ConfigError, match="cannot exceed"):
        FeatureConfig(windows_ms=(25.0, 50.0, 200.0))
