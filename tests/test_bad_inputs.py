"""Bad inputs through the CLI (files, plans, queries, storage, Ray). The rule: each ends in one clear
``error:`` line with exit status 2, runs no code it was handed, and writes nothing outside the output folder.
No Ray is started (the Ray start failure is simulated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import yaml

import records_fixture as F
from layouts import make_esc50
from orchestrator.cli import main

REPO = Path(__file__).resolve().parent.parent
DEMO = yaml.safe_load((REPO / "plans" / "demo.yaml").read_text())
PAYLOAD = "@pd.io.common.os.system('id > pwned.txt') == 0 or seed >= 0"


def results(base: Path, truncate: bool = False) -> str:
    """A results root with two finished trials (one summary.json truncated if asked)."""
    data = F.write_dataset(base / "ds")
    for seed in (0, 1):
        F.write_trial(base / "results" / "trials", data, valid=[0.5], test=[0.6], seed=seed)
    if truncate:
        summary = sorted((base / "results" / "trials").glob("*/summary.json"))[0]
        summary.write_text(summary.read_text()[:30])
    return str(base / "results")


def plan(base: Path, out: Path, text: str | None = None, **patch) -> str:
    """The demo plan writing to ``out``, with ``patch`` applied (or raw YAML ``text``)."""
    fsdd = DEMO["datasets"]["fsdd"] | {"preprocess": DEMO["datasets"]["fsdd"]["preprocess"]
                                       | {"root": str(REPO / "data" / "fsdd-mini")}}
    path = base / "plan.yaml"
    path.write_text(text or yaml.safe_dump(DEMO | {"storage": str(out), "datasets": {"fsdd": fsdd}} | patch))
    return str(path)


def esc50(base: Path, *names: str, header_only: bool = False) -> str:
    """An ESC-50 layout with extra CSV rows naming ``names`` (or a header-only CSV)."""
    root = make_esc50(base / "ESC-50", clips_per_fold=1, seconds=0.2)
    csv = root / "meta" / "esc50.csv"
    frame = pd.read_csv(csv)
    extra = pd.DataFrame([{"filename": n, "fold": 1, "target": 0, "category": "dog", "esc10": True,
                           "src_file": f"x{i}", "take": "A"} for i, n in enumerate(names)])
    (frame.iloc[:0] if header_only else pd.concat([frame, extra], ignore_index=True)).to_csv(csv, index=False)
    return str(root)


def duplicate_dataset_plan(base: Path, out: Path) -> list[str]:
    text = Path(plan(base, out)).read_text()
    return ["sweep", plan(base, out, text.replace("datasets:\n", "datasets:\n  fsdd:\n    data: /nowhere\n", 1))]


CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "query runs code": (lambda b, o: ["query", "--results", results(b), "--where", PAYLOAD],
                        "--where \"@pd.io.common.os.system"),
    "query dunder escape": (lambda b, o: ["query", "--results", results(b), "--where",
                                          "seed.__class__.__init__.__globals__ == 0"], "is not allowed here"),
    "query truncated record --strict": (lambda b, o: ["query", "--results", results(b, truncate=True), "--strict"],
                                        "summary.json not valid JSON"),
    "plan name escapes": (lambda b, o: ["sweep", plan(b, o, name="../../escape")],
                          "plan.name '../../escape' must be a single folder name"),
    "unknown model": (lambda b, o: ["sweep", plan(b, o, models=["resnet9"])], "plan.models[0]: unknown model"),
    "bad init mode": (lambda b, o: ["sweep", plan(b, o, inits=["fusion:9"])], "plan.inits[0]: init mode"),
    "empty seeds": (lambda b, o: ["sweep", plan(b, o, seeds=[])], "plan.seeds must be a non-empty list"),
    "empty models": (lambda b, o: ["sweep", plan(b, o, models=[])], "plan.models must be a non-empty list"),
    "fold not in data": (lambda b, o: ["sweep", plan(b, o, datasets={"fsdd": {
        "preprocess": {"dataset": "fsdd", "root": str(REPO / "data" / "fsdd-mini")}, "folds": [9]}})],
        "plan.datasets.fsdd.folds[0]: fold 9"),
    "repeated dataset key": (duplicate_dataset_plan, "key 'fsdd' repeated at line"),
    "epochs zero": (lambda b, o: ["sweep", plan(b, o, optim={"epochs": 0})], "plan.optim.epochs must be >= 1"),
    "missing plan": (lambda b, o: ["sweep", str(b / "nope.yaml")], "plan file not found"),
    "csv climbs out --strict": (lambda b, o: ["preprocess", "--dataset", "esc50", "--strict", "--out", str(o),
                                              "--root", esc50(b, "../../secret.wav", "/etc/passwd")],
                                "outside the dataset root"),
    "header-only csv": (lambda b, o: ["preprocess", "--dataset", "esc50", "--out", str(o), "--root",
                                      esc50(b, header_only=True)], "has a header but no data rows"),
    "duplicate clip ids": (lambda b, o: ["preprocess", "--dataset", "esc50", "--out", str(o), "--root",
                                         esc50(b, "1-1010-A-0.wav")], "duplicate clip ids in"),
    "max duration zero": (lambda b, o: ["preprocess", "--dataset", "fsdd", "--root", str(REPO / "data" / "fsdd-mini"),
                                        "--out", str(o), "--max-duration", "0"], "--max-duration must be > 0"),
    "unknown model for train": (lambda b, o: ["train", "--data", F.write_dataset(b / "ds"), "--model", "resnet9",
                                              "--fold", "1", "--out", str(o)], "unknown model 'resnet9'"),
}


def snapshot(folder: Path) -> dict[str, float | None]:
    """Every path below ``folder``: files with their mtime, folders with None (only new ones count)."""
    return {str(p): (None if p.is_dir() else p.stat().st_mtime) for p in folder.rglob("*")}


@pytest.fixture
def failing_ray(monkeypatch):
    """Ray that cannot start: the one case that reaches ensure_ray fails as a loaded machine would."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)

    def init(**kwargs):
        raise RuntimeError("The current node timed out during startup.\nTraceback (most recent call last): ...")
    monkeypatch.setattr(ray, "init", init)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_exit_2_and_writes_nothing_outside(name, tmp_path, monkeypatch, capsys,
                                                                    failing_ray):
    build, expected = CASES[name]
    inputs, out, cwd = tmp_path / "inputs", tmp_path / "box" / "out", tmp_path / "cwd"
    for folder in (inputs, out.parent, cwd):
        folder.mkdir(parents=True)
    argv = build(inputs, out)
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in err
    changed = {p for p, t in snapshot(tmp_path).items() if p not in before or before[p] != t}
    assert all(p.startswith(str(out)) for p in changed), sorted(changed)
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert list(cwd.iterdir()) == []  # e.g. no pwned.txt


def test_ray_start_failure_is_one_line(tmp_path, monkeypatch, capsys, failing_ray):
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    code = main(["preprocess", "--dataset", "fsdd", "--root", str(REPO / "data" / "fsdd-mini"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: could not start a local Ray instance") and "ray stop" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_json_summary_of_good_query_still_works(tmp_path, capsys):
    assert main(["query", "--results", results(tmp_path), "--where", "0 <= seed < 2", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
