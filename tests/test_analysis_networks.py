"""SVCCA and Integrated Gradients: known answers on arrays and small models, then on tiny real trials."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import records_fixture as F
from analysis import trialnet
from analysis.attribution import integrated_gradients, trial_attributions
from analysis.svcca import svcca, svcca_details, trial_block_similarity
from orchestrator.errors import StorageError
from svcca_reference import reference_svcca


def test_svcca_of_a_layer_with_itself_is_one():
    layer = np.random.default_rng(0).normal(size=(2000, 40))
    assert svcca(layer, layer) > 0.99
    conv = np.random.default_rng(1).normal(size=(8, 16, 12, 12))  # (N, C, H, W): positions are data points
    assert svcca(conv, conv) > 0.99


def test_svcca_is_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(2)
    layer = rng.normal(size=(3000, 30))
    mixed = layer @ rng.normal(size=(30, 30)) + 5.0  # a rotation/scaling of the neurons plus an offset
    assert svcca(layer, mixed) > 0.99


def test_svcca_with_an_independent_random_layer_is_low():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4000, 32)), rng.normal(size=(4000, 32))
    assert svcca(a, b) < 0.3


def test_svcca_keeps_the_directions_for_99_percent_of_variance():
    # 3 strong directions + tiny noise on 20 neurons: the SVD step keeps the 3, CCA then matches them
    rng = np.random.default_rng(4)
    signal = rng.normal(size=(2000, 3))
    a = signal @ rng.normal(size=(3, 20)) + 1e-4 * rng.normal(size=(2000, 20))
    b = signal @ rng.normal(size=(3, 20)) + 1e-4 * rng.normal(size=(2000, 20))
    result = svcca_details(a, b)
    assert (result.dims_a, result.dims_b, result.points) == (3, 3, 2000)
    assert result.similarity > 0.99


def test_svcca_matches_the_textbook_computation():
    rng = np.random.default_rng(5)
    shared = rng.normal(size=(1500, 6))
    a = np.hstack([shared, rng.normal(size=(1500, 10))]) @ rng.normal(size=(16, 24))
    b = np.hstack([shared[:, :3], rng.normal(size=(1500, 12))]) @ rng.normal(size=(15, 20))
    result = svcca_details(a, b)
    assert result.similarity == pytest.approx(reference_svcca(a, b), abs=1e-9)
    assert 0.2 < result.similarity < 0.8  # partly shared subspaces: neither 0 nor 1


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


def test_integrated_gradients_completeness_on_a_small_model():
    torch.manual_seed(0)
    model, x = Small(), torch.randn(4, 3, 8, 8)
    targets = np.array([0, 1, 2, 1])
    baseline = torch.full_like(x, -1.0)
    attr, delta = integrated_gradients(model, x, targets, baseline, steps=100)
    with torch.no_grad():
        gain = (model(x) - model(baseline))[torch.arange(4), torch.as_tensor(targets)].numpy()
    sums = attr.reshape(4, -1).sum(axis=1)
    assert attr.shape == x.shape
    assert np.abs(sums - gain).max() <= 1e-3 * np.abs(gain).max()
    assert np.allclose(delta, sums - gain, atol=1e-4)


# ---------------------------------------------------------------- tiny real trials


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """resnet18 trials on 3 x 32 x 32 clips of 3 classes: 'pretrained' from a local weights file (final
    weights = initial, nothing moved) and 'random' whose final weights are another seed's init."""
    base = tmp_path_factory.mktemp("real")
    data = F.write_dataset(base / "ds", classes=("a", "b", "c"), clips_per_class=8)
    weights = F.write_weights("resnet18", base / "resnet18-imagenet.pth")
    trials = base / "results" / "trials"
    same = F.write_real_trial(trials, data, init="pretrained", weights=weights, final="same")
    other = F.write_real_trial(trials, data, init="random", final="other")
    return {"data": data, "weights": weights, "same": str(trials / same), "other": str(trials / other)}


def test_initial_network_is_the_one_the_trial_started_from(real):
    info = trialnet.read_trial(real["same"])
    network = trialnet.initial_network(info)
    imagenet = torch.load(real["weights"], weights_only=True)
    assert torch.equal(network.stem.conv1.weight, imagenet["conv1.weight"])  # ImageNet-initialised
    random_info = trialnet.read_trial(real["other"])
    a, b = trialnet.initial_network(random_info), trialnet.initial_network(random_info)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_block_similarity_of_unchanged_weights_is_one(real):
    frame = trial_block_similarity(real["same"], n_clips=12)
    assert frame["block"].tolist() == [1, 2, 3, 4] and (frame["svcca"] > 0.99).all()
    assert frame["points"].iloc[0] == 12 * 8 * 8  # 32 x 32 input -> 8 x 8 positions after ResNet's stem
    moved = trial_block_similarity(real["other"], n_clips=12)
    assert moved["svcca"].iloc[0] < 0.9  # a different random network: block 1 is far from identical


def test_auto_clip_count_takes_the_small_fold_and_flags_short_blocks(real):
    """resnet18 at 32 x 32 would need 5,120 clips for 10x in block 4 (512 channels, 1 position): the fold's
    24 clips are all taken; block 1 (64 channels on 8 x 8) reaches 24x, the others are flagged."""
    frame = trial_block_similarity(real["other"])
    assert (frame["clips"] == 24).all() and frame["positions"].tolist() == [64, 16, 4, 1]
    assert frame["ratio"].tolist() == pytest.approx([24 * 64 / 64, 24 * 16 / 128, 24 * 4 / 256, 24 / 512])
    assert frame["enough"].tolist() == [True, False, False, False]


def test_fixed_clips_are_class_balanced_and_repeatable(real):
    clips = trialnet.fixed_clips(real["data"], 1, n_clips=5)
    assert clips.labels.tolist() == [0, 1, 2, 0, 1] and clips.specs.shape == (5, 3, 32, 32)
    assert clips.clip_ids == trialnet.fixed_clips(real["data"], 1, n_clips=5).clip_ids
    assert clips.classes == ["a", "b", "c"]


def test_trial_attributions_one_clip_per_class(real):
    attr = trial_attributions(real["same"], clips_per_class=1, max_clips=3, steps=8)
    assert attr.labels.tolist() == [0, 1, 2] and attr.attributions.shape == (3, 3, 32, 32)
    assert np.isfinite(attr.attributions).all() and attr.predicted.shape == (3,)
    gain = attr.attributions.reshape(3, -1).sum(axis=1) - attr.delta
    assert attr.completeness_error() == pytest.approx(np.abs(attr.delta).sum() / np.abs(gain).sum())


def test_trial_without_checkpoint_says_so(tmp_path, real):
    tid = F.write_trial(tmp_path, real["data"], valid=[.5], test=[.5], model="resnet18", init="random",
                        num_classes=3)
    with pytest.raises(StorageError, match="no checkpoint.pt"):
        trial_block_similarity(str(tmp_path / tid), n_clips=4)


def test_results_written_with_ray_train_checkpoint_folders_still_load(tmp_path, real):
    tid = F.write_trial(tmp_path, real["data"], valid=[.5], test=[.5], model="resnet18", init="random",
                        num_classes=3)
    final = trialnet.final_network(trialnet.read_trial(real["other"]))
    F.write_checkpoint(tmp_path / tid, final.state_dict(), legacy=True)
    assert trialnet.newest_checkpoint(str(tmp_path / tid)).uri.endswith("/state.pt")
    loaded = trialnet.final_network(trialnet.read_trial(str(tmp_path / tid)))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), final.state_dict().values()))
