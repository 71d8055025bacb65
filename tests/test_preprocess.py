"""Ray Data preprocessing end to end on the bundled FSDD subset and generated official layouts."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from pathlib import Path

from layouts import make_esc50, make_gtzan, make_us8k
from orchestrator import spectra
from orchestrator.cli import main
from orchestrator.config import AugmentConfig, FeatureConfig
from orchestrator.datasets.folds import fold_splits
from orchestrator.errors import RethinkError, StorageError
from orchestrator.datasets import DatasetRoot, load_manifest
from orchestrator.plan import load_plan
from orchestrator.preprocess import PreprocessRequest, preprocess, version_of

SMALL = FeatureConfig(height=32, width=40)  # small images keep the tests fast; the recipe is unchanged


def parquet_files(uri: str) -> dict[str, int]:
    """Parquet files of a version with their modification times."""
    return {str(p): p.stat().st_mtime_ns for p in Path(uri).rglob("*.parquet")}


def test_fsdd_bundled_subset_to_parquet_and_rerun_is_noop(ray_local, fsdd_root, tmp_path):
    request = PreprocessRequest("fsdd", str(fsdd_root), str(tmp_path / "out"))
    result = preprocess(request)
    card = result.card
    assert not result.reused and card["counts"]["total"] == 600 and card["rejected"] == []
    assert card["counts"]["per_fold"] == {str(f): 100 for f in range(1, 7)}
    assert card["spec"] == {"shape": [3, 128, 250], "dtype": "float16"}
    assert card["features"]["channels"][0] == {"win_length": 200, "hop_length": 80, "n_fft": 800}
    assert card["features"]["mel_scale"] == "htk"  # the paper's recipe by default, recorded on the card
    # plain pyarrow reads the standard tensor type; fold comes back typed as int
    table = spectra.read_table(result.uri, folds=[2])
    assert str(table.schema.field("spec").type).startswith("extension<arrow.fixed_shape_tensor")
    assert table.schema.field("fold").type == "int64" and set(table["fold"].to_pylist()) == {2}
    specs = spectra.spec_array(table)
    assert specs.shape == (100, 3, 128, 250) and specs.dtype == np.float16 and np.isfinite(specs).all()
    files = parquet_files(result.uri)
    again = preprocess(request)
    assert again.reused and again.uri == result.uri and parquet_files(result.uri) == files
    changed = preprocess(PreprocessRequest("fsdd", str(fsdd_root), str(tmp_path / "out"),
                                           features=FeatureConfig(width=100)))
    assert changed.uri != result.uri and spectra.read_card(changed.uri)["spec"]["shape"] == [3, 128, 100]


# Versions of the bundled FSDD subset as the code before FeatureConfig.mel_scale named them (commit 75e5fa6,
# Slaney features): a plan asking for mel_scale slaney must find and reuse those folders.
VERSIONS_BEFORE_MEL_SCALE = [(FeatureConfig(), "da80d4b916b8"), (FeatureConfig(variant="mono3x"), "f2f03c614bd6"),
                             (SMALL, "390d3eb703c8")]


@pytest.mark.parametrize("features,old_version", VERSIONS_BEFORE_MEL_SCALE)
def test_slaney_keeps_the_old_version_and_htk_is_a_new_one(fsdd_root, features, old_version):
    manifest = load_manifest("fsdd", DatasetRoot.open(str(fsdd_root)))

    def version(**changes) -> str:
        request = PreprocessRequest("fsdd", str(fsdd_root), "out", features=dataclasses.replace(features, **changes))
        return version_of(request, manifest)

    assert version(mel_scale="slaney") == old_version
    assert version() == version(mel_scale="htk") != old_version
    # the representation fields at their defaults (log-mel, 3 channels, 40 MFCCs) leave the name alone too
    assert version(mel_scale="slaney", kind="logmel", num_channels=3, n_mfcc=40) == old_version
    if features.variant == "paper3ch":  # any other representation is another version
        others = {version(kind=k) for k in ("logspec", "mfcc", "gammatone")} | {version(num_channels=1)}
        assert len(others) == 4 and version() not in others


def test_a_plan_with_slaney_features_names_the_old_folder(fsdd_root, tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(f"""name: old-features
storage: {tmp_path / "runs"}
datasets:
  fsdd:
    preprocess: {{dataset: fsdd, root: {fsdd_root}, features: {{mel_scale: slaney}}}}
    folds: [1]
models: [efficientnet_lite0]
""")
    pre = load_plan(plan_file).datasets["fsdd"].preprocess
    request = PreprocessRequest(pre.dataset, pre.root, "out", features=pre.features)
    assert version_of(request, load_manifest("fsdd", DatasetRoot.open(pre.root))) == "da80d4b916b8"


def test_cli_mel_scale_flag(fsdd_root):
    from orchestrator.cli import build_parser, preprocess_request

    def request(*flags):
        args = build_parser().parse_args(["preprocess", "--dataset", "fsdd", "--root", str(fsdd_root),
                                          "--out", "out", *flags])
        return preprocess_request(args)

    assert request().features.mel_scale == "htk"
    assert request("--mel-scale", "slaney").features == FeatureConfig(mel_scale="slaney")


def test_stored_features_equal_the_feature_module(ray_local, fsdd_root, tmp_path):
    import torch

    from orchestrator.features import SpectrogramFeatures

    result = preprocess(PreprocessRequest("fsdd", str(fsdd_root), str(tmp_path), features=SMALL))
    table = spectra.read_table(result.uri, folds=[4])
    row = table.to_pandas().iloc[0]
    wave, rate = sf.read(fsdd_root / "recordings" / f"{row['clip_id']}.wav", dtype="float32")
    expected = SpectrogramFeatures(SMALL, rate, 40)(torch.from_numpy(wave))[0].numpy()
    np.testing.assert_allclose(spectra.spec_array(table)[0].astype(np.float32), expected, atol=2e-2, rtol=2e-3)


def test_esc50_bad_files_are_rejected_and_the_rest_completes(ray_local, tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=3, seconds=5.0, bad_files=True)
    # a file whose header is fine but whose samples are NaN: only decoding can reject it
    sf.write(root / "audio" / "4-1041-A-1.wav", np.full(1000, np.nan, dtype=np.float32), 44100, subtype="FLOAT")
    result = preprocess(PreprocessRequest("esc50", str(root), str(tmp_path / "out"), features=SMALL))
    reasons = {r["clip_id"]: r["reason"] for r in result.card["rejected"]}
    assert set(reasons) == {"1-91-A-0", "2-92-A-0", "4-1041-A-1"}
    assert reasons["2-92-A-0"] == "empty file (0 bytes)" and "NaN" in reasons["4-1041-A-1"]
    assert result.card["counts"]["total"] == 15 - 1
    assert result.card["num_classes"] == 11  # ESC-50 targets 0, 1, 10 present: the head needs 11 outputs
    rejected = pq.read_table(f"{result.uri}/{spectra.REJECTED}").to_pandas()
    assert set(rejected["clip_id"]) == set(reasons)
    with pytest.raises(RethinkError, match=r"--strict: 2 file\(s\) rejected"):
        preprocess(PreprocessRequest("esc50", str(root), str(tmp_path / "strict"), features=SMALL, strict=True))


def test_a_featurizer_that_cannot_read_a_file_fails_the_run_and_writes_no_version(ray_local, tmp_path,
                                                                                  monkeypatch):
    # the driver sees every file, a featurizer does not (a node without the mount): before, each such clip
    # became "rejected" and the finished version was reused by every rerun
    import orchestrator.preprocess as pre

    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=2, seconds=0.5)
    gone = root / "audio" / "3-1031-A-1.wav"
    kept = gone.read_bytes()
    real = pre.load_manifest

    def manifest_then_lose_a_file(*args, **kwargs):
        manifest = real(*args, **kwargs)
        gone.unlink()
        return manifest

    monkeypatch.setattr(pre, "load_manifest", manifest_then_lose_a_file)
    request = PreprocessRequest("esc50", str(root), str(tmp_path / "out"), features=SMALL)
    with pytest.raises(StorageError) as error:
        preprocess(request)
    message = str(error.value)
    assert message.startswith("featurizer on node ")
    assert f"cannot read {gone.resolve()}: missing (no such file or folder); " in message
    assert "every Ray node must reach the dataset root" in message
    assert "\n" not in message and not list((tmp_path / "out").rglob(spectra.CARD))
    gone.write_bytes(kept)
    monkeypatch.setattr(pre, "load_manifest", real)
    result = preprocess(request)
    assert not result.reused and result.card["rejected"] == [] and result.card["counts"]["total"] == 10


def test_augmented_copies_carry_source_and_stay_in_train(ray_local, tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=2, seconds=1.0)
    request = PreprocessRequest("esc50", str(root), str(tmp_path / "out"), features=SMALL,
                                augment=AugmentConfig(copies=2, seed=5))
    result = preprocess(request)
    rows = spectra.read_table(result.uri, columns=["clip_id", "source_id", "fold", "aug_copy", "aug_pitch",
                                                   "aug_stretch"]).to_pandas()
    assert result.card["counts"] == {**result.card["counts"], "total": 30, "originals": 10, "augmented": 20}
    copies = rows[rows["aug_copy"].notna()]
    assert (copies["clip_id"] == copies["source_id"] + "#aug" + copies["aug_copy"].astype(int).astype(str)).all()
    assert copies["aug_pitch"].between(-2, 2).all() and copies["aug_stretch"].between(0.9, 1.2).all()
    assert rows.loc[rows["aug_copy"].isna(), "aug_pitch"].isna().all()
    splits = fold_splits(rows, test_fold=3)
    assert len(splits.train) == 18 and len(splits.valid) == len(splits.test) == 2


def test_us8k_odd_audio_and_gtzan_bad_file(ray_local, tmp_path):
    us8k = preprocess(PreprocessRequest("us8k", str(make_us8k(tmp_path / "us8k")), str(tmp_path / "o"),
                                        features=SMALL))
    assert us8k.card["counts"]["total"] == 20 and us8k.card["rejected"] == []
    assert us8k.card["features"]["sample_rate"] == 22050
    specs = spectra.spec_array(spectra.read_table(us8k.uri))
    assert np.isfinite(specs.astype(np.float32)).all()  # stereo 48 kHz, 11 kHz and a 300-sample clip included
    gtzan = preprocess(PreprocessRequest("gtzan", str(make_gtzan(tmp_path / "gtzan", per_genre=5, seconds=1.0)),
                                         str(tmp_path / "o"), features=FeatureConfig(height=32)))
    assert [r["clip_id"] for r in gtzan.card["rejected"]] == ["jazz.00054"]
    assert gtzan.card["counts"]["total"] == 50 and gtzan.card["spec"]["shape"] == [3, 32, 1500]


def test_cli_json_summary_and_clear_errors(ray_local, fsdd_root, tmp_path, capsys):
    code = main(["preprocess", "--dataset", "fsdd", "--root", str(fsdd_root), "--out", str(tmp_path),
                 "--width", "40", "--height", "32", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["clips"] == 600 and summary["rejected"] == 0 and not summary["reused"]
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=1, seconds=0.2)
    (root / "meta" / "esc50.csv").write_text("filename,target\nx.wav,1\n")
    code = main(["preprocess", "--dataset", "esc50", "--root", str(root), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "esc50.csv is missing column(s)" in err and "Traceback" not in err
    assert main(["preprocess", "--dataset", "nope", "--root", str(root), "--out", str(tmp_path)]) == 2
    assert "valid names" in capsys.readouterr().err
    assert main(["preprocess", "--dataset", "fsdd", "--root", str(fsdd_root), "--out", "ftp://x/y"]) == 2
    assert "unsupported storage URI" in capsys.readouterr().err
