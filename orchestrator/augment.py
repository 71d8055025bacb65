"""Offline augmentation: K seeded copies per clip, the paper's pitch shift + time stretch or SoundCLR's
waveform pipeline (``AugmentConfig.kind``; :func:`augmented_copy` picks).

Each copy's parameters are a pure function of (seed, clip id, copy index), so reruns produce the same rows;
the parameters are stored with each row (``aug_copy``; paper: ``aug_pitch`` semitones and ``aug_stretch``
rate; soundclr: ``aug_stretch`` holds the speed factor 1 / scale and ``aug_pitch`` is null, since resampling
shifts pitch by a non-integer 12 * log2(speed) semitones; the pad/crop offset is not stored, it is redrawn
from the same seed).

SoundCLR's pipeline (:func:`soundclr_wave_augment`) is a pure numpy function of the wave and a numpy
``Generator``, so a trainer can also draw a fresh variant per epoch from its own seeded generator.
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


def copy_seed(cfg: AugmentConfig, clip_id: str, copy: int) -> int:
    """The seed of copy ``copy`` of ``clip_id`` (the same key :func:`augment_params` draws from)."""
    return zlib.crc32(f"{cfg.seed}/{clip_id}/{copy}".encode())


# SoundCLR's waveform augmentation, from its utils/transforms.py and dataset_*.py (training transforms:
# ToTensor1D, RandomScale(max_scale=1.25), RandomPadding(out_len), RandomCrop(out_len); out_len is 5 s for
# ESC, 4 s for US8K at 44.1 kHz). Its RandomNoise class is defined but no dataset uses it, so it is not here.
SOUNDCLR_MAX_SCALE = 1.25


@dataclass(frozen=True)
class SoundclrParams:
    """What one call of :func:`soundclr_augment` drew."""

    scale: float  # length factor: the clip is resampled to int(n * scale) samples (> 1: slower and lower)
    offset: int | None  # left padding (clip shorter than out_len) or crop start (longer); None: neither


def _trim_silence(wave: np.ndarray) -> np.ndarray:
    """Drop leading and trailing exact zeros, as SoundCLR's datasets do before the transforms; an all-zero
    clip is returned unchanged (the reference would fail on it)."""
    nonzero = np.flatnonzero(wave)
    return wave[nonzero[0] : nonzero[-1] + 1] if len(nonzero) else wave


def _random_scale(wave: np.ndarray, scale: float) -> np.ndarray:
    """SoundCLR's RandomScale: linear-interpolation resampling to ``int(n * scale)`` samples."""
    n = len(wave)
    ref = np.arange(int(n * scale), dtype=np.float64) / scale
    left = ref.astype(np.int64)
    right = np.minimum(left + 1, n - 1)
    frac = ref - left
    return wave[left] * (1 - frac) + wave[right] * frac


def _pad(wave: np.ndarray, out_len: int, left: int) -> np.ndarray:
    """SoundCLR's RandomPadding at offset ``left``: each side filled with the clip's edge sample on that side."""
    right = out_len - left - len(wave)
    return np.concatenate([np.full(left, wave[0]), wave, np.full(right, wave[-1])])


def _crop(wave: np.ndarray, out_len: int, left: int) -> tuple[np.ndarray, int]:
    """SoundCLR's RandomCrop at offset ``left``: if that window holds under half the clip's standard
    deviation, the first window instead, and if that is still quiet but louder than the first choice, the last."""
    half_std = wave.std(ddof=1) * 0.5  # torch's Tensor.std is the unbiased (n - 1) estimate
    out = wave[left : left + out_len]
    out_std = out.std(ddof=1)
    if out_std < half_std:
        out, left = wave[:out_len], 0
    new_std = out.std(ddof=1)
    if half_std > new_std > out_std:
        out, left = wave[-out_len:], len(wave) - out_len
    return out, left


def _pad_or_crop(wave: np.ndarray, out_len: int, rng: np.random.Generator | None) -> tuple[np.ndarray, int | None]:
    """``wave`` padded (:func:`_pad`) or cropped (:func:`_crop`) to ``out_len`` samples, and the offset used:
    drawn from ``rng`` in [0, |difference|) as the reference's train=True branch, or, without ``rng``,
    ``round(difference / 2)`` (its train=False branch, the centre). None: the clip already had that length."""
    diff = out_len - len(wave)
    if diff == 0:
        return wave, None
    left = int(rng.integers(0, abs(diff))) if rng is not None else int(round(0.5 * abs(diff)))
    return (_pad(wave, out_len, left), left) if diff > 0 else _crop(wave, out_len, left)


def fit_clip(wave: np.ndarray, out_len: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """SoundCLR's fixed-length clip without the speed change (its test transforms): trim leading and trailing
    zeros, then pad with the edge samples or crop to ``out_len``, at a random offset from ``rng`` (what its
    scripts run, since the test datasets keep RandomPadding/RandomCrop's train=True default) or, without
    ``rng``, centred."""
    if out_len < 1:
        raise ValueError(f"fit_clip needs out_len >= 1, got {out_len}")
    out, _ = _pad_or_crop(_trim_silence(np.asarray(wave, dtype=np.float64)), out_len, rng)
    return np.ascontiguousarray(out, dtype=np.float32)


def soundclr_augment(wave: np.ndarray, rng: np.random.Generator, out_len: int | None = None,
                     max_scale: float = SOUNDCLR_MAX_SCALE) -> tuple[np.ndarray, SoundclrParams]:
    """SoundCLR's training waveform pipeline and what it drew: trim leading/trailing zeros, resample by a
    factor ``max_scale ** U(-1, 1)``, then random pad or crop to ``out_len`` samples (default: the clip's
    own length, so a copy matches its original; SoundCLR pads/crops every clip to 5 s, US8K 4 s)."""
    wave = np.asarray(wave, dtype=np.float64)
    target = len(wave) if out_len is None else out_len
    if target < 1 or len(wave) == 0:
        raise ValueError(f"soundclr augment needs a non-empty clip and out_len >= 1, got {len(wave)} and {target}")
    scale = float(np.power(max_scale, rng.uniform(-1, 1)))
    out = _random_scale(_trim_silence(wave), scale)
    if len(out) == 0:  # a 1-sample clip scaled below 1
        out = wave[:1]
    out, offset = _pad_or_crop(out, target, rng)
    return np.ascontiguousarray(out, dtype=np.float32), SoundclrParams(scale, offset)


def soundclr_wave_augment(wave: np.ndarray, rate: int, rng: np.random.Generator,
                          out_seconds: float | None = None) -> np.ndarray:
    """One SoundCLR training variant of mono ``wave`` at ``rate`` Hz, drawn from ``rng`` (same generator
    state, same output). ``out_seconds``: fixed output length (SoundCLR: 5 for ESC, 4 for US8K); None keeps
    the clip's length."""
    out_len = None if out_seconds is None else int(round(out_seconds * rate))
    return soundclr_augment(wave, rng, out_len)[0]


def augmented_copy(cfg: AugmentConfig, wave: np.ndarray, rate: int, clip_id: str, copy: int,
                   out_len: int | None = None) -> tuple[np.ndarray, dict[str, int | float | None]]:
    """Copy ``copy`` of ``clip_id`` under ``cfg.kind`` and the row fields that record it
    (``aug_pitch``, ``aug_stretch``; see the module docstring). ``out_len``: the copy's length in samples
    (SoundCLR pads/crops to 5 s, US8K 4 s; a paper-kind copy is fitted centred); None: as the kind makes it."""
    if cfg.kind == "soundclr":
        out, params = soundclr_augment(wave, np.random.default_rng(copy_seed(cfg, clip_id, copy)), out_len)
        return out, {"aug_pitch": None, "aug_stretch": 1.0 / params.scale}
    params = augment_params(cfg, clip_id, copy)
    out = apply_augment(wave, rate, params)
    if out_len is not None and len(out) != out_len:
        out = fit_clip(out, out_len)
    return out, {"aug_pitch": params.pitch, "aug_stretch": params.stretch}
