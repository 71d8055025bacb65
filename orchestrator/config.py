"""Typed configuration objects with strict construction from dicts (unknown keys are errors).

Configuration enters at the edge (CLI flags, plan files), becomes one of these frozen dataclasses once, and
flows down. Every default is documented where it is defined.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and coercing lists to tuples.

    ``where`` prefixes error messages (e.g. ``"plan.features"``) so the user sees which key is wrong.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert plan/JSON values to the annotated type (nested dataclasses, tuples, numbers)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where=where)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(value, options[0], where) if len(options) == 1 else value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def stable_hash(payload: Any, length: int = 12) -> str:
    """A short content hash of a JSON-serialisable payload (sorted keys), used for version folders."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


FEATURE_VARIANTS = ("paper3ch", "mono3x")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel spectrogram features, the paper's recipe by default.

    Each channel is a mel power spectrogram for one (window, hop) pair, ``log(x + log_eps)``, resized
    bilinearly to ``height x width``. ``n_fft`` is always ``n_fft_ms`` of samples (100 ms: 4410 at 44.1 kHz).
    """

    variant: str = "paper3ch"  # paper3ch: 3 (window, hop) pairs; mono3x: the first pair replicated 3 times
    sample_rate: int | None = None  # None: the dataset's native rate (ESC-50 44.1 kHz, US8K/GTZAN 22.05 kHz)
    windows_ms: tuple[float, ...] = (25.0, 50.0, 100.0)  # paper: 25, 50, 100 ms windows
    hops_ms: tuple[float, ...] = (10.0, 25.0, 50.0)  # paper: 10, 25, 50 ms hops
    n_fft_ms: float = 100.0  # paper: FFT size of 100 ms for every channel
    n_mels: int = 128  # paper: 128 mel bins
    height: int = 128  # resize target (mel axis); the paper keeps 128
    width: int | None = None  # resize target (time axis); None: dataset default (250, GTZAN 1500)
    log_eps: float = 1e-6  # paper: log(x + 1e-6)

    def __post_init__(self) -> None:
        if self.variant not in FEATURE_VARIANTS:
            raise ConfigError(f"features.variant must be one of {FEATURE_VARIANTS}, got {self.variant!r}")
        if len(self.windows_ms) != 3 or len(self.hops_ms) != 3:
            raise ConfigError("features.windows_ms and features.hops_ms need exactly 3 values (one per channel)")
        if any(h <= 0 for h in self.hops_ms) or any(w <= 0 for w in self.windows_ms):
            raise ConfigError("features.windows_ms and features.hops_ms must be positive")
        if max(self.windows_ms) > self.n_fft_ms:
            raise ConfigError("features.windows_ms cannot exceed features.n_fft_ms")
        for name in ("n_mels", "height"):
            if getattr(self, name) < 1:
                raise ConfigError(f"features.{name} must be >= 1")
        if self.width is not None and self.width < 1:
            raise ConfigError("features.width must be >= 1")


@dataclass(frozen=True)
class AugmentConfig:
    """Offline augmentation as in the paper: K seeded copies per clip, pitch shift + time stretch."""

    copies: int = 0  # K augmented copies per clip (0: none). They only ever join training splits.
    pitch_semitones: tuple[int, int] = (-2, 2)  # integer semitone shift drawn uniformly from this range
    stretch_range: tuple[float, float] = (0.9, 1.2)  # time-stretch rate drawn uniformly from this range
    seed: int = 0  # copies are a pure function of (seed, clip_id, copy index)

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise ConfigError("augment.copies must be >= 0")
        lo, hi = self.stretch_range
        if not 0 < lo <= hi:
            raise ConfigError("augment.stretch_range must be 0 < low <= high")
        if self.pitch_semitones[0] > self.pitch_semitones[1]:
            raise ConfigError("augment.pitch_semitones must be (low, high) with low <= high")
