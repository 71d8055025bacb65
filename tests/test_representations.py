"""The representation study of the paper's Section III.B: log spectrogram, MFCC and gammatone features
against independent references (librosa's STFT and MFCC, scipy's gammatone filter), 1-channel datasets, and
the SoundNet-like 8-layer CNN (``soundnet8``) that the study trains on them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from layouts import fsdd_wave
from orchestrator.config import FeatureConfig
from orchestrator.errors import ConfigError
from orchestrator.features import SpectrogramFeatures, dct_matrix, erb_space, gammatone_filterbank
from orchestrator.models import create_model, get_spec

SR = 8000  # FSDD's rate: n_fft 800, first channel 25 ms windows (200 samples), 10 ms hops (80)


def speech() -> np.ndarray:
    """A real FSDD clip (a spoken 7) at 8 kHz, 0.6 s."""
    return fsdd_wave(7, SR, 0.6)


def first_channel(kind: str, y: np.ndarray, **extra) -> tuple[SpectrogramFeatures, np.ndarray]:
    """The module for ``kind`` and its first channel before resizing, ``(bands, frames)``."""
    module = SpectrogramFeatures(FeatureConfig(kind=kind, **extra), SR, 64)
    return module, module.log_bands(torch.from_numpy(y)[None], 0)[0].numpy()


def librosa_power(y: np.ndarray) -> np.ndarray:
    import librosa

    return np.abs(librosa.stft(y, n_fft=800, hop_length=80, win_length=200, window="hann", center=True,
                               pad_mode="reflect")) ** 2


def test_logspec_is_the_log_power_of_every_fft_bin():
    y = speech()
    _, ours = first_channel("logspec", y)
    reference = np.log(librosa_power(y) + 1e-6)
    assert ours.shape == reference.shape == (401, reference.shape[1])
    assert np.abs(ours - reference).max() < 5e-4


def test_mfcc_is_librosas_dct_of_the_log_mel_bands():
    """librosa.feature.mfcc(S=log-mel) is the orthonormal DCT-II of the given log bands: ours applies it to the
    paper's log-mel (natural log; librosa's default input would be dB, 10/ln 10 times larger, top_db-clipped)."""
    import librosa

    y = speech()
    _, log_mel = first_channel("logmel", y)
    _, ours = first_channel("mfcc", y)
    reference = librosa.feature.mfcc(S=log_mel.astype(np.float64), n_mfcc=40, dct_type=2, norm="ortho")
    assert ours.shape == (40, log_mel.shape[1])
    assert np.abs(ours - reference).max() < 2e-3 * np.abs(reference).max()
    import scipy.fft

    assert np.allclose(dct_matrix(13, 128) @ np.eye(128), scipy.fft.dct(np.eye(128), type=2, norm="ortho", axis=0)[:13],
                       atol=1e-6)


@pytest.mark.parametrize("row", [0, 12, 40, 90, 127])
def test_gammatone_rows_are_scipys_gammatone_filter_responses(row):
    """Each row is the power response of the 4th-order gammatone at its ERB-spaced centre, peak 1: the same as
    scipy.signal.gammatone's FIR filter (b = 1.019 ERB, Glasberg & Moore's ERB) through freqz, at the FFT
    bins, to 0.01 dB wherever it is above -40 dB. The FIR is sampled at 8x our rate (its spectrum repeats every
    fs: sampled at ours, it would alias near Nyquist) and 0.5 s long (so truncation does not show)."""
    fs, n_fft = 16000, 1600
    bank = gammatone_filterbank(fs, n_fft, 128)
    centre = erb_space(50.0, fs / 2, 128)[row]
    b, a = scipy.signal.gammatone(centre, "fir", numtaps=4 * fs, fs=8 * fs)
    _, response = scipy.signal.freqz(b, a, worN=np.fft.rfftfreq(n_fft, 1 / fs), fs=8 * fs)
    power = np.abs(response) ** 2 / (np.abs(response) ** 2).max()
    audible = bank[row] > 1e-4
    assert np.abs(10 * np.log10(power[audible]) - 10 * np.log10(bank[row][audible])).max() < 0.01
    assert bank[row].max() == pytest.approx(1.0)


def test_erb_space_follows_glasberg_and_moore():
    centres = erb_space(50.0, 8000.0, 64)
    assert centres[0] == pytest.approx(50.0) and centres[-1] == pytest.approx(8000.0)
    rate = 21.4 * np.log10(4.37e-3 * centres + 1)
    assert np.allclose(np.diff(rate), np.diff(rate)[0])  # equal steps on the ERB-rate scale


@pytest.mark.parametrize("kind", ["logmel", "logspec", "mfcc", "gammatone"])
def test_one_channel_is_the_first_of_three(kind):
    y = torch.from_numpy(speech())
    three = SpectrogramFeatures(FeatureConfig(kind=kind, height=48), SR, 40)(y)
    one = SpectrogramFeatures(FeatureConfig(kind=kind, height=48, num_channels=1), SR, 40)(y)
    assert three.shape == (1, 3, 48, 40) and one.shape == (1, 1, 48, 40)
    torch.testing.assert_close(one[:, 0], three[:, 0])
    assert torch.isfinite(three).all() and not torch.equal(three[:, 0], three[:, 2])


def test_kinds_differ_and_bad_values_are_named():
    y = torch.from_numpy(speech())
    images = {k: SpectrogramFeatures(FeatureConfig(kind=k, height=48), SR, 40)(y) for k in
              ("logmel", "logspec", "mfcc", "gammatone")}
    for a in images:
        for b in images:
            assert a == b or not torch.allclose(images[a], images[b], atol=1e-2)
    for bad, message in (({"kind": "cqt"}, "features.kind must be one of"), ({"num_channels": 2}, "1 or 3"),
                         ({"n_mfcc": 0}, "n_mfcc must be in 1..n_mels"),
                         ({"num_channels": 1, "variant": "mono3x"}, "use num_channels 3")):
        with pytest.raises(ConfigError, match=message):
            FeatureConfig(**bad)


def test_soundnet8_layout_and_random_init_only():
    """SoundNet's channels 16..1024 over 7 conv layers, each halving the image once: a 128 x 250 spectrogram is
    1 band high after conv7; tiny inputs (32 x 32, smoke runs) still reach the head. No ImageNet weights."""
    model = create_model("soundnet8", num_classes=10, init="random", in_chans=1).eval()
    x = torch.randn(2, 1, 128, 250)
    with torch.no_grad():
        blocks = model.block_outputs(x)
        assert [b.shape[1:] for b in blocks] == [(32, 32, 63), (128, 8, 16), (256, 4, 8), (1024, 1, 2)]
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 512, 1024] and convs[0].in_channels == 1
    assert get_spec("soundnet8").feature_dim == 1024 and not get_spec("soundnet8").has_imagenet_weights
    with pytest.raises(ConfigError, match="soundnet8 has no ImageNet weights .* use init 'random'"):
        create_model("soundnet8", num_classes=10, init="pretrained", pretrained=True)


def test_one_channel_input_to_an_imagenet_model_equals_summed_first_conv_weights():
    """A 1-channel dataset on a 3-channel network: the input is repeated 3 times (RepeatChannels), which is
    the network whose first convolution's weights are summed over input channels (timm's in_chans=1)."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=5, init="random", in_chans=1).eval()
    assert list(model.stem.named_children())[0][0] == "repeat_channels"
    x = torch.randn(2, 1, 64, 64)
    summed = torch.nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    summed.weight.data = model.stem.conv1.weight.sum(dim=1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(model.stem.conv1(model.stem.repeat_channels(x)), summed(x))
        assert model(x).shape == (2, 5)
    with pytest.raises(ConfigError, match="in_chans must be 1 or 3"):
        create_model("resnet18", num_classes=5, init="random", in_chans=2)
