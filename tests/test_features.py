"""Features against independent librosa + PIL computations of both recipes.

``paper_reference`` is the paper's recipe (torchaudio ``MelSpectrogram`` defaults: HTK mel scale, no filter
normalisation, reflect-padded centred frames; ``log(x + 1e-6)``; PIL bilinear resize of the float image),
built from librosa so the test needs no torchaudio. ``slaney_reference`` is this project's earlier recipe
(librosa defaults: Slaney scale, area normalisation, zero padding), still selectable with
``mel_scale="slaney"``.

Tolerance: 5e-4 absolute on log-mel values (range about -14..10): float32 FFT rounding (typical error ~1e-6)
plus torch's resize computing sample positions in float32 where PIL uses float64 (up to 1e-4 at width 250,
5e-4 when resizing 2285 -> 1500 frames). In quiet bins, whose power is within 10x of the 1e-6 floor (log below
-11.5), the log amplifies the FFT's absolute rounding and the error depends on the CPU's FFT kernels (worst
seen: 2.3e-4 on one machine, 6.3e-4 on an AMD EPYC), so those bins get 2e-3. Stored spectrograms are float16,
whose step is 4e-3..8e-3 in this range, so neither shows there.
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
from orchestrator.features import (SpectrogramFeatures, featurize_clips, mel_filterbank,
                                   torchaudio_bin_freqs)

TOLERANCE = 5e-4
QUIET_TOLERANCE, QUIET_BELOW = 2e-3, -11.5  # bins within 10x of the log floor log(1e-6) = -13.8
CHANNELS = ((25, 10), (50, 25), (100, 50))  # (window, hop) in ms, the paper's three channels


def pil_resize(spec: np.ndarray, width: int, height: int = 128) -> np.ndarray:
    """torchvision ``Resize((height, width))`` of ``Image.fromarray(spec)``: PIL bilinear on an "F" image."""
    return np.asarray(Image.fromarray(spec.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def torchaudio_grid_filterbank(sr: int, n_fft: int) -> np.ndarray:
    """torchaudio's ``melscale_fbanks(n_fft // 2 + 1, 0, sr // 2, 128, sr)`` written out with librosa's mel
    frequencies: HTK triangles, no normalisation, bins at ``linspace(0, sr // 2, n_fft // 2 + 1)``."""
    import librosa

    bins = np.linspace(0.0, sr // 2, n_fft // 2 + 1)
    edges = librosa.mel_frequencies(130, fmin=0.0, fmax=float(sr // 2), htk=True)
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0.0, np.minimum(rising, falling))


def paper_reference(y: np.ndarray, sr: int, width: int) -> np.ndarray:
    """The paper's per-clip recipe, per channel, from librosa and PIL.

    With an even ``n_fft`` (44.1 kHz: 4410, 8 kHz: 800) torchaudio's bin grid is the true one, so
    ``librosa.feature.melspectrogram(htk=True, norm=None, pad_mode="reflect")`` is exactly its
    ``MelSpectrogram``. With an odd ``n_fft`` (22.05 kHz: 2205) torchaudio spaces its bins over 0..sr/2
    instead (see ``torchaudio_bin_freqs``): librosa's power STFT times that grid's filterbank.
    """
    import librosa

    n_fft = int(round(0.1 * sr))
    if len(y) <= n_fft:  # preprocessingUSC.py: clips of <= n_fft samples are zero-padded to n_fft + 1
        y = np.concatenate([y, np.zeros(n_fft + 1 - len(y), dtype=y.dtype)])
    channels = []
    for window_ms, hop_ms in CHANNELS:
        frames = dict(n_fft=n_fft, hop_length=int(round(hop_ms * sr / 1000)),
                      win_length=int(round(window_ms * sr / 1000)), window="hann", center=True, pad_mode="reflect")
        if n_fft % 2 == 0:
            spec = librosa.feature.melspectrogram(y=y, sr=sr, power=2.0, n_mels=128, htk=True, norm=None, **frames)
        else:
            spec = torchaudio_grid_filterbank(sr, n_fft) @ (np.abs(librosa.stft(y, **frames)) ** 2)
        channels.append(pil_resize(np.log(spec + 1e-6), width))
    return np.stack(channels)


def slaney_reference(y: np.ndarray, sr: int, width: int) -> np.ndarray:
    """The earlier recipe (``mel_scale="slaney"``): librosa's defaults, log(x + 1e-6), PIL bilinear resize."""
    import librosa

    channels = []
    for window_ms, hop_ms in CHANNELS:
        spec = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=int(round(0.1 * sr)), win_length=int(round(window_ms * sr / 1000)),
            hop_length=int(round(hop_ms * sr / 1000)), n_mels=128, pad_mode="constant")
        channels.append(pil_resize(np.log(spec + 1e-6), width))
    return np.stack(channels)


def features(y: np.ndarray, sr: int, width: int, **config) -> np.ndarray:
    """Our module on one clip: ``(3, 128, width)``."""
    return SpectrogramFeatures(FeatureConfig(**config), sr, width)(torch.from_numpy(y))[0].numpy()


def assert_close_per_channel(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    for channel, (a, b) in enumerate(zip(ours, reference)):
        error, quiet = np.abs(a - b), b < QUIET_BELOW
        loud = error[~quiet].max()
        assert loud < TOLERANCE, f"channel {channel}: max |ours - reference| = {loud:.2e}"
        if quiet.any():
            worst_quiet = error[quiet].max()
            assert worst_quiet < QUIET_TOLERANCE, f"channel {channel}, quiet bins: {worst_quiet:.2e}"


@pytest.mark.parametrize("sr", [44100, 8000, 16000])
def test_htk_filterbank_equals_librosa(sr):
    import librosa

    n_fft = int(round(0.1 * sr))
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=128, htk=True, norm=None)
    np.testing.assert_allclose(mel_filterbank(sr, n_fft, 128), theirs, atol=1e-6)  # defaults: htk, no norm
    # with an even n_fft torchaudio's grid is librosa's, so both oracles agree
    np.testing.assert_allclose(torchaudio_grid_filterbank(sr, n_fft), theirs, atol=1e-6)


def test_torchaudio_bin_grid_for_odd_n_fft():
    # 2205-point FFT at 22.05 kHz: true bins 0, 10, ..., 11020 Hz; torchaudio's 0 .. 11025 Hz
    grid = torchaudio_bin_freqs(22050, 2205)
    assert len(grid) == 1103 and grid[-1] == 11025.0 and grid[1] == pytest.approx(11025 / 1102)
    np.testing.assert_array_equal(torchaudio_bin_freqs(44100, 4410), np.fft.rfftfreq(4410, 1 / 44100))
    ours = mel_filterbank(22050, 2205, 128, 0.0, 11025.0, bin_freqs=grid)
    np.testing.assert_allclose(ours, torchaudio_grid_filterbank(22050, 2205), atol=1e-6)


@pytest.mark.parametrize("sr", [44100, 22050, 8000])
def test_slaney_filterbank_equals_librosa_defaults(sr):
    import librosa

    ours = mel_filterbank(sr, int(round(0.1 * sr)), 128, htk=False, norm="slaney")
    theirs = librosa.filters.mel(sr=sr, n_fft=int(round(0.1 * sr)), n_mels=128)
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


def test_real_fsdd_clip_matches_the_paper_recipe(fsdd_root):
    y, sr = sf.read(fsdd_root / "recordings" / "7_jackson_3.wav", dtype="float32")
    assert sr == 8000
    assert_close_per_channel(features(y, sr, 250), paper_reference(y, sr, 250))


@pytest.mark.parametrize("sr,seconds,width", [(44100, 5.0, 250), (22050, 4.0, 250), (22050, 3.0, 1500)])
def test_resampled_speech_matches_the_paper_recipe(sr, seconds, width):
    y = fsdd_wave(3, sr, seconds)  # real FSDD speech resampled: ESC-50's and US8K/GTZAN's rates
    assert_close_per_channel(features(y, sr, width), paper_reference(y, sr, width))


@pytest.mark.parametrize("samples", [300, 2205])
def test_short_clips_are_padded_as_the_paper_pads_them(samples):
    # reflect padding needs more than n_fft // 2 samples: clips of <= n_fft are zero-padded to n_fft + 1 first
    y = fsdd_wave(5, 22050, 0.2)[:samples]
    ours = features(y, 22050, 250)
    assert np.isfinite(ours).all()
    assert_close_per_channel(ours, paper_reference(y, 22050, 250))


@pytest.mark.parametrize("sr,seconds,width", [(44100, 5.0, 250), (22050, 1.3, 250), (22050, 3.0, 1500)])
def test_slaney_matches_librosa_defaults(sr, seconds, width):
    y = fsdd_wave(3, sr, seconds)
    assert_close_per_channel(features(y, sr, width, mel_scale="slaney"), slaney_reference(y, sr, width))


def test_real_fsdd_clip_slaney(fsdd_root):
    y, sr = sf.read(fsdd_root / "recordings" / "7_jackson_3.wav", dtype="float32")
    assert_close_per_channel(features(y, sr, 250, mel_scale="slaney"), slaney_reference(y, sr, 250))


def test_the_recipes_differ_by_nats_per_band(fsdd_root):
    # unnormalised HTK triangles peak at 1 where Slaney's are scaled by 2 / bandwidth in Hz (<< 1): the
    # paper's log-mel sits above the earlier one (measured on this clip: median 3.6 nats per band)
    y, sr = sf.read(fsdd_root / "recordings" / "7_jackson_3.wav", dtype="float32")
    gap = np.median(features(y, sr, 250) - features(y, sr, 250, mel_scale="slaney"), axis=(0, 2))
    assert gap.shape == (128,) and 2.0 < np.median(gap) < 6.0


def test_mono3x_replicates_the_first_channel():
    y = torch.from_numpy(fsdd_wave(1, 22050, 1.0))
    paper = SpectrogramFeatures(FeatureConfig(), 22050, 100)(y)
    mono = SpectrogramFeatures(FeatureConfig(variant="mono3x"), 22050, 100)(y)
    assert torch.equal(mono[:, 0], mono[:, 1]) and torch.equal(mono[:, 0], mono[:, 2])
    torch.testing.assert_close(mono[:, 0], paper[:, 0])  # the same (paper, htk) recipe by default
    slaney = SpectrogramFeatures(FeatureConfig(variant="mono3x", mel_scale="slaney"), 22050, 100)(y)
    three = SpectrogramFeatures(FeatureConfig(mel_scale="slaney"), 22050, 100)(y)
    torch.testing.assert_close(slaney[:, 0], three[:, 0])
    assert (mono[:, 0] - slaney[:, 0]).median() > 1.0


def test_batched_variable_lengths_equal_one_by_one():
    module = SpectrogramFeatures(FeatureConfig(height=64), 8000, 50)
    clips = [fsdd_wave(i, 8000, s) for i, s in enumerate((0.3, 0.5, 0.3, 0.05))]
    batch = featurize_clips(module, clips)
    for clip, row in zip(clips, batch):
        single = module(torch.from_numpy(clip))[0].numpy()
        np.testing.assert_allclose(row, single, atol=1e-5)
    assert np.isfinite(batch).all()  # the 0.05 s clip (400 samples) is zero-padded to n_fft + 1 = 801


def test_feature_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="variant must be one of"):
        FeatureConfig(variant="stereo")
    with pytest.raises(ConfigError, match="exactly 3 values"):
        FeatureConfig(windows_ms=(25.0, 50.0))
    with pytest.raises(ConfigError, match="cannot exceed"):
        FeatureConfig(windows_ms=(25.0, 50.0, 200.0))
    with pytest.raises(ConfigError, match=r"features.mel_scale must be one of \('htk', 'slaney'\).*'HTK'"):
        FeatureConfig(mel_scale="HTK")
