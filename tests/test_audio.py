"""Decoding and offline augmentation: odd formats in, mono float32 at the target rate out."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from layouts import fsdd_wave
from orchestrator.audio import decode_audio
from orchestrator.augment import apply_augment, augment_params
from orchestrator.config import AugmentConfig
from orchestrator.errors import AudioError, ConfigError


def wav_bytes(wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_stereo_48k_becomes_mono_22050():
    wave = fsdd_wave(2, 48000, 1.0)
    out = decode_audio(wav_bytes(np.stack([wave, wave * 0.5], axis=1), 48000), 22050, 2205)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 22050) <= 1
    reference = decode_audio(wav_bytes(wave * 0.75, 48000), 22050, 2205)
    np.testing.assert_allclose(out, reference, atol=1e-3)  # mean of channels, then resample


def test_short_clip_is_zero_padded_to_one_window():
    out = decode_audio(wav_bytes(fsdd_wave(1, 22050, 300 / 22050), 22050), 22050, 2205)
    assert len(out) == 2205 and np.all(out[300:] == 0) and np.any(out[:300] != 0)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"RIFF0000WAVEgarbage" * 20, "unreadable audio"),
    (wav_bytes(np.zeros(0, dtype=np.float32), 8000), "empty audio"),
    (wav_bytes(np.array([0.1, np.nan, 0.2], dtype=np.float32), 8000, "FLOAT"), "NaN"),
], ids=["empty-file", "garbage", "no-samples", "nan"])  # ids by name: float WAV bytes hold a write-time PEAK stamp,
# and pytest-xdist workers must collect identical ids
def test_bad_audio_raises_with_reason(data, reason):
    with pytest.raises(AudioError, match=reason):
        decode_audio(data, 8000, 800)


def test_augment_params_are_seeded_and_in_range():
    cfg = AugmentConfig(copies=3, seed=7)
    params = [augment_params(cfg, f"clip{i}", k) for i in range(50) for k in range(3)]
    assert params == [augment_params(cfg, f"clip{i}", k) for i in range(50) for k in range(3)]
    assert {p.pitch for p in params} <= set(range(-2, 3)) and len({p.pitch for p in params}) == 5
    assert all(0.9 <= p.stretch <= 1.2 for p in params)
    assert augment_params(AugmentConfig(seed=8), "clip0", 0) != augment_params(cfg, "clip0", 0)


def test_apply_augment_stretches_length():
    wave = fsdd_wave(4, 8000, 1.0)
    params = augment_params(AugmentConfig(), "x", 0)
    out = apply_augment(wave, 8000, params)
    assert abs(len(out) - len(wave) / params.stretch) < 0.02 * len(wave)
    with pytest.raises(ConfigError):
        AugmentConfig(stretch_range=(1.2, 0.9))
