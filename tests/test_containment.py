"""Containment: metadata paths stay inside the dataset root (after symlinks) and are rejected unopened
otherwise; storage joins never climb out; metadata errors name the CSV lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from layouts import make_esc50, make_us8k
from orchestrator import storage
from orchestrator.datasets import common, load_manifest
from orchestrator.errors import ManifestError, StorageError


def add_rows(root: Path, names: list[str]) -> None:
    """Append ESC-50 rows (fold 1, target 0) naming the given files."""
    csv = root / "meta" / "esc50.csv"
    frame = pd.read_csv(csv)
    extra = [{"filename": n, "fold": 1, "target": 0, "category": "dog", "esc10": True, "src_file": f"x{i}",
              "take": "A"} for i, n in enumerate(names)]
    pd.concat([frame, pd.DataFrame(extra)], ignore_index=True).to_csv(csv, index=False)


@pytest.fixture
def probed(monkeypatch) -> list[str]:
    """Every path whose header the manifest builder opens."""
    seen: list[str] = []
    real = common.probe_audio

    def spy(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(common, "probe_audio", spy)
    return seen


def test_paths_outside_the_root_are_rejected_unopened(tmp_path, probed):
    root = make_esc50(tmp_path / "data" / "ESC-50", clips_per_fold=1, seconds=0.2)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    good = next((root / "audio").glob("*.wav"))
    shutil.copy(good, outside / "secret.wav")
    shutil.copy(good, outside / "absolute.wav")
    (root / "audio" / "link.wav").symlink_to(outside / "secret.wav")
    (root / "audio" / "inner.wav").symlink_to(good)  # a symlink that stays inside is fine
    add_rows(root, ["../../elsewhere/secret.wav", str(outside / "absolute.wav"), "/etc/passwd", "link.wav",
                    "inner.wav"])
    m = load_manifest("esc50", root).set_index("clip_id")
    for clip in ("secret", "absolute", "passwd", "link"):
        assert m.loc[clip, "error"].startswith("outside the dataset root"), clip
    assert m.loc["inner", "error"] == "" and m.loc["inner", "path"] == str(good.resolve())
    assert m.loc["link", "path"] == str(root.resolve() / "audio" / "link.wav")  # the target is not recorded
    assert probed and not any("/elsewhere/" in p or p == "/etc/passwd" for p in probed)
    assert (m.loc[["passwd"], "duration"].isna()).all()


def test_duplicate_clip_ids_name_the_csv_lines(tmp_path):
    root = make_esc50(tmp_path / "ESC-50", clips_per_fold=1, seconds=0.2)
    first = pd.read_csv(root / "meta" / "esc50.csv")["filename"][0]
    add_rows(root, [first])
    with pytest.raises(ManifestError, match=rf"duplicate clip ids in .*esc50\.csv: '{first[:-4]}' at lines 2, 7;"):
        load_manifest("esc50", root)


def test_header_only_csv_says_so(tmp_path):
    root = make_us8k(tmp_path / "us8k", clips_per_fold=1)
    csv = root / "metadata" / "UrbanSound8K.csv"
    csv.write_text(csv.read_text().splitlines()[0] + "\n")
    with pytest.raises(ManifestError, match="UrbanSound8K.csv has a header but no data rows"):
        load_manifest("us8k", root)


def test_storage_joins_never_leave_their_root(tmp_path):
    root = storage.resolve(tmp_path / "runs")
    assert root.join("plan", "trials/x").path == f"{tmp_path}/runs/plan/trials/x"
    for bad in ("../../escape", "..", "a/../../b", "./x"):
        with pytest.raises(StorageError, match="would leave"):
            root.join(bad)
    s3 = storage.Location(root.fs, "bucket/prefix", "s3://bucket/prefix")
    with pytest.raises(StorageError, match="would leave s3://bucket/prefix"):
        s3.join("trials", "../../other-bucket")


@pytest.mark.parametrize("name", ["../../escape", "a/b", "/abs", "..", ".hidden", "-flag", "", "x" * 201])
def test_component_names_are_single_folders(name):
    with pytest.raises(StorageError, match="must be a single folder name"):
        storage.check_component(name, "plan name")


def test_component_names_accept_trial_ids():
    for name in ("demo", "paper-smoke", "resnet18-fusion2-ce-fold1-seed0-1a2b3c4d", "esc50@v2"):
        assert storage.check_component(name, "name") == name


def test_a_root_of_only_outside_links_fails_before_ray_with_the_reason(fsdd_root, tmp_path):
    """Every file rejected by its header (here: links out of the root) is one clear error, raised before
    Ray or any output folder is started (it used to reach Ray Data with an empty manifest: a ValueError)."""
    from orchestrator.errors import RethinkError
    from orchestrator.preprocess import PreprocessRequest, preprocess

    recordings = tmp_path / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for wav in sorted((fsdd_root / "recordings").glob("*_0.wav"))[:3]:
        (recordings / wav.name).symlink_to(wav)
    with pytest.raises(RethinkError, match=r"every one of the 3 files under .* was rejected.*outside the dataset "
                                           r"root.*check --dataset and --root"):
        preprocess(PreprocessRequest("fsdd", str(tmp_path / "fsdd"), str(tmp_path / "out")))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
