"""Input normalisation as a studied choice: per-band standardisation from the training folds' statistics, the
HTK mel filters area-normalised (``features.mel_norm``), both without changing old trial ids or dataset
hashes, and the representation table that compares them with the paper's input. No Ray, no audio."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.collect import features_label
from analysis.representations import table_representations
from orchestrator import spectra
from orchestrator.config import FeatureConfig, TrialConfig, from_dict
from orchestrator.errors import ConfigError
from orchestrator.features import band_basis, mel_filterbank
from orchestrator.models import Standardize
from orchestrator.preprocess import PreprocessRequest, hashed_features
from orchestrator.training import build_network
from orchestrator.trial import prepare_trial, trial_id
from versions import write_version

SHAPE = (3, 8, 10)  # channels, mel bins, frames
TRAIN = [1, 2, 3]


def originals(uri: str, folds: list[int]) -> np.ndarray:
    """The stored spectrograms of the original clips (no augmented copies) of ``folds``, float64."""
    table = spectra.read_table(uri, folds=folds, columns=["spec", "aug_copy"])
    keep = table["aug_copy"].is_null().to_numpy(zero_copy_only=False)
    return spectra.spec_array(table)[keep].astype(np.float64)


@pytest.fixture
def version(tmp_path) -> str:
    """5 folds of 6 clips (+2 copies each) whose bands have offsets and spreads of their own, fold-dependent."""
    return write_version(tmp_path / "v", folds=5, originals_per_fold=6, copies=2, shape=SHAPE, band_offsets=True)


def test_band_statistics_are_the_training_folds_and_standardise_each_band(version):
    """Per (channel, mel bin) mean/std over the training folds' original clips and frames only: a training
    batch standardised with them has mean 0 and std 1 in every band, which per-channel statistics do not give."""
    mean, std = spectra.input_stats(version, TRAIN, per="band")  # card without input_stats: read once
    train = originals(version, TRAIN)
    assert mean.shape == std.shape == SHAPE[:2]
    assert mean == pytest.approx(train.mean(axis=(0, 3)), rel=1e-5)
    assert std == pytest.approx(train.std(axis=(0, 3)), rel=1e-5)
    everything = originals(version, [1, 2, 3, 4, 5])  # test and valid folds (and copies) would shift them
    assert not np.allclose(mean, everything.mean(axis=(0, 3)), atol=0.1)

    out = Standardize(mean, std)(torch.from_numpy(train.astype(np.float32))).double()
    assert out.mean(dim=(0, 3)).abs().max() < 1e-4 and (out.std(dim=(0, 3), unbiased=False) - 1).abs().max() < 1e-4
    per_channel = Standardize(*spectra.input_stats(version, TRAIN))(torch.from_numpy(train.astype(np.float32)))
    assert per_channel.mean(dim=(0, 3)).abs().max() > 0.5  # the band offsets survive per-channel scaling


def test_card_band_sums_match_the_data_and_older_cards_are_read_again(version, tmp_path):
    """fold_stats (what preprocessing writes to the card) holds the per-band sums; a card that holds only the
    per-channel ones (written before band sums existed) is answered from the Parquet for ``band``."""
    card = spectra.read_card(version) | {"input_stats": spectra.fold_stats(version)}
    from_card = spectra.input_stats(version, TRAIN, card, per="band")
    assert np.allclose(from_card, spectra.input_stats(version, TRAIN, per="band"))
    channel_only = {f: {k: s[k] for k in ("count", "sum", "sum_sq")} for f, s in card["input_stats"].items()}
    older = card | {"input_stats": channel_only}
    assert np.allclose(spectra.input_stats(version, TRAIN, older, per="band"), from_card)
    assert np.allclose(spectra.input_stats(version, TRAIN, older), spectra.input_stats(version, TRAIN, card))
    with pytest.raises(ValueError, match="per must be 'channel' or 'band'"):
        spectra.input_stats(version, TRAIN, card, per="bin")


def test_a_band_standardised_trial_carries_its_training_folds_band_statistics(version, tmp_path):
    """prepare_trial resolves per-band statistics from the trial's training folds (nested: test 4, valid 5);
    the network's stem starts with them, so every feed (CPU or GPU batches) is standardised in the model."""
    cfg = TrialConfig(data=version, model="efficientnet_lite0", init="random", fold=4, standardize="band")
    prepared = prepare_trial(cfg, str(tmp_path / "trials"))
    assert prepared.folds["train"] == TRAIN
    mean, std = spectra.input_stats(version, TRAIN, per="band")
    assert np.array_equal(np.asarray(prepared.input_stats[0], np.float32), mean)
    network = build_network(cfg, 2, prepared.input_stats)
    assert torch.equal(network.stem.standardize.mean, torch.from_numpy(mean)[..., None])
    assert torch.equal(network.stem.standardize.std, torch.from_numpy(std)[..., None])
    json.dumps(prepared.loop_config())  # the statistics travel as JSON to every rank


def test_standardize_names_keep_old_trial_ids():
    """true / false are channel / none, stored as before, so trials that predate the names keep their ids."""
    old = "resnet18-pretrained-ce-fold1-seed0-a982319c"  # tests/test_optim.py OLD_IDS["ce"]
    assert trial_id(TrialConfig(data="d", model="resnet18", augmented="all", standardize="none")) == old
    channel = TrialConfig(data="d", model="resnet18", augmented="all", standardize="channel")
    assert channel.standardize is True
    assert trial_id(channel) == trial_id(TrialConfig(data="d", model="resnet18", augmented="all", standardize=True))
    band = TrialConfig(data="d", model="resnet18", augmented="all", standardize="band")
    assert trial_id(band) not in (old, trial_id(channel))
    with pytest.raises(ConfigError, match=r"standardize must be one of \('none', 'channel', 'band'\)"):
        from_dict(TrialConfig, {"data": "d", "standardize": "bands"})


@pytest.mark.parametrize("sr, n_fft, n_mels", [(8000, 800, 128), (44100, 4410, 128), (16000, 512, 40)])
def test_area_normalised_htk_filters_are_librosas(sr, n_fft, n_mels):
    """``mel_norm: slaney`` on the HTK scale is librosa.filters.mel(htk=True, norm="slaney"): to 1e-6 of the
    largest weight (float32 against librosa's float64); the unnormalised paper filters differ from it."""
    import librosa

    reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2, htk=True,
                                    norm="slaney", dtype=np.float64)
    ours = mel_filterbank(sr, n_fft, n_mels, htk=True, norm="slaney")
    assert np.abs(ours - reference).max() < 1e-6 * reference.max()
    if n_fft % 2 == 0:  # the features' basis (torchaudio's bin grid) is the rfftfreq grid for even n_fft
        basis = band_basis(FeatureConfig(mel_norm="slaney", n_mels=n_mels), sr, n_fft)
        assert np.abs(basis - reference).max() < 1e-6 * reference.max()
        assert not np.allclose(band_basis(FeatureConfig(n_mels=n_mels), sr, n_fft), basis)


def test_mel_norm_default_keeps_dataset_hashes_and_bad_values_are_named():
    """mel_norm null (the paper's) stays out of the version hash (old versions keep their names); slaney
    enters it. With the Slaney scale, or a non-mel kind, it is an error."""
    def request(**features):
        return PreprocessRequest("fsdd", "unused", "out", features=FeatureConfig(**features))

    assert "mel_norm" not in hashed_features(request())
    assert hashed_features(request(mel_norm="slaney"))["mel_norm"] == "slaney"
    for bad, message in (({"mel_norm": "slaney", "mel_scale": "slaney"}, "mel_scale slaney already area-normalises"),
                         ({"mel_norm": "slaney", "kind": "gammatone"}, "applies to mel bands"),
                         ({"mel_norm": "area"}, "features.mel_norm must be null")):
        with pytest.raises(ConfigError, match=message):
            from_dict(FeatureConfig, bad, where="features")


def test_features_label_names_scale_filter_norm_and_mono3x():
    label = lambda **f: features_label({"features": {"kind": "logmel", "num_channels": 3, **f}})  # noqa: E731
    assert label(mel_scale="htk") == "logmel 3ch"
    assert label(mel_scale="htk", mel_norm="slaney") == "logmel 3ch area-norm"
    assert label(mel_scale="slaney") == "logmel 3ch slaney"
    assert label() == "logmel 3ch slaney"  # cards before mel_scale: the Slaney recipe was the only one
    assert label(mel_scale="htk", variant="mono3x") == "logmel mono3x"
    assert features_label({"features": {"kind": "gammatone", "num_channels": 1}}) == "gammatone 1ch"


def test_representation_table_pairs_every_input_with_the_papers():
    """Inputs that differ in features or in standardisation (a recipe field) are rows of one group; each is
    paired with the paper's unstandardised log-mel with the same channels, mono3x with the 3-channel one."""
    arms = {("logmel 3ch", "none"): 0.60, ("logmel 3ch", "channel"): 0.62, ("logmel 3ch", "band"): 0.70,
            ("logmel 3ch slaney", "none"): 0.65, ("logmel mono3x", "none"): 0.50}
    rows = [{"dataset_name": "fsdd", "model": "m", "init": "pretrained", "method": "ce", "split": "nested",
             "code_version": "v1", "input_recipe": "r0", "recipe_label": f"standardize {scaling}", "features": features,
             "standardize": scaling, "seed": seed, "fold": fold, "train_seconds": 1.0,
             "best_epoch": acc, "last_epoch": acc, "valid_selected": acc + 0.01 * (seed - fold)}
            for (features, scaling), acc in arms.items() for seed in range(3) for fold in (1, 2)]
    table = table_representations(pd.DataFrame(rows))
    numbers = table.numbers
    assert numbers["input"].tolist() == ["logmel 3ch", "logmel 3ch · std per channel", "logmel 3ch · std per band",
                                         "logmel 3ch slaney", "logmel mono3x"]
    assert numbers["versus"].tolist() == ["", "logmel 3ch", "logmel 3ch", "logmel 3ch", "logmel 3ch"]
    assert numbers["vs_logmel_diff"].round(6).tolist()[1:] == [2.0, 10.0, 5.0, -10.0]
    assert numbers["vs_logmel_pairs"].tolist()[1:] == [6, 6, 6, 6]
    assert "logmel 3ch · std per band − logmel 3ch" in " ".join(c.label for c in table.comparisons)
