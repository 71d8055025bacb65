"""What sweep tests share: the repository root, a small real plan on the bundled FSDD subset, and the trial
summaries a sweep left under its results root."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from layouts import seed_dataset

REPO = Path(__file__).resolve().parent.parent


def write_plan(tmp_path: Path, folds=(2,), dataset: str | None = None, **overrides) -> Path:
    """A small real plan on the bundled FSDD subset (6 speaker folds; 32 x 32 inputs, 64 training clips per
    epoch), testing ``folds``. ``dataset``: the session's ``tiny_fsdd`` version, copied into the plan's
    storage so the sweep reuses it (tests that are not about preprocessing skip featurizing it again)."""
    raw = {
        "name": "t", "storage": str(tmp_path / "store"),
        "datasets": {"fsdd": {"preprocess": {"dataset": "fsdd", "root": str(REPO / "data" / "fsdd-mini"),
                                             "features": {"height": 32, "width": 32}}, "folds": list(folds)}},
        "models": ["efficientnet_lite0"], "inits": ["pretrained", "random"], "seeds": [0],
        "optim": {"epochs": 2, "lr": 0.001, "batch_size": 16}, "max_train_clips": 64,
        "max_concurrent_trials": 1, "max_failures": 2,
    } | overrides
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    if dataset is not None:
        seed_dataset(dataset, Path(raw["storage"]), raw["name"])
    return path


def summaries(root: Path) -> dict[str, dict]:
    """``summary.json`` of every finished trial under the results root ``root``, by trial id."""
    return {p.parent.name: json.loads(p.read_text()) for p in (root / "trials").glob("*/summary.json")}
