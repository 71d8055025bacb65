"""SoundCLR's waveform augmentation (orchestrator/augment.py) on real FSDD speech: seeded determinism, the
reference's parameter ranges, its resampling transcribed from utils/transforms.py, pad/crop behaviour, the
kind dispatch preprocessing uses, and dataset versions of kind 'paper' left as they were."""

import numpy as np
import pytest
import torch

from layouts import fsdd_wave
from orchestrator import augment as A
from orchestrator.config import AugmentConfig, FeatureConfig
from orchestrator.datasets import DatasetRoot, load_manifest
from orchestrator.errors import ConfigError
from orchestrator.preprocess import PreprocessRequest, version_of

RATE = 8000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """One second of real FSDD speech at 8 kHz."""
    return fsdd_wave(3, RATE, 1.0)


def reference_random_scale(signal: torch.Tensor, scaling: float) -> torch.Tensor:
    """SoundCLR utils/transforms.py RandomScale.random_scale with the drawn ``scaling`` passed in."""
    output_size = int(signal.shape[-1] * scaling)
    ref = torch.arange(output_size, device=signal.device, dtype=signal.dtype).div_(scaling)
    ref1 = ref.clone().type(torch.int64)
    ref2 = torch.min(ref1 + 1, torch.full_like(ref1, signal.shape[-1] - 1, dtype=torch.int64))
    r = ref - ref1.type(ref.type())
    return signal[..., ref1] * (1 - r) + signal[..., ref2] * r


def test_same_generator_state_same_variant(speech):
    first = A.soundclr_wave_augment(speech, RATE, np.random.default_rng(7))
    again = A.soundclr_wave_augment(speech, RATE, np.random.default_rng(7))
    other = A.soundclr_wave_augment(speech, RATE, np.random.default_rng(8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.dtype == np.float32 and first.shape == speech.shape


def test_parameter_ranges(speech):
    """Scale 1.25 ** U(-1, 1), so within [0.8, 1.25] and spread over it; output always the target length."""
    rng = np.random.default_rng(0)
    scales, offsets = [], []
    for _ in range(200):
        out, params = A.soundclr_augment(speech, rng)
        assert len(out) == len(speech)
        scales.append(params.scale)
        offsets.append(params.offset)
    scales = np.array(scales)
    assert scales.min() >= 0.8 and scales.max() <= 1.25
    assert scales.min() < 0.83 and scales.max() > 1.2 and abs(np.median(np.log(scales))) < 0.05
    assert all(o is not None and 0 <= o < 0.25 * len(speech) for o in offsets)
    assert len(A.soundclr_wave_augment(speech, RATE, rng, out_seconds=2.0)) == 2 * RATE


@pytest.mark.parametrize("scaling", [0.8, 0.93, 1.0, 1.17, 1.25])
def test_resampling_matches_reference_code(speech, scaling):
    ours = A._random_scale(speech.astype(np.float64), scaling)
    theirs = reference_random_scale(torch.from_numpy(speech.astype(np.float64)), scaling).numpy()
    assert ours.shape == theirs.shape == (int(len(speech) * scaling),)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_silence_is_trimmed_then_padded_with_edge_values(speech):
    """A digit inside digital silence (ESC-50 style zero padding) lands at a random place, as in SoundCLR:
    leading/trailing zeros are dropped first, then the pad repeats the clip's first and last samples."""
    clip = np.concatenate([np.zeros(3000, np.float32), speech[:2000] + 0.01, np.zeros(3000, np.float32)])
    rng = np.random.default_rng(3)
    starts = set()
    for _ in range(20):
        out, params = A.soundclr_augment(clip, rng)
        scaled = A._random_scale(clip[3000:5000].astype(np.float64), params.scale)
        left = params.offset
        starts.add(left)
        np.testing.assert_allclose(out[left : left + len(scaled)], scaled, rtol=0, atol=1e-6)
        assert np.all(out[:left] == np.float32(scaled[0]))
        assert np.all(out[left + len(scaled) :] == np.float32(scaled[-1]))
    assert len(starts) == 20  # offsets drawn over the whole 8000 - ~2000 sample range


def test_crop_falls_back_to_the_first_window_when_the_random_one_is_quiet():
    """RandomCrop's rule: a window under half the clip's std is replaced by the first window."""
    loud = np.sin(np.arange(1000) / 3.0)
    clip = np.concatenate([loud, 1e-4 * np.ones(9000)])
    out, left = A._crop(clip, 1000, 5000)
    assert left == 0 and np.array_equal(out, clip[:1000])


def test_augmented_copy_dispatches_on_kind(speech):
    paper = AugmentConfig(copies=1, seed=4)
    out, recorded = A.augmented_copy(paper, speech, RATE, "clip", 0)
    params = A.augment_params(paper, "clip", 0)
    assert np.array_equal(out, A.apply_augment(speech, RATE, params))  # kind paper: exactly as before
    assert recorded == {"aug_pitch": params.pitch, "aug_stretch": params.stretch}
    soundclr = AugmentConfig(copies=1, seed=4, kind="soundclr")
    out, recorded = A.augmented_copy(soundclr, speech, RATE, "clip", 0)
    again, _ = A.augmented_copy(soundclr, speech, RATE, "clip", 0)
    expected, drawn = A.soundclr_augment(speech, np.random.default_rng(A.copy_seed(soundclr, "clip", 0)))
    assert np.array_equal(out, again) and np.array_equal(out, expected)
    assert recorded == {"aug_pitch": None, "aug_stretch": 1.0 / drawn.scale}
    assert not np.array_equal(out, A.augmented_copy(soundclr, speech, RATE, "clip", 1)[0])


def test_kind_is_validated():
    with pytest.raises(ConfigError, match="augment.kind must be one of"):
        AugmentConfig(kind="mixup")


def test_dataset_versions_of_kind_paper_are_unchanged(fsdd_root):
    """The version hash leaves ``kind: paper`` out: the names below were computed before the field existed
    (with the features of that time, ``mel_scale: slaney``)."""
    assert AugmentConfig().identity() == {"copies": 0, "pitch_semitones": [-2, 2], "stretch_range": [0.9, 1.2],
                                          "seed": 0}
    manifest = load_manifest("fsdd", DatasetRoot.open(str(fsdd_root)))

    def version(**augment):
        return version_of(PreprocessRequest(dataset="fsdd", root=str(fsdd_root), out="unused",
                                            features=FeatureConfig(mel_scale="slaney"),
                                            augment=AugmentConfig(**augment)), manifest)

    assert version() == "da80d4b916b8" and version(copies=2, seed=5) == "1326a9e382b8"
    assert version(copies=2, seed=5, kind="soundclr") != version(copies=2, seed=5)


def test_featurizer_writes_soundclr_copies_and_their_parameters(fsdd_root):
    """Preprocessing's featurizer (no Ray needed) on real FSDD files with kind soundclr: two copies per clip,
    each a different variant, ``aug_stretch`` = 1 / scale, ``aug_pitch`` null, and the Arrow table builds."""
    from orchestrator import preprocess
    from orchestrator.config import FeatureConfig

    batch = load_manifest("fsdd", fsdd_root).head(2)
    augment = AugmentConfig(copies=2, seed=1, kind="soundclr")
    featurizer = preprocess.Featurizer(FeatureConfig(height=16, width=16), 8000, 16, augment, rejections=None,
                                       root=str(fsdd_root))
    rows, specs, rejected = featurizer.featurize_rows(batch)
    assert rejected == [] and len(rows) == len(specs) == 6
    copies = [r for r in rows if r["aug_copy"] is not None]
    assert [r["clip_id"] for r in copies] == [f"{c}#aug{k}" for c in batch["clip_id"] for k in (0, 1)]
    for row in copies:
        scale = A.soundclr_augment(np.zeros(8, np.float32) + 1, np.random.default_rng(
            A.copy_seed(augment, row["source_id"], row["aug_copy"])))[1].scale
        assert row["aug_pitch"] is None and row["aug_stretch"] == pytest.approx(1 / scale)
        assert 0.8 <= row["aug_stretch"] <= 1.25
    assert not np.array_equal(specs[1], specs[2]) and not np.array_equal(specs[0], specs[1])
    table = preprocess._to_arrow(rows, specs)
    assert table.column("aug_pitch").null_count == 6 and table.column("aug_stretch").null_count == 2
