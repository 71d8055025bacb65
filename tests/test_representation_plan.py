"""plans/representations.yaml --smoke on the bundled FSDD subset: four 1-channel feature datasets of the same
clips, the SoundNet-like CNN from random init on each, and the report's representation table from them.

The plan file runs as it is, on the first 2 of the 10 takes of every (digit, speaker) of the bundled data (120
clips, all 6 speaker folds): four preprocessing runs of all 600 clips would double the test's time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from orchestrator.cli import main

PLAN = Path(__file__).resolve().parent.parent / "plans" / "representations.yaml"


def two_takes(fsdd_root: Path, out: Path) -> Path:
    """A copy of the bundled FSDD layout holding takes 0 and 1 of every (digit, speaker) (copies: a link out
    of the dataset root is rejected, by design)."""
    recordings = out / "recordings"
    recordings.mkdir(parents=True)
    for wav in (fsdd_root / "recordings").glob("*_[01].wav"):
        shutil.copy(wav, recordings / wav.name)
    return out


def test_representation_plan_smoke_trains_soundnet8_on_four_features(ray_local, fsdd_root, tmp_path, capsys):
    plan = tmp_path / "representations.yaml"
    text = PLAN.read_text()
    assert text.count("root: ../data/fsdd-mini") == 4
    plan.write_text(text.replace("../data/fsdd-mini", str(two_takes(fsdd_root, tmp_path / "fsdd"))))
    assert main(["sweep", str(plan), "--smoke", "--storage", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trials"] == summary["finished"] == 4 and summary["failed"] == []
    root = tmp_path / "representations-smoke"
    cards = [json.loads(p.read_text()) for p in (root / "datasets").glob("*/dataset.json")]
    assert sorted(c["features"]["kind"] for c in cards) == ["gammatone", "logmel", "logspec", "mfcc"]
    assert {tuple(c["spec"]["shape"]) for c in cards} == {(1, 32, 32)}
    assert {c["counts"]["originals"] for c in cards} == {120} and len({c["version"] for c in cards}) == 4
    assert {len(c["input_stats"]) for c in cards} == {6}
    assert sorted(p.name.split("-")[1] for p in (root / "datasets").iterdir()) == [
        "gammatone", "logmel", "logspec", "mfcc"]  # fsdd-<kind>-1ch-<hash>
    for trial in (root / "trials").iterdir():
        config = json.loads((trial / "config.json").read_text())
        assert config["trial"]["model"] == "soundnet8" and config["dataset"]["channels"] == 1

    out = tmp_path / "report"
    assert main(["tables", "--results", str(root), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    markdown = (out / "tables" / "table_representations.md").read_text()
    assert "Input representation vs accuracy" in markdown and markdown.count("; too few pairs for an interval)") == 3
    numbers = pd.read_csv(out / "tables" / "table_representations.csv")
    assert numbers["features"].tolist() == ["logspec 1ch", "logmel 1ch", "mfcc 1ch", "gammatone 1ch"]
    # one (fold, seed) run each: every other feature paired with log-mel once (no interval from one pair)
    assert numbers["vs_logmel_pairs"].fillna(0).tolist() == [1, 0, 1, 1]
    assert numbers["versus"].fillna("").tolist() == ["logmel 1ch", "", "logmel 1ch", "logmel 1ch"]
    assert numbers["valid_selected_mean"].between(0, 100).all()
