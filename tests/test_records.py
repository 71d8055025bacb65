"""No silent drops: query and tables report every trial folder they cannot count (count, path, reason), tell
"not valid JSON" from "missing" from "permission denied", and ``query --strict`` exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import records_fixture as F
from analysis.collect import load_results
from analysis.records import describe_skipped
from orchestrator import storage
from orchestrator.cli import main


def three_trials(base: Path) -> tuple[Path, list[Path]]:
    """A results root with three finished trials; returns it and the trial folders (sorted)."""
    data = F.write_dataset(base / "ds")
    root = base / "results"
    for seed in range(3):
        F.write_trial(root / "trials", data, valid=[0.5, 0.6], test=[0.6, 0.7 + 0.1 * seed], seed=seed)
    return root, sorted((root / "trials").iterdir())


def test_truncated_summary_is_reported_not_dropped(tmp_path, capsys):
    root, folders = three_trials(tmp_path)
    summary = folders[1] / "summary.json"
    summary.write_text(summary.read_text()[:40])
    assert main(["query", "--results", str(root), "--group-by", "model", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["count"] == 2
    assert captured.err.splitlines()[0] == "1 trial folder(s) not counted (1 not valid JSON):"
    assert f"  {summary}: summary.json not valid JSON (" in captured.err
    assert main(["query", "--results", str(root), "--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith(f"error: --strict: 1 trial record(s) not counted: {summary}: summary.json not "
                                   "valid JSON")


def test_tables_reports_the_same_way_without_a_permissions_hint(tmp_path, capsys):
    root, folders = three_trials(tmp_path)
    (folders[0] / "config.json").write_text("{not json")
    assert main(["tables", "--results", str(root), "--out", str(tmp_path / "out"), "--no-svcca", "--no-ig"]) == 0
    err = capsys.readouterr().err
    assert "1 trial folder(s) not counted (1 not valid JSON):" in err
    assert f"{folders[0] / 'config.json'}: config.json not valid JSON (Expecting property name" in err
    assert "permissions" not in err
    report = (tmp_path / "out" / "report.md").read_text()
    assert "config.json not valid JSON" in report


def test_missing_forbidden_and_invalid_records_are_told_apart(tmp_path, monkeypatch):
    root, folders = three_trials(tmp_path)
    (folders[0] / "config.json").unlink()
    config = json.loads((folders[1] / "config.json").read_text())
    (folders[1] / "config.json").write_text(json.dumps(config | {"trial_id": "../../etc"}))
    real_read = storage.read_json
    forbidden = storage.resolve(folders[2] / "summary.json")

    def read_json(loc):  # root reads every file, so a refusal is simulated at the filesystem call
        if loc.uri == forbidden.uri:
            return storage.guarded(loc, lambda: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
        return real_read(loc)

    monkeypatch.setattr(storage, "read_json", read_json)
    results = load_results(str(root), write=False)
    assert len(results) == 0
    kinds = {s["trial_id"]: s["kind"] for s in results.attrs["skipped"]}
    assert kinds == {folders[0].name: "missing", folders[1].name: "invalid record",
                     folders[2].name: "permission denied"}
    lines = describe_skipped(results.attrs["skipped"])
    assert lines[0] == "3 trial folder(s) not counted (1 missing, 1 permission denied, 1 invalid record):"
    assert f"  {folders[1]}: config.json trial_id '../../etc' is not a single folder name" in lines
    assert f"  {forbidden.uri}: summary.json permission denied" in lines


def test_read_json_errors_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(storage.RecordError, match=r"bad\.json: not valid JSON \(Expecting .*: line 1 column 9\); "
                                                  "the file is truncated or corrupt") as error:
        storage.read_json(storage.resolve(bad))
    assert error.value.kind == "not valid JSON" and "permissions" not in str(error.value)
    with pytest.raises(storage.RecordError, match="nope.json: missing") as error:
        storage.read_json(storage.resolve(tmp_path / "nope.json"))
    assert error.value.kind == "missing"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_metric_makes_the_record_invalid_and_out_of_every_group(tmp_path, capsys, value):
    root, folders = three_trials(tmp_path)  # test accuracies 0.7, 0.8, 0.9 at the last epoch
    path = folders[1] / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps(summary | {"last_epoch": value}))  # Python's json writes NaN / Infinity
    spelled = json.dumps(value)
    assert spelled in path.read_text()
    assert main(["query", "--results", str(root), "--group-by", "model", "--metric", "last_epoch",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    (group,) = json.loads(captured.out)
    kept = [json.loads((f / "summary.json").read_text())["last_epoch"] for f in (folders[0], folders[2])]
    assert group["count"] == 2 and group["mean"] == pytest.approx(sum(kept) / 2)
    assert captured.err.splitlines()[0] == "1 trial folder(s) not counted (1 invalid record):"
    assert (f"  {folders[1]}: summary.json holds non-finite last_epoch {spelled}: every metric must be a finite "
            "number") in captured.err
    results = load_results(str(root), write=False)
    assert len(results) == 2 and folders[1].name not in set(results["trial_id"])
    assert main(["query", "--results", str(root), "--strict"]) == 2
    assert f"last_epoch {spelled}" in capsys.readouterr().err


def test_every_non_finite_number_is_named():
    from analysis.records import non_finite

    summary = {"a": 1.0, "b": float("nan"), "c": {"d": [0.5, float("-inf")]}, "e": None, "f": True}
    assert [(k, json.dumps(v)) for k, v in non_finite(summary)] == [("b", "NaN"), ("c.d[1]", "-Infinity")]
