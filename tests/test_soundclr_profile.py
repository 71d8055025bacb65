"""SoundCLR as its code runs (plans/soundclr*.yaml): its features against librosa on real FSDD audio, its
fixed-length clips, L2-normalised embeddings, and the every-epoch augmented mode. No Ray: fast unit tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layouts import fsdd_wave
from orchestrator import augment as A
from orchestrator.config import AugmentConfig, FeatureConfig, LossConfig, TrialConfig
from orchestrator.datasets import load_manifest
from orchestrator.errors import ConfigError
from orchestrator.features import SoundclrFeatures, feature_module
from orchestrator.preprocess import PreprocessRequest, hashed_features, version_of
from orchestrator.training import build_network
from orchestrator.trial import trial_id
from orchestrator.trial_data import EvalSplit, TrialData

# Ours (torch, float32) vs librosa 0.11 in dB; measured max |difference| 3e-4 dB on these clips.
DB_TOLERANCE = 1e-3


def librosa_reference(wave: np.ndarray, rate: int) -> np.ndarray:
    """SoundCLR's dataset_ESC50.py / dataset_US8K.py after its transforms: the wave at int16 scale, librosa's
    melspectrogram with its 0.8 defaults (reflect padding: librosa 0.10 made zeros the default), power_to_db
    with ref=np.max."""
    import librosa

    spec = librosa.feature.melspectrogram(y=wave * 32768.0, sr=rate, n_mels=128, n_fft=1024, hop_length=512,
                                          pad_mode="reflect")
    return librosa.power_to_db(spec, ref=np.max)


@pytest.mark.parametrize("rate, seconds, frames", [(44100, 5.0, 431), (44100, 4.0, 345), (8000, 1.0, 16)])
def test_soundclr_features_equal_librosa(rate, seconds, frames):
    """ESC at 44.1 kHz: 128 x 431; US8K's 4 s: 128 x 345; not resized, one channel copied to all three."""
    wave = fsdd_wave(3, rate, seconds)
    cfg = FeatureConfig(recipe="soundclr", clip_seconds=seconds)
    width = cfg.image_width(rate, 250)
    assert width == frames
    ours = feature_module(cfg, rate, width)(torch.from_numpy(wave))[0].numpy()
    theirs = librosa_reference(wave, rate)
    assert ours.shape == (3, 128, frames) and theirs.shape == (128, frames)
    assert np.abs(ours - theirs).max() < DB_TOLERANCE
    assert (ours[1] == ours[0]).all() and (ours[2] == ours[0]).all()
    assert ours.max() == 0.0 and ours.min() >= -80.0  # ref=max: 0 dB at the loudest bin, top_db 80


def test_soundclr_features_of_a_raw_fsdd_clip_and_one_channel():
    """A raw FSDD recording (8 kHz, its own length): no clip_seconds, so the image is resized to the width
    given, as the paper recipe's; num_channels 1 stores the channel once."""
    wave = fsdd_wave(7, 8000, 0.6)
    module = SoundclrFeatures(FeatureConfig(recipe="soundclr", num_channels=1), 8000, 1 + len(wave) // 512)
    ours = module(torch.from_numpy(wave))[0].numpy()
    assert ours.shape == (1, 128, 1 + len(wave) // 512)
    assert np.abs(ours[0] - librosa_reference(wave, 8000)).max() < DB_TOLERANCE
    resized = SoundclrFeatures(FeatureConfig(recipe="soundclr", height=32), 8000, 20)(torch.from_numpy(wave))
    assert resized.shape == (1, 3, 32, 20)


def test_recipe_is_validated_and_hashed_only_when_used(fsdd_root):
    with pytest.raises(ConfigError, match="recipe soundclr is one log-mel channel"):
        FeatureConfig(recipe="soundclr", kind="mfcc")
    with pytest.raises(ConfigError, match="clip_offset only applies with features.clip_seconds"):
        FeatureConfig(clip_offset="random")
    with pytest.raises(ConfigError, match="recipe must be one of"):
        FeatureConfig(recipe="panns")

    def request(**features):
        return PreprocessRequest(dataset="fsdd", root=str(fsdd_root), out="unused", features=FeatureConfig(**features))

    assert not {"recipe", "clip_seconds", "clip_offset"} & set(hashed_features(request()))
    manifest = load_manifest("fsdd", fsdd_root)
    versions = {version_of(request(**f), manifest) for f in (
        {}, {"recipe": "soundclr"}, {"clip_seconds": 1.0}, {"clip_seconds": 1.0, "clip_offset": "random"})}
    assert len(versions) == 4
    assert hashed_features(request(recipe="soundclr", clip_seconds=1.0))["width"] == 16


def test_fit_clip_trims_then_pads_centred_or_at_a_seeded_place():
    """SoundCLR's test transforms: leading/trailing zeros dropped, edge-value padding; centred (its
    train=False branch) or random (what its scripts run); a crop keeps the requested length."""
    speech = fsdd_wave(2, 8000, 0.25) + 0.01
    clip = np.concatenate([np.zeros(500, np.float32), speech, np.zeros(700, np.float32)])
    centred = A.fit_clip(clip, 4000)
    left = round(0.5 * (4000 - len(speech)))
    np.testing.assert_array_equal(centred[left : left + len(speech)], speech)
    assert (centred[:left] == speech[0]).all() and (centred[left + len(speech) :] == speech[-1]).all()
    drawn = [A.fit_clip(clip, 4000, np.random.default_rng(s)) for s in range(5)]
    assert len({d.tobytes() for d in drawn}) == 5
    assert np.array_equal(drawn[0], A.fit_clip(clip, 4000, np.random.default_rng(0)))
    assert len(A.fit_clip(clip, 1000)) == 1000 and len(A.fit_clip(clip, 1000, np.random.default_rng(1))) == 1000


def test_featurizer_fits_originals_and_copies_to_clip_seconds(fsdd_root):
    """Preprocessing with clip_seconds: every row (original and copy) is clip_seconds long before features;
    clip_offset random places each original by its clip id alone, the same in every run."""
    from orchestrator import preprocess

    batch = load_manifest("fsdd", fsdd_root).head(2)

    def specs(offset):
        features = FeatureConfig(recipe="soundclr", clip_seconds=1.0, clip_offset=offset)
        featurizer = preprocess.Featurizer(features, 8000, features.image_width(8000, 250),
                                           AugmentConfig(copies=2, seed=1, kind="soundclr"), rejections=None,
                                           root=str(fsdd_root))
        rows, out, rejected = featurizer.featurize_rows(batch)
        assert rejected == [] and out.shape == (6, 3, 128, 16)
        return out

    random, again, centre = specs("random"), specs("random"), specs("centre")
    assert np.array_equal(random, again)
    assert not np.array_equal(random[0], centre[0])  # the originals sit elsewhere ...
    assert np.array_equal(random[1:3], centre[1:3])  # ... the copies (their own draws) do not change


def test_l2_embedding_normalises_before_head_and_projection():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    for loss in ("ce", "hybrid"):
        cfg = TrialConfig(data="d", model="soundnet8", init="random", loss=LossConfig(name=loss, l2_embedding=True))
        network = build_network(cfg, num_classes=5).eval()
        backbone = network if loss == "ce" else network.model
        embedding = backbone.forward_features(x)
        assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)
        logits = network(x) if loss == "ce" else network(x)[0]
        assert torch.allclose(logits, backbone.head(embedding), atol=1e-6)
        if loss == "hybrid":
            expected = torch.nn.functional.normalize(network.projection.net(embedding), dim=1)
            assert torch.allclose(network(x)[1], expected, atol=1e-6)
    plain = build_network(TrialConfig(data="d", model="soundnet8", init="random"), num_classes=5).eval()
    assert not torch.allclose(plain.forward_features(x).norm(dim=1), torch.ones(4), atol=1e-3)
    # off by default, and then out of the trial id: existing trials keep theirs
    default = TrialConfig(data="d")
    assert trial_id(default) == trial_id(TrialConfig(data="d", loss=LossConfig(l2_embedding=False)))
    assert trial_id(default) != trial_id(TrialConfig(data="d", loss=LossConfig(l2_embedding=True)))


def augmented_data(copies: list[int]) -> TrialData:
    """A TrialData whose clip i has ``copies[i]`` copies; row r holds r in every cell, to follow rows."""
    n, total = len(copies), len(copies) + sum(copies)
    offsets = np.concatenate([[0], np.cumsum(copies)]).astype(np.int64)
    specs = np.arange(total, dtype=np.float16).reshape(-1, 1, 1, 1)
    test = EvalSplit(np.arange(1), np.zeros(1, np.int64), ["t"])
    return TrialData(specs, np.arange(total), np.zeros(total, np.int64), [f"clip{i}" for i in range(n)], offsets,
                     None, test)


def test_every_epoch_trains_on_one_augmented_copy_per_clip():
    """augmented every: N samples per epoch, all augmented copies (one of each clip's), a different draw from
    epoch to epoch, the same for the same (seed, epoch); a clip without copies trains as itself."""
    data = augmented_data([4] * 30 + [0])
    n = data.originals
    epochs = [data.epoch_rows("every", seed=3, epoch=e) for e in range(1, 7)]
    for rows in epochs:
        assert len(rows) == n and rows[-1] == n - 1  # N samples; the copy-less clip as itself
        copy_of = np.searchsorted(data.copy_offsets, rows[:-1] - n, side="right") - 1
        assert (rows[:-1] >= n).all() and (copy_of == np.arange(n - 1)).all()  # one copy of each clip
    drawn = np.stack(epochs)
    assert (np.array([len(set(col)) for col in drawn[:, :-1].T]) >= 2).all()  # fresh draws across epochs
    assert (data.epoch_rows("every", 3, 2) == epochs[1]).all()
    assert not all((data.epoch_rows("every", 4, e) == epochs[e - 1]).all() for e in range(1, 7))
    # the same copies draw draws, without the originals
    assert (data.epoch_rows("draw", 3, 2)[n:] == epochs[1][:-1]).all()
