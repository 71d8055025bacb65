"""Provenance: what a process records about the code, libraries and machine that produced a trial, without
failing where git is absent, and tables that never pool trials of different code versions.

(A real trial's summary.json is checked in tests/test_trial.py's two-epoch trial.)

Two code versions split the hand-worked sweep of tests/test_analysis_tables.py by seed: seed 0's trials were
finished by code A, seed 1's by code B, so each version's rows are its one seed over folds 1-2:

    pretrained valid_selected   A: .90 .70 -> 80.00    B: .85 .90 -> 87.50
    random     valid_selected   A and B: .55 .55 -> 55.00 (pretrained − random: A +25.00, B +32.50)
Pooled, pretrained would read 83.75 (tests/test_analysis_tables.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import records_fixture as F
from analysis.collect import load_predictions, load_results
from analysis.ensembles import ensemble_per_fold, ensemble_summary
from analysis.tables import table_ensembles, table_pretrained_vs_random, table_published
from orchestrator import provenance, storage
from orchestrator.trial import LocalSession, _write_running
from orchestrator.training import TrialState

A, B = "0.1.0+aaaaaaaaaa", "0.1.0+bbbbbbbbbb"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_environment_has_every_field_with_its_type():
    env = provenance.environment()
    assert re.fullmatch(r"\S+\+[0-9a-f]{10}", env["code_version"]) and len(env["source_hash"]) == 64
    assert env["code_version"] == f"{env['project']}+{env['source_hash'][:10]}"
    for key in ("project", "python", "torch", "torchvision", "timm", "ray", "host"):
        assert isinstance(env[key], str) and env[key], key
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
    assert env["git_dirty"] in (None, True, False) and (env["git_dirty"] is None) == (env["git_commit"] is None)
    assert env["cuda"] is None or isinstance(env["cuda"], str)
    assert env["cudnn"] is None or isinstance(env["cudnn"], int)
    record = provenance.trial_provenance("cpu", "2026-01-01T00:00:00Z")
    assert record["device"].startswith("cpu") and record["first_started_at"] == record["started_at"]
    assert re.fullmatch(TIME, record["finished_at"]) and json.loads(json.dumps(record)) == record


def test_gathered_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(provenance, "_git", lambda directory, *args: calls.append(args))
    provenance.environment.cache_clear()
    try:
        provenance.trial_provenance("cpu", provenance.utc_now())
        provenance.trial_provenance("cpu", provenance.utc_now())
    finally:
        provenance.environment.cache_clear()
    assert len(calls) == 1  # a Tune actor running many trials asks git once (here: no checkout, so no status)


def test_source_hash_follows_the_code_not_the_folder(tmp_path):
    for where in ("checkout/pkg", "site-packages/pkg"):
        (tmp_path / where / "sub").mkdir(parents=True)
        (tmp_path / where / "a.py").write_text("x = 1\n")
        (tmp_path / where / "sub" / "b.py").write_text("y = 2\n")
    checkout, installed = tmp_path / "checkout/pkg", tmp_path / "site-packages/pkg"
    (checkout / "notes.txt").write_text("not code")
    assert provenance.source_hash(checkout) == provenance.source_hash(installed)  # same code: pools together
    (installed / "sub" / "b.py").write_text("y = 3\n")
    assert provenance.source_hash(checkout) != provenance.source_hash(installed)


def test_git_absent_or_not_a_checkout_gives_null_fields(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    assert provenance.git_state(package) == {"commit": None, "dirty": None}  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git on PATH
    assert provenance.git_state(provenance.PACKAGE_DIR) == {"commit": None, "dirty": None}
    provenance.environment.cache_clear()
    try:
        env = provenance.environment()
    finally:
        provenance.environment.cache_clear()
    assert env["git_commit"] is None and env["git_dirty"] is None and env["code_version"].count("+") == 1


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_and_dirty_only_for_the_package_at_a_checkouts_top(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    for package in ("pkg", "venv/lib/site-packages/pkg"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "a.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "pkg")
    git("commit", "-qm", "c")
    state = provenance.git_state(tmp_path / "pkg")
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and state["dirty"] is False
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path / "pkg")["dirty"] is True
    # a copy installed in a virtual environment inside another checkout is not that checkout's commit
    assert provenance.git_state(tmp_path / "venv/lib/site-packages/pkg") == {"commit": None, "dirty": None}


def test_a_resumed_trial_keeps_its_first_start(tmp_path):
    records = storage.resolve(tmp_path / "trial")
    assert _write_running(records, TrialState(), LocalSession(), "2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    assert _write_running(records, TrialState(), LocalSession(), "2026-01-02T00:00:00Z") == "2026-01-01T00:00:00Z"
    running = json.loads((tmp_path / "trial" / "running.json").read_text())
    assert (running["started"], running["first_started"]) == ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")


def test_provenance_changes_neither_trial_id_nor_recipe(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    ids = [F.write_trial(tmp_path / name / "trials", data, valid=[.5], test=[.6], provenance=given)
           for name, given in (("a", {"code_version": A}), ("b", {"code_version": B}), ("old", None))]
    assert len(set(ids)) == 1
    configs = {(tmp_path / name / "trials" / ids[0] / "config.json").read_text() for name in ("a", "b", "old")}
    assert len(configs) == 1 and "provenance" not in json.loads(configs.pop())
    rows = [load_results(str(tmp_path / name), write=False).iloc[0] for name in ("a", "b", "old")]
    assert len({r["recipe"] for r in rows}) == 1
    assert [r["code_version"] for r in rows] == [A, B, "unknown"]
    assert rows[0]["host"] == provenance.environment()["host"] and rows[2]["host"] is None


def split_sweep(root: Path, data: str) -> Path:
    """tests/test_analysis_tables.py's sweep, seed 0 finished by code A, seed 1 by code B."""
    for (seed, fold), (valid, test) in F.PRETRAINED.items():
        given = {"code_version": (A, B)[seed]}
        F.write_trial(root / "trials", data, valid=valid, test=test, seed=seed, fold=fold, provenance=given)
        F.write_trial(root / "trials", data, valid=[.5, .6, .7], test=[.50, .60, .55], seed=seed, fold=fold,
                      init="random", provenance=given)
    return root


def test_tables_split_by_code_version_and_never_pool(tmp_path):
    data = F.write_dataset(tmp_path / "esc50-paper3ch-hash")
    root = str(split_sweep(tmp_path / "results", data))
    results = load_results(root, write=False)
    ensembles = ensemble_summary(ensemble_per_fold(load_predictions(root, results)))
    table = table_pretrained_vs_random(results)
    shown = {(r["code_version"], r["init"]): r["valid_selected"] for r in table.display.to_dict("records")}
    assert shown[(A, "pretrained")].startswith("80.00 ± ") and shown[(B, "pretrained")].startswith("87.50 ± ")
    assert shown[(A, "random")].startswith("55.00 ± ") and shown[(B, "random")].startswith("55.00 ± ")
    assert shown[(A, "pretrained − random")].startswith("+25.00") and shown[(B, "pretrained − random")].startswith(
        "+32.50")
    assert len(table.display) == 6  # two versions x (pretrained, random, difference): nothing pooled
    assert [c.label for c in table.comparisons] == [
        f"Table I, ESC-50 densenet201 nested code {v}: pretrained − random" for v in (A, B)]
    # one seed per version, so each "ensemble" is its one member (pooled: seed 1 decides, 87.50 for both)
    single = {(r["code_version"], r["init"]): r for r in table_ensembles(results, ensembles).display.to_dict("records")}
    assert len(single) == 4 and {r["seeds"] for r in single.values()} == {"1"}
    assert single[(A, "pretrained")]["ensemble valid_selected"].startswith("80.00 ± ")
    ours = table_published(results, ensembles).display["method"]
    assert {m for m in ours if "pretrained" in m} == {f"densenet201 pretrained · code {v}, {kind}"
                                                        for v in (A, B) for kind in ("single model", "1-seed ensemble")}


def test_one_code_version_adds_no_column_and_old_records_pool_as_unknown(tmp_path):
    data = F.write_dataset(tmp_path / "ds")
    for seed in range(2):
        F.write_trial(tmp_path / "results" / "trials", data, valid=[.5], test=[.6 + .1 * seed], seed=seed,
                      provenance=None)
    results = load_results(str(tmp_path / "results"), write=False)
    assert set(results["code_version"]) == {"unknown"} and results["git_dirty"].isna().all()
    display = table_pretrained_vs_random(results).display
    assert "code_version" not in display.columns and len(display) == 1
    assert display["runs"].iloc[0] == "2 (2 seeds × 1 fold)"
