"""plans/soundclr.yaml and plans/soundclr-us8k.yaml --smoke on generated ESC-50 / US8K layouts, through the
real sweep: the shipped plans with only their roots and storage pointed at the generated data. Each trial
runs SoundCLR's protocol: its feature recipe at fixed clip lengths, unit-norm embeddings, every training
sample augmented (N per epoch), train on every fold but the test fold."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torchvision
import yaml

from layouts import make_esc50, make_us8k
from orchestrator.cli import main

PLANS = Path(__file__).resolve().parent.parent / "plans"


def local_copy(name: str, roots: dict[str, Path], weights: Path, out: Path) -> Path:
    """The shipped plan ``name`` runnable offline, as ``layouts.make_paper_plan`` makes paper.yaml: each
    dataset's root replaced, ImageNet-shaped ResNet-50 weights of random values, CPU resources, results
    under ``out``/runs. Everything else is the shipped plan's."""
    plan = yaml.safe_load((PLANS / f"{name}.yaml").read_text())
    for dataset in plan["datasets"].values():
        dataset["preprocess"]["root"] = str(roots[dataset["preprocess"]["dataset"]])
    plan.update(weights={"resnet50": str(weights)}, download_weights=False, storage=str(out / "runs"),
                resources={"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0})
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_soundclr_plans_smoke_run_the_reference_protocol(ray_local, tmp_path, capsys):
    esc = make_esc50(tmp_path / "esc50")
    roots = {"esc10": esc, "esc50": esc, "us8k": make_us8k(tmp_path / "us8k")}
    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    for name, trials in (("soundclr", 4), ("soundclr-us8k", 2)):  # datasets x (ce, hybrid)
        code = main(["sweep", str(local_copy(name, roots, weights, tmp_path)), "--smoke", "--json"])
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0 and summary["trials"] == summary["finished"] == trials and summary["failed"] == []
        root = tmp_path / "runs" / f"{name}-smoke"
        cards = {}
        for path in (root / "datasets").glob("*/dataset.json"):
            card = json.loads(path.read_text())
            cards[card["version"]] = card
        for card in cards.values():
            features = card["features"]
            assert features["recipe"] == "soundclr" and features["clip_offset"] == "random"
            assert features["sample_rate"] == 44100 and card["spec"]["shape"] == [1, 32, 32]  # smoke: 32 x 32
        for trial in (root / "trials").iterdir():
            config = json.loads((trial / "config.json").read_text())
            card = cards[config["dataset"]["version"]]
            assert (config["trial"]["split"], config["trial"]["augmented"]) == ("paper", "every")
            assert config["trial"]["loss"]["l2_embedding"] is True
            assert config["folds"]["valid"] == [] and config["folds"]["test"] == [1]
            train_folds = config["folds"]["train"]
            originals = sum(card["counts"]["per_fold"][str(f)] for f in train_folds)
            epochs = pq.read_table(trial / "epochs.parquet").to_pandas()
            assert epochs["train_samples"].iloc[0] == min(originals, 64)  # N samples, not 2N as under draw
