"""Decoding: audio bytes -> mono float32 at a target rate, with a clear reason when a file is unusable."""

from __future__ import annotations

import io

import numpy as np

from orchestrator.errors import AudioError


def decode_audio(data: bytes, target_rate: int, min_samples: int) -> np.ndarray:
    """Decode ``data`` (any soundfile format) to mono float32 at ``target_rate``, zero-padded to ``min_samples``.

    Stereo is averaged to mono; other rates are resampled (soxr, as librosa's default); clips shorter than
    one FFT window are zero-padded so every spectrogram channel has a frame. Raises ``AudioError`` with the
    reason for empty, corrupt or silent-NaN files.
    """
    import soundfile as sf

    if not data:
        raise AudioError("empty file (0 bytes)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"unreadable audio: {str(exc).splitlines()[0][:200]}") from None
    if samples.shape[0] == 0:
        raise AudioError("empty audio (0 samples)")
    wave = samples.mean(axis=1)
    if not np.isfinite(wave).all():
        raise AudioError("audio contains NaN or infinite samples")
    if rate != target_rate:
        wave = resample(wave, rate, target_rate)
    if len(wave) < min_samples:
        wave = np.pad(wave, (0, min_samples - len(wave)))
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling (soxr 'HQ', what ``librosa.load(sr=...)`` uses by default)."""
    import soxr

    return soxr.resample(wave, rate, target_rate, quality="HQ").astype(np.float32, copy=False)
