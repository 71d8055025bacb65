"""Offline augmentation as in the paper: K seeded copies per clip with pitch shift and time stretch.

Each copy's parameters are a pure function of (seed, clip id, copy index), so reruns produce the same rows;
the parameters are stored with each row (``aug_pitch`` semitones, ``aug_stretch`` rate, ``aug_copy``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from orchestrator.config import AugmentConfig


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of one augmented copy."""

    copy: int
    pitch: int  # semitones
    stretch: float  # time-stretch rate (> 1 is faster/shorter)


def augment_params(cfg: AugmentConfig, clip_id: str, copy: int) -> AugmentParams:
    """The parameters of copy ``copy`` of ``clip_id``: seeded, independent of processing order."""
    key = zlib.crc32(f"{cfg.seed}/{clip_id}/{copy}".encode())
    rng = np.random.default_rng(key)
    pitch = int(rng.integers(cfg.pitch_semitones[0], cfg.pitch_semitones[1] + 1))
    stretch = float(round(rng.uniform(*cfg.stretch_range), 4))
    return AugmentParams(copy, pitch, stretch)


def apply_augment(wave: np.ndarray, rate: int, params: AugmentParams) -> np.ndarray:
    """Pitch-shift then time-stretch ``wave`` (librosa's phase-vocoder implementations)."""
    import librosa

    out = wave
    if params.pitch != 0:
        out = librosa.effects.pitch_shift(out, sr=rate, n_steps=params.pitch)
    if params.stretch != 1.0:
        out = librosa.effects.time_stretch(out, rate=params.stretch)
    return np.ascontiguousarray(out, dtype=np.float32)
