"""Decoding: audio bytes -> mono float32 at a target rate, with a clear reason when a file is unusable.

Content checks (each raises :class:`AudioError` with the reason, so the file is rejected and the run goes
on): empty or undecodable data, 0 samples, NaN or infinite samples, digital silence (every sample of every
channel below :data:`SILENCE_PEAK` in magnitude), and clips longer than ``max_seconds`` (checked from the
header before the samples are read, so a huge file is never loaded). Documented handling of odd but valid
files: any channel count is averaged to mono (a stereo 96 kHz file becomes mono at the target rate), any
sample rate is resampled, and a clip shorter than one FFT window (down to a single sample) is zero-padded.
"""

from __future__ import annotations

import io

import numpy as np

from orchestrator.errors import AudioError

DEFAULT_MAX_SECONDS = 600.0  # clips longer than 10 minutes are rejected unless the caller raises the limit
SILENCE_PEAK = 1e-6  # -120 dBFS: below the least significant bit of 16- and 24-bit audio


def decode_audio(data: bytes, target_rate: int, min_samples: int,
                 max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Decode ``data`` (any soundfile format) to mono float32 at ``target_rate``, zero-padded to ``min_samples``.

    Channels are averaged to mono; other rates are resampled (soxr, as librosa's default); clips shorter than
    one FFT window are zero-padded so every spectrogram channel has a frame. Raises ``AudioError`` with the
    reason for empty, corrupt, NaN/inf, silent or too long files (see the module docstring).
    """
    if not data:
        raise AudioError("empty file (0 bytes)")
    samples, rate = _read_samples(data, max_seconds)
    if samples.shape[0] == 0:
        raise AudioError("empty audio (0 samples)")
    if not np.isfinite(samples).all():
        raise AudioError("audio contains NaN or infinite samples")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AudioError(f"silent audio: every sample is below {SILENCE_PEAK:g} in magnitude (-120 dBFS)")
    wave = samples.mean(axis=1)
    if rate != target_rate:
        wave = resample(wave, rate, target_rate)
    if len(wave) < min_samples:
        wave = np.pad(wave, (0, min_samples - len(wave)))
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read_samples(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """(frames x channels float32, rate); the length is checked from the header before anything is read."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as audio:
            rate, frames = int(audio.samplerate), int(audio.frames)
            _check_length(frames, rate, max_seconds)
            samples = audio.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError subclasses
        raise AudioError(f"unreadable audio: {str(exc).splitlines()[0][:200]}") from None
    _check_length(samples.shape[0], rate, max_seconds)
    return samples, rate


def _check_length(frames: int, rate: int, max_seconds: float) -> None:
    if rate <= 0:
        raise AudioError(f"unreadable audio: sample rate {rate} Hz")
    if frames > max_seconds * rate:
        raise AudioError(f"too long: {frames / rate:.1f} s is over the maximum duration of {max_seconds:g} s "
                         "(raise --max-duration to keep it)")


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling (soxr 'HQ', what ``librosa.load(sr=...)`` uses by default)."""
    import soxr

    return soxr.resample(wave, rate, target_rate, quality="HQ").astype(np.float32, copy=False)
