"""Dataset catalog: manifests of the bundled FSDD subset and generated official layouts, and bad metadata."""

from __future__ import annotations

import pandas as pd
import pytest

from layouts import make_esc50, make_gtzan, make_us8k
from orchestrator.datasets import MANIFEST_COLUMNS, load_manifest
from orchestrator.errors import ConfigError, ManifestError, StorageError


def test_fsdd_manifest_has_speaker_folds_and_official_split(fsdd_root):
    m = load_manifest("fsdd", fsdd_root)
    assert list(m.columns) == MANIFEST_COLUMNS
    assert len(m) == 600 and m["clip_id"].is_unique
    assert sorted(m["label"].unique()) == list(range(10))
    # folds = speakers in name order, 100 clips each, never two speakers in one fold
    assert m.groupby("fold")["group"].nunique().eq(1).all()
    assert m.groupby("fold").size().tolist() == [100] * 6
    assert m.loc[m["fold"] == 1, "group"].iloc[0] == "george"
    assert (m["split"] == "test").sum() == 300  # takes 0-4
    assert (m["error"] == "").all() and (m["sample_rate"] == 8000).all()
    assert m["duration"].between(0.1, 2.5).all()


def test_esc50_manifest_folds_labels_and_bad_files(tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=4, seconds=0.5, bad_files=True)
    m = load_manifest("esc50", root)
    assert sorted(m["fold"].unique()) == [1, 2, 3, 4, 5]
    assert set(m["label"]) == {0, 1, 10, 11}
    assert m.loc[m["label"] == 10, "label_name"].iloc[0] == "rain"
    errors = dict(zip(m["clip_id"], m["error"]))
    assert errors["1-91-A-0"].startswith("unreadable audio")
    assert errors["2-92-A-0"] == "empty file (0 bytes)"
    assert (m.loc[~m["clip_id"].str.startswith(("1-91", "2-92")), "error"] == "").all()
    assert m.loc[m["error"] == "", "duration"].round(3).eq(0.5).all()


def test_a_listed_file_that_does_not_exist_fails_the_manifest(tmp_path):
    # an I/O problem (incomplete copy, wrong --root), not a content one: no version may be built without it
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=1, seconds=0.2, bad_files=True, missing_file=True)
    with pytest.raises(StorageError) as error:
        load_manifest("esc50", root)
    assert str(error.value) == (
        f"1 audio file(s) listed in {root}/meta/esc50.csv do not exist: {root}/audio/3-93-A-0.wav (line 9); "
        f"the copy at {root} is incomplete or --root points at the wrong copy: restore the files (re-download "
        "or re-sync), or remove their rows from the metadata")


def test_esc10_is_reindexed_subset(tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=4, seconds=0.2)
    m = load_manifest("esc10", root)
    assert set(m["label_name"]) == {"dog", "rooster", "rain"}  # sea_waves is not flagged esc10 here
    assert dict(m.drop_duplicates("label")[["label_name", "label"]].values) == {"dog": 0, "rooster": 1, "rain": 2}


def test_esc50_csv_missing_column_names_file_and_column(tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=1, seconds=0.2)
    csv = root / "meta" / "esc50.csv"
    pd.read_csv(csv).drop(columns=["fold"]).to_csv(csv, index=False)
    with pytest.raises(ManifestError, match=r"esc50\.csv is missing column\(s\) \['fold'\]"):
        load_manifest("esc50", root)


def test_esc50_csv_unknown_label_names_row(tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=1, seconds=0.2)
    csv = root / "meta" / "esc50.csv"
    frame = pd.read_csv(csv)
    frame.loc[2, "target"] = 77
    frame.to_csv(csv, index=False)
    with pytest.raises(ManifestError, match=r"column 'target' has invalid value '77' at data row 3 \(line 4\); expected an integer in 0..49"):
        load_manifest("esc50", root)


def test_us8k_manifest_paths_and_groups(tmp_path):
    root = make_us8k(tmp_path / "UrbanSound8K")
    m = load_manifest("urbansound8k", root)
    assert sorted(m["fold"].unique()) == list(range(1, 11))
    assert all(f"/fold{f}/" in p for f, p in zip(m["fold"], m["path"]))
    assert (m["error"] == "").all()
    assert set(m["sample_rate"]) == {48000, 11025, 22050, 44100}
    assert m.groupby("group")["fold"].nunique().eq(1).all()


def test_us8k_inconsistent_class_names_are_an_error(tmp_path):
    root = make_us8k(tmp_path / "UrbanSound8K")
    csv = root / "metadata" / "UrbanSound8K.csv"
    frame = pd.read_csv(csv)
    frame.loc[frame["classID"] == 3, "class"] = ["dog_bark", "dogbark"][: (frame["classID"] == 3).sum()]
    frame.to_csv(csv, index=False)
    with pytest.raises(ManifestError, match="classID 3 has several class names"):
        load_manifest("us8k", root)


def test_gtzan_stratified_80_20_is_deterministic_and_reports_bad_file(tmp_path):
    root = make_gtzan(tmp_path / "gtzan", per_genre=10, seconds=0.3, folder="genres_original")
    m1, m2 = load_manifest("gtzan", root), load_manifest("gtzan", root)
    pd.testing.assert_frame_equal(m1, m2)
    per_genre = m1.groupby("label_name")["split"].apply(lambda s: (s == "test").mean())
    assert per_genre.between(0.18, 0.28).all()  # stratified: ~20 % of every genre (jazz has 11 files)
    assert m1.loc[m1["clip_id"] == "jazz.00054", "error"].iloc[0].startswith("unreadable audio")
    other_seed = load_manifest("gtzan", root, seed=1)
    assert not other_seed["fold"].equals(m1["fold"])
    assert sorted(load_manifest("gtzan", root, folds=10)["fold"].unique()) == list(range(1, 11))


def test_gtzan_missing_genre_folders_is_clear(tmp_path):
    (tmp_path / "genres" / "blues").mkdir(parents=True)
    with pytest.raises(ManifestError, match="lacks genre folder"):
        load_manifest("gtzan", tmp_path)


def test_folder_layout_labels_sorted_and_folds_stratified(tmp_path, fsdd_root):
    import shutil

    for digit, name in ((3, "three"), (7, "seven")):
        (tmp_path / name).mkdir()
        for path in sorted((fsdd_root / "recordings").glob(f"{digit}_*_[0-9].wav"))[:10]:
            shutil.copy(path, tmp_path / name / path.name)
    m = load_manifest("folder", tmp_path, folds=5)
    assert dict(m.drop_duplicates("label")[["label_name", "label"]].values) == {"seven": 0, "three": 1}
    assert m.groupby(["fold", "label"]).size().eq(2).all()


def test_unknown_dataset_and_option_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="valid names: esc50, esc10, us8k, gtzan, fsdd, folder"):
        load_manifest("esc-100", tmp_path)
    with pytest.raises(ConfigError, match="dataset esc50 has no option"):
        load_manifest("esc50", tmp_path, folds=3)
