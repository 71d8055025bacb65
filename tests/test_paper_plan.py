"""plans/paper.yaml --smoke on generated ESC-50 / US8K / GTZAN layouts: the paper split and the augmented
draw on all three datasets, through the real sweep (preprocessing with augmented copies, Tune, records).

CI runs the paper plan with one of its three backbones (ResNet-50) and without the DenseNet-201 ablations to
keep the suite's time; the whole plan (3 backbones, ablations) runs with the same command and is reported
in the README's "Protocols" section."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from layouts import make_paper_plan
from orchestrator.cli import main


def test_paper_plan_smoke_runs_all_three_datasets_with_the_paper_split_and_augmentation(ray_local, tmp_path, capsys):
    plan = make_paper_plan(tmp_path, models=("resnet50",), ablations=False)
    code = main(["sweep", str(plan), "--smoke", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["trials"] == summary["finished"] == 6 and summary["failed"] == []  # 3 x 2 inits
    root = tmp_path / "runs" / "paper-smoke"
    cards = [json.loads(path.read_text()) for path in (root / "datasets").glob("*/dataset.json")]
    assert sorted(card["name"] for card in cards) == ["esc50", "gtzan", "us8k"]
    assert all(card["counts"]["augmented"] == card["counts"]["originals"] > 0 for card in cards)  # smoke: 1 copy
    by_version = {card["version"]: card for card in cards}
    trained = set()
    for trial in (root / "trials").iterdir():
        config = json.loads((trial / "config.json").read_text())
        card = by_version[config["dataset"]["version"]]
        trained.add(card["name"])
        folds, test = [int(f) for f in card["folds"]], config["folds"]["test"]
        assert config["trial"]["split"] == "paper" and config["trial"]["augmented"] == "draw"
        assert config["folds"] == {"train": [f for f in folds if f not in test], "valid": [], "test": [1]}
        epochs = pq.read_table(trial / "epochs.parquet").to_pandas()
        # one epoch of the smoke cap's 64 clips (or fewer) plus one augmented draw of each
        assert epochs["train_samples"].iloc[0] % 2 == 0 and epochs["valid_acc"].isna().all()
        summary = json.loads((trial / "summary.json").read_text())
        assert "valid_selected" not in summary and summary["best_epoch"] == summary["last_epoch"]
    assert trained == {"esc50", "us8k", "gtzan"}
