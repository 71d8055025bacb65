"""Typed configuration objects with strict construction from dicts (unknown keys are errors).

Configuration enters at the edge (CLI flags, plan files), becomes one of these frozen dataclasses once, and
flows down. Every default is documented where it is defined.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator.errors import ConfigError, ConfigValueError
from orchestrator.study import AUGMENT_HASH_DEFAULTS, SPLIT_MODES, without_defaults

T = TypeVar("T")


# Every config dataclass carries this pydantic configuration (a plain dict: this module never imports pydantic,
# so a trainer image without it can still import the configs). Strict: no bool for a number, no number for
# a string; unknown keys are errors. Values are validated in pydantic's JSON mode, where lists fill tuples.
STRICT: dict[str, Any] = {"extra": "forbid", "strict": True}


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "") -> T:
    """Build config dataclass ``cls`` from plan/JSON data, validated by pydantic (strict types, tuple lengths,
    unions, unknown keys) and by the classes' own checks (``__post_init__``: ranges, allowed names); every
    problem becomes one line ``where.key.path: what is wrong (got value)``, all of them in one ConfigError."""
    built, problems = _validate(cls, data, where)
    if problems:
        raise ConfigError("; ".join(problems))
    return built


def config_problems(cls: type, data: dict[str, Any] | None, where: str) -> list[str]:
    """Every problem of ``data`` as ``cls``, worded as :func:`from_dict` words them (empty: it is valid)."""
    return _validate(cls, data, where)[1]


_ROUNDS = 8  # a section is dropped per round; plans nest about four deep


def _validate(cls: type[T], data: dict[str, Any] | None, where: str) -> tuple[T | None, list[str]]:
    """``(instance, [])`` or ``(None, every problem)``. pydantic runs a class's own checks only once its fields
    are valid, so after each failing round the fields at fault are dropped (they fall back to their defaults)
    and the rest is validated again: the enclosing classes' own checks then report too. A class whose own
    field was dropped for its type is not checked again (it would judge the default, not the user's value),
    and keys missing in a later round are only the dropped ones."""
    from pydantic import ValidationError  # imported where configuration enters, not with the config classes

    data = json.loads(json.dumps(data or {}, default=str))
    problems: list[str] = []
    retyped: set[tuple] = set()  # classes (locations) one of whose fields was dropped for a wrong type
    for round_ in range(_ROUNDS):
        try:
            built = _adapter(cls).validate_json(json.dumps(data))
        except ValidationError as exc:
            errors = exc.errors()
            shown = [e for e in errors if round_ == 0 or (
                e["type"] != "missing" and not (e["type"] == "value_error" and tuple(e["loc"]) in retyped))]
            problems += [p for e in shown for p in _problem(cls, e, where) if p not in problems]
            dropped = _drop(cls, data, [e["loc"] for e in errors])
            retyped |= {tuple(path[:-1]) for path, e in zip(dropped, errors)
                        if path and e["type"] not in ("value_error", "unexpected_keyword_argument")}
            if not any(dropped):
                break
            continue
        return (None if problems else built), problems
    return None, problems


def _drop(cls: type, data: dict[str, Any], locs: list[tuple]) -> list[list[str]]:
    """Remove from ``data`` the config field at fault for each error location (see :func:`_field_path`); the
    path dropped for each location ([] when none)."""
    dropped = []
    for loc in locs:
        path = _field_path(cls, loc)
        section = data
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, dict) else None
        if path and isinstance(section, dict) and path[-1] in section:
            del section[path[-1]]
            dropped.append(path)
        else:
            dropped.append([])
    return dropped


def _field_path(cls: type, loc: tuple) -> list[str]:
    """The leading part of ``loc`` that names a field of a config dataclass: through optionals and mappings of
    config classes (``datasets.fsdd.preprocess``), up to a list index or a scalar. Never a mapping's entry
    itself: an entry dropped would be a problem of its own (an empty ``datasets``), so the field goes too."""
    path: list[str] = []
    entry_of: type | None = None  # the config class of a mapping's entries, when the path is at such a mapping
    at_entry = False
    for part in loc:
        if entry_of is not None and not isinstance(part, int):
            path.append(part)
            cls, entry_of, at_entry = entry_of, None, True
            continue
        if isinstance(part, int) or cls is None or not dataclasses.is_dataclass(cls):
            break
        path.append(part)
        hint = typing.get_type_hints(cls).get(part)
        cls, at_entry = _dataclass_in(hint), False
        if typing.get_origin(hint) is dict:
            entry_of = _dataclass_in(typing.get_args(hint)[1])
    return path[:-1] if at_entry else path


def _dataclass_in(hint: Any) -> type | None:
    """The config dataclass ``hint`` is, or is an optional of; None for anything else (dicts, tuples, scalars)."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and dataclasses.is_dataclass(args[0]) else None


@functools.lru_cache(maxsize=None)
def _adapter(cls: type) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def _problem(cls: type, error: dict[str, Any], where: str) -> list[str]:
    """One pydantic error as ``path: message`` lines; an unknown key lists the valid keys of its section, a
    class's own check (ConfigValueError) gives each of its problems, named where the section really is."""
    loc = error["loc"]
    path = _path(loc, where) or cls.__name__
    if error["type"] == "value_error":
        exc = error["ctx"]["error"]
        return [_placed(p, getattr(exc, "section", ""), _path(loc, where))
                for p in getattr(exc, "problems", [str(exc)])]
    if error["type"] == "unexpected_keyword_argument":
        section = _section(cls, [str(part) for part in loc[:-1] if not isinstance(part, int)])
        valid = f"; valid keys: {', '.join(sorted(f.name for f in dataclasses.fields(section)))}" if section else ""
        return [f"unknown key(s) {path}{valid}"]
    if error["type"] == "missing":
        return [f"{_path(loc[:-1], where)}: too few values ({loc[-1]} given)" if isinstance(loc[-1], int)
                else f"missing key {path}"]
    got = f" (got {error['input']!r})" if not isinstance(error.get("input"), dict) else ""
    return [f"{path}: {error['msg'][0].lower()}{error['msg'][1:]}{got}"]


def _placed(problem: str, section: str, where: str) -> str:
    """``problem`` of a section usually at ``section`` (``optim.lr must be > 0``), named at ``where`` instead
    (``plan.random_optim.lr must be > 0``); a problem of a section without a name gets ``where: `` before it."""
    if not where or where == section:
        return problem
    if not section:
        return f"{where}: {problem}"
    # every mention of the section, not only the first: "search.fold 3 and search.per_fold" stays consistent
    return re.sub(rf"(?<![\w.]){re.escape(section)}(?=[. ])", where, problem)


def _path(loc: tuple, where: str) -> str:
    """``("datasets", "fsdd", "folds", 1)`` -> ``plan.datasets.fsdd.folds[1]`` (with ``where`` = "plan")."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return f"{where}{path}" if where else path.lstrip(".")


def _section(cls: type, keys: list[str]) -> type | None:
    """The config dataclass found at ``keys`` below ``cls`` (through optionals, dicts and tuples), if any."""
    for key in keys:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        hint = hints.get(key)
        while hint is not None and not dataclasses.is_dataclass(hint):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[-1] if args else None
        if hint is None:
            return None
        cls = hint
    return cls if dataclasses.is_dataclass(cls) else None


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def stable_hash(payload: Any, length: int = 12) -> str:
    """A short content hash of a JSON-serialisable payload (sorted keys), used for version folders."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


FEATURE_VARIANTS = ("paper3ch", "mono3x")
SOUNDCLR_N_FFT, SOUNDCLR_HOP = 1024, 512  # SoundCLR's librosa melspectrogram(n_fft=1024, hop_length=512)
# htk: the paper's torchaudio MelSpectrogram defaults (HTK mel scale, unnormalised filters, reflect-padded
# frames). slaney: this project's first recipe (librosa defaults: Slaney scale, area-normalised filters,
# zero-padded frames), kept so the dataset versions built with it can be rebuilt and reused.
MEL_SCALES = ("htk", "slaney")
# What each channel holds (the paper's Section III.B compared these on a SoundNet-like CNN and chose log-mel):
# logmel (the paper's), logspec (log power of every FFT bin), mfcc (the DCT-II of the log-mel bands, first
# n_mfcc), gammatone (log power through a 4th-order gammatone filterbank on the ERB scale). orchestrator/features.py.
FEATURE_KINDS = ("logmel", "logspec", "mfcc", "gammatone")
# How the mel triangles are scaled on the htk scale: None (the paper's: torchaudio's unnormalised triangles, each
# peaking at 1, so a wide high band sums more FFT bins than a narrow low one) or "slaney" (each triangle's area
# normalised, librosa's and torchaudio's norm="slaney"). mel_scale slaney always area-normalises.
MEL_NORMS = (None, "slaney")
NUM_CHANNELS = (1, 3)  # 3: one channel per (window, hop) pair (the paper); 1: the first pair only
# How a channel is computed. paper: the fields below (mel_scale, windows_ms, ...), resized to height x width.
# soundclr: SoundCLR's dataset_*.py, one librosa mel spectrogram (n_fft 1024, hop 512 samples, Slaney mel,
# reflect-padded frames, power_to_db(ref=max), top_db 80) copied to every channel and not resized (128 x 431
# for a 5-s clip at 44.1 kHz); windows_ms, hops_ms, n_fft_ms, log_eps, mel_scale and variant do not apply.
FEATURE_RECIPES = ("paper", "soundclr")
# Where a clip sits in its clip_seconds (SoundCLR trims leading/trailing zeros, then pads with the edge
# samples or crops): centre (its train=False branch) or random (what its scripts run on test clips too,
# RandomPadding/RandomCrop with train=True), drawn once per clip from its id (the same in every version).
CLIP_OFFSETS = ("centre", "random")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel spectrogram features, the paper's recipe by default.

    Each channel is a mel power spectrogram for one (window, hop) pair, ``log(x + log_eps)``, resized
    bilinearly to ``height x width``. ``n_fft`` is always ``n_fft_ms`` of samples (100 ms: 4410 at 44.1 kHz).
    ``mel_scale`` picks the filterbank and frame padding (see ``MEL_SCALES`` and ``orchestrator.features``).
    ``kind`` swaps log-mel for another representation of the same frames (``FEATURE_KINDS``); ``num_channels`` 1
    keeps only the first (window, hop) pair, stored as one channel. ``recipe`` soundclr computes SoundCLR's
    one channel instead (``FEATURE_RECIPES``); ``clip_seconds`` fixes every clip's length first (any recipe).
    """

    __pydantic_config__ = STRICT

    variant: str = "paper3ch"  # paper3ch: 3 (window, hop) pairs; mono3x: the first pair replicated 3 times
    sample_rate: int | None = None  # None: the dataset's native rate (ESC-50 44.1 kHz, US8K/GTZAN 22.05 kHz)
    windows_ms: tuple[float, ...] = (25.0, 50.0, 100.0)  # paper: 25, 50, 100 ms windows
    hops_ms: tuple[float, ...] = (10.0, 25.0, 50.0)  # paper: 10, 25, 50 ms hops
    n_fft_ms: float = 100.0  # paper: FFT size of 100 ms for every channel
    n_mels: int = 128  # paper: 128 mel bins
    height: int = 128  # resize target (mel axis); the paper keeps 128
    width: int | None = None  # resize target (time axis); None: dataset default (250, GTZAN 1500)
    log_eps: float = 1e-6  # paper: log(x + 1e-6)
    mel_scale: str = "htk"  # paper: htk (torchaudio defaults); slaney: the earlier librosa-default recipe
    kind: str = "logmel"  # paper: logmel; logspec | mfcc | gammatone for the representation study
    num_channels: int = 3  # paper: 3 (one per window/hop pair); 1: the first pair only
    n_mfcc: int = 40  # MFCC coefficients kept (kind mfcc); the paper does not give its value
    recipe: str = "paper"  # paper | soundclr (FEATURE_RECIPES)
    # None: each clip keeps its own length (the paper; the image is resized to width). A number: every clip is
    # trimmed of leading/trailing zeros and padded/cropped to this many seconds (SoundCLR: ESC 5, US8K 4)
    clip_seconds: float | None = None
    clip_offset: str = "centre"  # centre | random: where a clip sits in clip_seconds (CLIP_OFFSETS)
    mel_norm: str | None = None  # paper: None (unnormalised triangles); slaney: area-normalised (MEL_NORMS)

    def __post_init__(self) -> None:
        problems: list[str] = self._mel_norm_problems()
        if self.kind not in FEATURE_KINDS:
            problems.append(f"features.kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.num_channels not in NUM_CHANNELS:
            problems.append(f"features.num_channels must be 1 or 3, got {self.num_channels!r}")
        if self.num_channels == 1 and self.variant == "mono3x":
            problems.append("features.variant mono3x replicates one channel 3 times: use num_channels 3 with it")
        if not 1 <= self.n_mfcc <= self.n_mels:
            problems.append(f"features.n_mfcc must be in 1..n_mels ({self.n_mels}), got {self.n_mfcc}")
        if self.variant not in FEATURE_VARIANTS:
            problems.append(f"features.variant must be one of {FEATURE_VARIANTS}, got {self.variant!r}")
        if self.mel_scale not in MEL_SCALES:
            problems.append(f"features.mel_scale must be one of {MEL_SCALES} (htk: the paper's torchaudio "
                            f"defaults; slaney: the earlier librosa recipe), got {self.mel_scale!r}")
        if len(self.windows_ms) != 3 or len(self.hops_ms) != 3:
            problems.append("features.windows_ms and features.hops_ms need exactly 3 values (one per channel)")
        if any(h <= 0 for h in self.hops_ms) or any(w <= 0 for w in self.windows_ms):
            problems.append("features.windows_ms and features.hops_ms must be positive")
        if self.windows_ms and max(self.windows_ms) > self.n_fft_ms:
            problems.append("features.windows_ms cannot exceed features.n_fft_ms")
        for name in ("n_mels", "height"):
            if getattr(self, name) < 1:
                problems.append(f"features.{name} must be >= 1")
        if self.width is not None and self.width < 1:
            problems.append("features.width must be >= 1")
        problems += self._recipe_problems()
        raise_problems(problems, "features")

    def _recipe_problems(self) -> list[str]:
        problems = []
        if self.recipe not in FEATURE_RECIPES:
            problems.append(f"features.recipe must be one of {FEATURE_RECIPES}, got {self.recipe!r}")
        if self.recipe == "soundclr" and (self.kind != "logmel" or self.variant != "paper3ch"):
            problems.append("features.recipe soundclr is one log-mel channel copied to every channel: leave "
                            "features.kind (logmel) and features.variant (paper3ch) at their defaults")
        if self.clip_seconds is not None and not self.clip_seconds > 0:
            problems.append(f"features.clip_seconds must be > 0 (or null: each clip's own length), "
                            f"got {self.clip_seconds}")
        if self.clip_offset not in CLIP_OFFSETS:
            problems.append(f"features.clip_offset must be one of {CLIP_OFFSETS}, got {self.clip_offset!r}")
        if self.clip_offset != "centre" and self.clip_seconds is None:
            problems.append("features.clip_offset only applies with features.clip_seconds")
        return problems

    def image_width(self, sample_rate: int, dataset_width: int) -> int:
        """Width of the stored images: ``width`` if given; else, for the ``soundclr`` recipe with a fixed
        ``clip_seconds``, its frame count unresized (1 + samples // hop 512: 431 for 5 s at 44.1 kHz); else
        the dataset's default width."""
        if self.width is not None:
            return self.width
        if self.recipe == "soundclr" and self.clip_seconds is not None:
            return 1 + int(round(self.clip_seconds * sample_rate)) // SOUNDCLR_HOP
        return dataset_width

    def _mel_norm_problems(self) -> list[str]:
        """``mel_norm`` is a choice of the htk scale's triangles (mel_scale slaney has its own, area-normalised)."""
        if self.mel_norm not in MEL_NORMS:
            return [f"features.mel_norm must be null (the paper's unnormalised triangles) or 'slaney' "
                    f"(area-normalised), got {self.mel_norm!r}"]
        if self.mel_norm is not None and self.kind not in ("logmel", "mfcc"):
            return [f"features.mel_norm applies to mel bands (kind logmel or mfcc), not kind {self.kind!r}"]
        if self.mel_norm is not None and self.mel_scale != "htk":
            return ["features.mel_norm applies to mel_scale htk; mel_scale slaney already area-normalises its "
                    "triangles: remove mel_norm"]
        return []


AUGMENT_KINDS = ("paper", "soundclr")


@dataclass(frozen=True)
class AugmentConfig:
    """Offline augmentation: K seeded copies per clip.

    ``kind`` paper (default): the paper's pitch shift + time stretch. ``kind`` soundclr: SoundCLR's waveform
    pipeline (random speed scaling up to 1.25x either way, then random pad/crop back to the clip's length;
    :func:`orchestrator.augment.soundclr_wave_augment`); ``pitch_semitones`` / ``stretch_range`` do not apply.
    """

    __pydantic_config__ = STRICT

    copies: int = 0  # K augmented copies per clip (0: none). They only ever join training splits.
    pitch_semitones: tuple[int, int] = (-2, 2)  # integer semitone shift drawn uniformly from this range
    stretch_range: tuple[float, float] = (0.9, 1.2)  # time-stretch rate drawn uniformly from this range
    seed: int = 0  # copies are a pure function of (seed, clip_id, copy index)
    kind: str = "paper"  # paper | soundclr (class docstring)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.copies < 0:
            problems.append("augment.copies must be >= 0")
        lo, hi = self.stretch_range
        if not 0 < lo <= hi:
            problems.append("augment.stretch_range must be 0 < low <= high")
        if self.pitch_semitones[0] > self.pitch_semitones[1]:
            problems.append("augment.pitch_semitones must be (low, high) with low <= high")
        if self.kind not in AUGMENT_KINDS:
            problems.append(f"augment.kind must be one of {AUGMENT_KINDS}, got {self.kind!r}")
        raise_problems(problems, "augment")


    def identity(self) -> dict[str, Any]:
        """What the dataset version hashes: every field, except fields added later while they hold the value
        that reproduces the old output (``kind: paper``), so versions written before they existed keep their
        names and are reused."""
        return without_defaults(to_dict(self), AUGMENT_HASH_DEFAULTS)


SCHEDULE_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's fine-tuning recipe: 70 epochs, learning rate x0.1 every 30 epochs.
    "paper": {"epochs": 70, "step_size": 30, "milestones": ()},
    # The paper's schedule for training from scratch: 450 epochs, x0.1 at epochs 300 and 350.
    "paper-random": {"epochs": 450, "step_size": 0, "milestones": (300, 350)},
    # SoundCLR's recipe for ESC-10/ESC-50 (config.py, train_*.py): AdamW(lr 5e-4, weight_decay 1e-3), batch
    # 128, 800 epochs, WarmUpExponentialLR(cold_epochs=0, warm_epochs=10, gamma=0.98). Its US8K lr is 1e-4
    # (override lr). Its early stopping (patience 300 on test-fold accuracy) is not reproduced.
    "soundclr": {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 1e-3, "batch_size": 128, "epochs": 800,
                 "warmup_epochs": 10, "schedule": "exponential", "gamma": 0.98, "milestones": ()},
    # No "modern" preset: AdamW wd 0.05 + 1 warm-up epoch + cosine + mixup 0.3 + label smoothing 0.1 (with or
    # without masks) lost to the paper's recipe on the bundled data (README "A modern recipe"), so it is not
    # offered as a named recipe; its pieces are fields below, spelled out in plans/recipes-modern.yaml.
}

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("step", "exponential", "cosine")


@dataclass(frozen=True)
class OptimConfig:
    """Adam with step decay, the paper's defaults; AdamW with warm-up and exponential decay for SoundCLR;
    cosine decay, mixup and label smoothing for a current recipe (plans/recipes-modern.yaml).

    Learning rate of 0-based epoch e: during warm-up (e < warmup_epochs) ``lr * (0.1 + 0.9 * (e + 1) / W)``,
    SoundCLR's linear ramp from 0.19 lr to lr; after it, the schedule counts epochs from the end of warm-up:
    ``step``: x gamma every ``step_size`` epochs (or at ``milestones``); ``exponential``: x gamma every epoch;
    ``cosine``: ``0.5 * (1 + cos(pi * a / T))`` at epoch a of the T = epochs - W epochs after warm-up, from
    lr down towards 0 (gamma and step_size unused).

    ``mixup_alpha`` > 0 mixes every training batch with a shuffled copy of itself, weight ~ Beta(alpha, alpha)
    (Zhang et al., 2018), and trains on the same mix of the two labels' losses; ``label_smoothing`` is
    torch's cross-entropy smoothing. Both are cross-entropy only (TrialConfig rejects them with loss hybrid).
    """

    __pydantic_config__ = STRICT

    lr: float = 1e-4  # paper: Adam, learning rate 1e-4
    weight_decay: float = 1e-3  # paper: weight decay 1e-3 (adam: L2 in the gradient; adamw: decoupled)
    batch_size: int = 32  # paper: batch size 32 (per trial; split across Ray Train workers)
    epochs: int = 70  # paper: 70 epochs for pretrained models
    step_size: int = 30  # StepLR period in epochs (paper: 30); ignored when milestones are given
    milestones: tuple[int, ...] = ()  # MultiStepLR epochs instead of StepLR (paper-random: 300, 350)
    gamma: float = 0.1  # paper: x0.1 at each step
    optimizer: str = "adam"  # adam (paper) | adamw (SoundCLR)
    warmup_epochs: int = 0  # linear warm-up epochs before the schedule (paper: 0, SoundCLR: 10)
    schedule: str = "step"  # step (paper: StepLR / MultiStepLR) | exponential (SoundCLR) | cosine (half a cosine to ~0)
    mixup_alpha: float = 0.0  # 0: no mixup (paper); > 0: Beta(alpha, alpha) mixup per batch
    label_smoothing: float = 0.0  # cross-entropy label smoothing (paper: 0; DeiT/ConvNeXt: 0.1)

    def __post_init__(self) -> None:
        problems: list[str] = []
        for key, ok, rule in (("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                              ("batch_size", self.batch_size >= 1, ">= 1"), ("epochs", self.epochs >= 1, ">= 1"),
                              ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"), ("gamma", self.gamma > 0, "> 0"),
                              ("mixup_alpha", self.mixup_alpha >= 0, ">= 0 (0: off)"),
                              ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                              ("step_size", self.step_size >= 0, ">= 0")):
            if not ok:
                problems.append(f"optim.{key} must be {rule}, got {getattr(self, key)!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optim.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"optim.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule != "step" and self.milestones:
            problems.append("optim.milestones only apply to schedule 'step'; remove them or use schedule: step")
        raise_problems(problems, "optim")


    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "OptimConfig":
        """A named recipe (``paper``, ``paper-random``, ``soundclr``) with optional overrides."""
        if name not in SCHEDULE_PRESETS:
            raise ConfigError(f"unknown schedule preset {name!r}; valid: {', '.join(SCHEDULE_PRESETS)}")
        return from_dict(cls, {**SCHEDULE_PRESETS[name], **overrides}, where="optim")


MASK_FILLS = ("max", "zero", "mean")  # what SpecMask fills masked cells with (orchestrator/spec_augment.py)


@dataclass(frozen=True)
class MaskConfig:
    """SoundCLR's SpecAugment-style masks, applied to training batches only (orchestrator/spec_augment.py)."""

    __pydantic_config__ = STRICT

    freq_masks: int = 2  # SoundCLR: 2 frequency masks
    max_freq: int = 32  # of at most 32 mel bins each
    time_masks: int = 1  # SoundCLR: 1 time mask
    max_time: int = 32  # of at most 32 frames
    # max: the sample's per-channel maximum, what SoundCLR's 0 is in its ref=max dB spectrogram (default);
    # zero: a literal 0; mean: the sample mean (this project before; see spec_augment's docstring)
    fill: str = "max"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.fill not in MASK_FILLS:
            problems.append(f"mask.fill must be one of {MASK_FILLS}, got {self.fill!r}")
        raise_problems(problems, "mask")


LOSSES = ("ce", "hybrid")
PROJECTIONS = ("linear", "mlp")
POSITIVELESS = ("zero", "exclude")

# SoundCLR's config.py sets 0.05 and train_hybridLoss.py passes it: HybridLoss(alpha=config.alpha,
# temperature=config.temperature), which hands it to SupConLoss. Their classes' own default, 0.07 (from
# HobbitLong/SupContrast), is never used by their training scripts.
DEFAULT_TEMPERATURE = 0.05
DEFAULT_ALPHA = 0.5  # SoundCLR hybrid: weight of the contrastive term; 1 - alpha weighs cross-entropy
# How anchors without a positive (alone in their class in the batch) enter the batch mean. SoundCLR's
# loss_fn/contrastive_loss.py divides by (mask.sum(1) + 1e-30), so such an anchor's term is 0, and then
# averages over every anchor: "zero". "exclude" averages over anchors that have a positive only.
# We believe "exclude" is the better loss: it is Khosla et al.'s L_out over the anchors it is defined for,
# while "zero" shrinks the contrastive term by the share of anchors that have a positive, a share that
# varies from batch to batch with the class mix, so the effective weight alpha of the hybrid drifts with it
# (mildly: about 9 % of anchors lack a positive in a random ESC-50 batch of 128). "zero" is the default
# because it is what SoundCLR computed.
DEFAULT_POSITIVELESS = "zero"
DEFAULT_PROJECTION = "linear"  # SoundCLR's models/model_projection.py: one Linear layer
DEFAULT_PROJECTION_DIM = 64  # SoundCLR: size of the L2-normalised projection the contrastive loss sees
# Why "supcon" is not a loss: trained alone, SupCon moves only the backbone and projection, so the
# classifier head stays at its random init and the trial reports chance accuracy. SoundCLR trains it in two
# stages (train_contrastiveLoss.py, then train_classifier.py on frozen features), which a trial does not do.
SUPCON_REMOVED = ("loss 'supcon' is not available: trained alone it leaves the classifier head untrained "
                  "(chance accuracy) and SoundCLR's second stage (a linear classifier on the frozen features) "
                  "is not implemented; use 'hybrid' (alpha < 1) or 'ce'")


@dataclass(frozen=True)
class LossConfig:
    """Cross-entropy, or SoundCLR's hybrid ``alpha * SupCon + (1 - alpha) * CE``.

    ``projection`` and ``positiveless`` only apply to ``hybrid``; left None they resolve to SoundCLR's choices
    (``linear``, ``zero``) there and stay None for ``ce``, so cross-entropy trials hash as before.
    """

    __pydantic_config__ = STRICT

    name: str = "ce"  # ce | hybrid
    temperature: float = DEFAULT_TEMPERATURE  # SoundCLR: SupCon temperature 0.05 (see DEFAULT_TEMPERATURE)
    alpha: float = DEFAULT_ALPHA  # SoundCLR: hybrid = alpha * SupCon + (1 - alpha) * CE
    projection_dim: int = DEFAULT_PROJECTION_DIM  # SoundCLR: 64-d projection head for the contrastive term
    projection: str | None = None  # linear (SoundCLR: one Linear) | mlp (Linear-ReLU-Linear); None: linear
    positiveless: str | None = None  # zero (SoundCLR) | exclude: anchors without a positive; None: zero
    # True (SoundCLR's train_*.py: F.normalize of the pooled backbone output): the classifier head and the
    # projection see unit-norm embeddings, with either loss. False (the paper): the pooled features as they are.
    l2_embedding: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.name == "supcon":
            problems.append(SUPCON_REMOVED)
        elif self.name not in LOSSES:
            problems.append(f"loss.name must be one of {LOSSES}, got {self.name!r}")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            problems.append("loss.alpha must be in [0, 1] and loss.temperature > 0")
        if self.name == "hybrid" and self.alpha == 1:
            problems.append("loss.alpha 1 gives cross-entropy weight 0: the classifier head is never trained "
                            "(chance accuracy); use alpha < 1 (SoundCLR: 0.5)")
        for key, valid, default in (("projection", PROJECTIONS, DEFAULT_PROJECTION),
                                    ("positiveless", POSITIVELESS, DEFAULT_POSITIVELESS)):
            value = getattr(self, key)
            if value is not None and value not in valid:
                problems.append(f"loss.{key} must be one of {valid}, got {value!r}")
            if value is None and self.name != "ce":
                object.__setattr__(self, key, default)  # frozen dataclass: resolve the default once, here
        raise_problems(problems, "loss")


# Checkpoint every 10 epochs by default, and always after the last. Measured (benchmarks/trial_footprint.py,
# 2-core CPU machine): a DenseNet-201 checkpoint (weights + Adam state) is 210 MB and takes 1-2.6 s to write
# to local disk, more to S3; a paper ESC-50 epoch on a current GPU is of the same order (a 70-epoch trial is
# 1-2 min of H100 compute), so a checkpoint per epoch would roughly double a trial's time. Every 10 epochs
# it costs <= ~15 % and a crash repeats at most 9 epochs. The final checkpoint holds the weights SVCCA reads.
CHECKPOINT_EVERY = 10


def gpu_share_problems(gpus: float, num_workers: int, key: str) -> list[str]:
    """GPUs per worker: 0 (CPU), a fraction of one GPU (several single-worker trials share it), or a whole
    number. DDP trials (several workers) need whole GPUs: NCCL cannot put two ranks on one device."""
    if gpus < 0:
        return [f"{key} must be >= 0, got {gpus}"]
    if gpus > 1 and gpus != int(gpus):
        return [f"{key} {gpus}: above 1 it must be a whole number of GPUs"]
    if num_workers > 1 and 0 < gpus < 1:
        return [f"{key} {gpus}: fractional GPUs only for single-worker trials (num_workers is {num_workers}); "
                "DDP ranks need a whole GPU each"]
    return []


def run_setting_problems(config: Any, prefix: str) -> list[str]:
    """The settings a plan hands to each of its trials as they are (split mode, augmented copies, checkpoint
    period, data cache cap), checked by one rule for ``Plan`` (``prefix`` "plan.") and ``TrialConfig``."""
    problems = []
    if config.split not in SPLIT_MODES:
        problems.append(f"{prefix}split must be one of {SPLIT_MODES}, got {config.split!r}")
    if config.augmented not in AUGMENTED_MODES:
        problems.append(f"{prefix}augmented must be one of {AUGMENTED_MODES}, got {config.augmented!r}")
    if config.standardize not in (*STANDARDIZE_MODES, True, False):
        problems.append(f"{prefix}standardize must be one of {STANDARDIZE_MODES} (true: channel, false: none), "
                        f"got {config.standardize!r}")
    if config.checkpoint_every < 1:
        problems.append(f"{prefix}checkpoint_every must be >= 1 (epochs between checkpoints), "
                        f"got {config.checkpoint_every}")
    if config.data_cache_gb < 0:
        problems.append(f"{prefix}data_cache_gb must be >= 0 (GB; 0: RETHINK_AUDIO_DATA_CACHE_GB, else half the "
                        f"disk), got {config.data_cache_gb}")
    return problems


def raise_problems(problems: list[str], section: str) -> None:
    """A config class's own check: every problem it found at once (``section``: where its keys usually are)."""
    if problems:
        raise ConfigValueError(problems, section)


# Phase 1's batch sizes (orchestrator.search's space); the largest sizes a searching plan's memory request.
SEARCH_BATCH_SIZES = (16, 32, 64)

# How a trial trains on a dataset's augmented copies (``augment.copies`` K per clip, made offline). draw: the
# paper's protocol, every epoch each training clip once as is plus one of its K copies drawn afresh; all:
# every copy every epoch (a fixed augmented set, (K + 1) x the clips); every: SoundCLR's protocol, every
# training sample augmented every epoch, one of each clip's K copies drawn afresh (N samples, no original);
# none: ignore the copies.
AUGMENTED_MODES = ("draw", "all", "every", "none")

# How a trial scales its inputs before the first layer, with statistics of its training folds' original clips
# (the dataset card's input_stats; orchestrator.spectra.input_stats): none (the paper: log-mel values as they
# are), channel (each channel minus its mean, over its std: the statistics an ImageNet stem saw after ImageNet
# normalisation) or band (each (channel, mel bin) minus its mean over clips and frames, over its std: also
# removes the per-band offset of log-mel). true / false are accepted as channel / none and stored as such, the
# values the field held before it took names, so those trials keep their ids.
STANDARDIZE_MODES = ("none", "channel", "band")


def standardize_mode(value: bool | str) -> str:
    """The name (``STANDARDIZE_MODES``) of a ``standardize`` value: true -> channel, false -> none."""
    return {True: "channel", False: "none"}.get(value, value) if isinstance(value, bool) else value


def stored_standardize(value: bool | str) -> bool | str:
    """The value a config stores: false / true for none / channel (as before the field took names), else the name."""
    return {"none": False, "channel": True}.get(value, value) if isinstance(value, str) else value


@dataclass(frozen=True)
class TrialConfig:
    """One trial: one model, one init mode, one seed, one test fold on one dataset version."""

    __pydantic_config__ = STRICT

    data: str  # URI of a preprocessed dataset version (the folder holding dataset.json)
    model: str = "efficientnet_lite0"  # a name from orchestrator.models.list_models()
    init: str = "pretrained"  # pretrained | random | fusion:k | freeze:k | cutoff:k
    weights: str | None = None  # pretrained weight source override: local file or s3:// URI
    download_weights: bool = False  # let torchvision's weights enum download (clusters with internet)
    fold: int = 1  # the test fold
    valid_fold: int | None = None  # None: the fold after the test fold (split "nested" only)
    split: str = "nested"  # nested: train / a whole valid fold / test fold; paper: train on every fold but
    # the test fold, no valid fold (the paper's protocol: its epoch is read off the test curve)
    augmented: str = "draw"  # draw | all | every | none: how the dataset's augmented copies join training (above)
    standardize: bool | str = False  # none (the paper; stored false) | channel (stored true) | band: STANDARDIZE_MODES
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mask: MaskConfig | None = None  # None: no SpecAugment masks (the paper); SoundCLR uses MaskConfig()
    num_workers: int = 1  # Ray Train workers (DDP processes); one GPU each when use_gpu
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0  # with use_gpu; fractions pack trials on one GPU (no memory isolation)
    custom_resources: dict[str, float] = field(default_factory=dict)  # extra Ray resources per worker
    max_train_clips: int | None = None  # cap on training rows (smoke runs); None: all
    checkpoint_every: int = CHECKPOINT_EVERY  # epochs between checkpoints; always after the last epoch
    data_cache_gb: float = 0.0  # cap of the node's data cache (orchestrator.data_cache), GB; 0: the env's
    # RETHINK_AUDIO_DATA_CACHE_GB, else half of the cache folder's disk

    def __post_init__(self) -> None:
        object.__setattr__(self, "standardize", stored_standardize(self.standardize))  # frozen: resolved once
        problems: list[str] = []
        if self.num_workers < 1:
            problems.append("num_workers must be >= 1")
        problems += run_setting_problems(self, "")
        if self.split == "paper" and self.valid_fold is not None:
            problems.append("valid_fold is only for split 'nested': split 'paper' has no validation fold")
        problems += gpu_share_problems(self.gpus_per_worker if self.use_gpu else 0.0, self.num_workers,
                                       "gpus_per_worker")
        if self.loss.name != "ce":
            # Both act on the cross-entropy of hard labels; the hybrid's SupCon term needs each sample's one
            # class for its positives, which a mixed sample does not have.
            for key in ("mixup_alpha", "label_smoothing"):
                if getattr(self.optim, key):
                    problems.append(f"optim.{key} applies to loss 'ce' only, not {self.loss.name!r} (SupCon "
                                    f"needs one hard label per sample): set optim.{key}: 0 or loss.name: ce")
        raise_problems(problems, "")
