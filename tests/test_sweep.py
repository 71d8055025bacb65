"""Sweeps on Ray Tune: the demo plan in smoke mode (and its progress display), a crashing trial, a killed
driver, phase-1 search."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from faults import injected
from layouts import seed_dataset
from progress_display import EPOCH_LINE, RAY_DATA_OUTPUT, TUNE_OUTPUT, ray_data_progress_shown, shown
from sweep_helpers import REPO, summaries, write_plan

from orchestrator.cli import main
from orchestrator.config import OptimConfig, from_dict, to_dict
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan, expand_grid, load_plan
from orchestrator.sweep import plan_root, prepare_datasets, run_sweep
from orchestrator.trial import trial_id


@contextlib.contextmanager
def captured_output() -> Iterator[dict[str, str]]:
    """What this process writes to stdout and stderr in the block, at the Python and the file-descriptor level
    (what ``capfd`` sees), for a fixture wider than one test: ``["out"]`` and ``["err"]`` once it ends."""
    result: dict[str, str] = {}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        files = {1: out, 2: err}
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in files}
        for fd, file in files.items():
            os.dup2(file.fileno(), fd)
        text = {fd: open(fd, "w", buffering=1, closefd=False) for fd in files}
        try:
            with contextlib.redirect_stdout(text[1]), contextlib.redirect_stderr(text[2]):
                yield result
        finally:
            for fd in files:
                text[fd].flush()
                os.dup2(saved[fd], fd)
                os.close(saved[fd])
            for name, file in (("out", out), ("err", err)):
                file.seek(0)
                result[name] = file.read().decode(errors="replace")


@pytest.fixture(scope="module")
def demo_smoke(ray_local, tmp_path_factory) -> tuple[int, str, str, Path]:
    """``rethink-audio sweep plans/demo.yaml --smoke --json`` as a user runs it (Ray Data's progress display
    on), once for the tests below: (exit status, stdout, stderr, its results root). They only read the
    root or write beside it (the report)."""
    storage = tmp_path_factory.mktemp("demo")
    with ray_data_progress_shown(), captured_output() as output:
        code = main(["sweep", str(REPO / "plans" / "demo.yaml"), "--smoke", "--storage", str(storage), "--json"])
    return code, output["out"], output["err"], storage / "demo-smoke"


def test_demo_plan_smoke_end_to_end(demo_smoke, capsys):
    code, out, err, root = demo_smoke
    summary = json.loads(out)  # --json: stdout is the summary alone, progress went to stderr
    assert code == 0 and summary["trials"] == summary["finished"] == 2 and summary["failed"] == []
    assert "[sweep] 1/2 trials done (0 failed)" in err and "[sweep] 2/2 trials done (0 failed)" in err
    assert "ETA 0.0 min" in err  # nothing left after the last trial
    done = summaries(root)
    assert sorted(s["epochs"] for s in done.values()) == [1, 1]
    assert {name.split("-")[1] for name in done} == {"pretrained", "random"}
    assert json.loads((root / "plan.json").read_text())["max_folds"] == 1
    assert json.loads((root / "search" / "best.json").read_text())["source"].startswith("plan")
    for name in done:
        assert (root / "trials" / name / "predictions.parquet").exists()
    # `rethink-audio demo --smoke` is the same plan: it reuses these trials and goes on to the report
    assert main(["demo", "--smoke", "--out", str(root.parent)]) == 0
    out = capsys.readouterr().out
    assert "[sweep] phase 2: all 2 trials already finished" in out
    assert "**Table I. Pretrained (ImageNet) vs random" in out and "**Table II. Single model vs deep" in out
    assert summaries(root) == done  # nothing retrained
    report = root / "report"
    assert "Integrated Gradients" in (report / "report.md").read_text() and (report / "report.html").exists()
    for figure in ("fig2a_svcca.png", "fig3_integrated_gradients_fsdd.png"):
        assert (report / "figures" / figure).stat().st_size > 1000


def test_sweep_is_quiet_by_default_verbose_shows_tune_and_the_report_says_each_stage(demo_smoke, tmp_path, capfd):
    from analysis.report import build_report

    code, out, err, root = demo_smoke
    # --json: stdout is the summary line and nothing else; every progress line went to stderr
    summary = json.loads(out)
    assert code == 0 and summary["finished"] == 2 and "\n" not in out.strip()
    assert "[preprocess] fsdd: featurizing: 600/600 clips (100%)" in err
    assert len(EPOCH_LINE.findall(err)) == 2  # one line per trial epoch (smoke: 1 epoch, 2 trials)
    assert "[sweep] 2/2 trials done (0 failed)" in err
    assert shown(out + err, TUNE_OUTPUT) == [] and shown(out + err, RAY_DATA_OUTPUT) == []

    # the tables stage of that sweep: one line per stage, one per network rebuilt
    lines: list[str] = []
    build_report(str(root), str(tmp_path / "report"), progress=lines.append, svcca_clips=16, max_clips=2,
                 ig_steps=4)
    assert lines[0].startswith("[report] scanning trial records under ")
    assert "[report] ensembles and tables (2 finished trials)" in lines
    assert [line.split(":")[0] for line in lines if "SVCCA" in line or "Integrated" in line] == [
        "[report] SVCCA 1/2", "[report] SVCCA 2/2", "[report] Integrated Gradients 1/1"]
    assert lines[-1].startswith("[report] writing report.md and report.html")

    # --verbose: the same trials again, in a storage of their own that holds only the dataset (the sweep
    # reuses it), with Tune's own output; the suite's Ray streams no worker logs and cannot start to, which
    # the sweep says instead of pretending
    (dataset,) = (root / "datasets").iterdir()
    seed_dataset(str(dataset), tmp_path, "demo-smoke")
    capfd.readouterr()
    plan = str(REPO / "plans" / "demo.yaml")
    with ray_data_progress_shown():
        assert main(["sweep", plan, "--smoke", "--storage", str(tmp_path), "--verbose", "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["finished"] == 2
    # Tune's status table, in its new boxed layout or (after an earlier quiet sweep in the same process, which
    # switched Tune to its legacy output for a while) its legacy one: either way the table is shown
    assert "Trial name" in err and ("╭" in err or "+--" in err)
    assert "note: Ray was already initialised in this process with worker logs kept in its session logs" in err
    assert "[sweep] 2/2 trials done (0 failed)" in err and not EPOCH_LINE.search(err)  # Tune reports epochs


def test_retries_resume_from_checkpoints_and_a_deterministic_crash_costs_max_failures_plus_one(tiny_fsdd, tmp_path):
    plan = load_plan(write_plan(tmp_path, seeds=[0, 1], checkpoint_every=1, dataset=tiny_fsdd))
    uris, folds = prepare_datasets(plan, plan_root(plan))
    grid = {(t.init, t.seed): t for t in expand_grid(plan, uris, folds)}
    crashes_once, always_fails = grid["random", 0], grid["pretrained", 1]
    faults = {trial_id(crashes_once): {"after_epoch": 1, "log": str(tmp_path / "once.log")},
              trial_id(always_fails): {"after_epoch": 1, "log": str(tmp_path / "always.log"), "times": 99}}
    with injected(faults):  # in the Tune actors, through the trial's test seam
        result = run_sweep(plan)
    assert (tmp_path / "once.log").read_text().splitlines() == ["epoch 1"]  # the fault really happened
    # one retry budget per trial, owned by Tune (max_failures 2): 3 attempts, not (2 + 1)^2
    assert len((tmp_path / "always.log").read_text().splitlines()) == plan.max_failures + 1
    assert result.failed == [trial_id(always_fails)] and result.finished == 3 and result.trials == 4
    done = summaries(Path(result.root))
    assert done[trial_id(crashes_once)]["resumed_at_epoch"] == 2  # restarted from the epoch-1 checkpoint
    epochs = pq.read_table(Path(result.root) / "trials" / trial_id(crashes_once) / "epochs.parquet").to_pandas()
    assert epochs["epoch"].tolist() == [1, 2]
    assert [s["resumed_at_epoch"] for n, s in done.items() if n != trial_id(crashes_once)] == [None, None]


def test_resume_applies_an_edited_plan(tiny_fsdd, tmp_path, capsys):
    plan = load_plan(write_plan(tmp_path, optim={"epochs": 1, "lr": 0.001, "batch_size": 16}, max_failures=0,
                                dataset=tiny_fsdd))
    uris, folds = prepare_datasets(plan, plan_root(plan))
    broken = next(t for t in expand_grid(plan, uris, folds) if t.init == "random")
    with injected({trial_id(broken): {"after_epoch": 1, "log": str(tmp_path / "f.log"), "times": 9}}):
        first = run_sweep(plan)
    assert first.failed == [trial_id(broken)] and first.finished == 1
    root = Path(first.root)
    kept = {n: (root / "trials" / n / "summary.json").stat().st_mtime_ns for n in summaries(root)}
    edited = load_plan(write_plan(tmp_path, optim={"epochs": 1, "lr": 0.001, "batch_size": 16}, max_failures=0,
                                  inits=["pretrained"], seeds=[0, 1]))
    capsys.readouterr()
    result = run_sweep(edited, resume=True)
    out = capsys.readouterr().out
    assert "--resume: the plan changed since the last run: 1 new trial(s) will run, 1 trial(s) no longer" in out
    assert trial_id(broken) in out  # named as dropped
    assert result.trials == result.finished == 2 and result.failed == []
    assert len((tmp_path / "f.log").read_text().splitlines()) == 1  # the dropped trial was not started again
    assert all((root / "trials" / n / "summary.json").stat().st_mtime_ns == t for n, t in kept.items())  # reused
    assert {n.split("-seed")[1][0] for n in summaries(root) if "-pretrained-" in n} == {"0", "1"}


def test_killed_driver_resumes_with_one_result_per_grid_point(tiny_fsdd, tmp_path):
    plan_file = write_plan(tmp_path, seeds=[0, 1], max_concurrent_trials=1, dataset=tiny_fsdd)
    root = tmp_path / "store" / "t"
    env = os.environ | {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", str(plan_file)], cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 420
    while time.time() < deadline and not (summaries(root) and list((root / "grid").glob("experiment_state*"))):
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, mid-sweep
    driver.wait()
    before = {name: (root / "trials" / name / "summary.json").stat().st_mtime_ns for name in summaries(root)}
    assert 1 <= len(before) < 4
    result = run_sweep(load_plan(plan_file), resume=True)
    done = summaries(root)
    assert result.trials == result.finished == 4 and len(done) == 4 and result.failed == []
    assert all((root / "trials" / n / "summary.json").stat().st_mtime_ns == t for n, t in before.items())
    assert all(s["epochs"] == 2 for s in done.values())


def test_resume_without_a_sweep_is_a_clear_error(ray_local, tmp_path, capsys):
    assert main(["sweep", str(write_plan(tmp_path)), "--resume"]) == 2
    assert "no sweep to restore" in capsys.readouterr().err


def recipe_provenance(root: Path) -> dict[int, tuple[dict, set[int]]]:
    """Test fold -> (the recipe phase 2 was given for it, the validation folds the search that chose that recipe
    scored on), the folds read from the search trials' own config.json (what they really scored on).

    Results written before search/recipes.json existed had one search/best.json recipe for every test fold,
    chosen by all the search trials: read that way, such results show their leak."""
    configs = {p.parent.name: json.loads(p.read_text()) for p in (root / "search" / "trials").glob("*/config.json")}

    def scored(ids) -> set[int]:
        return {f for i in ids for f in configs[i]["folds"]["valid"]}

    if not (root / "search" / "recipes.json").exists():  # the layout before recipes.json
        best = json.loads((root / "search" / "best.json").read_text())
        return {int(f): (best["optim"], scored(configs)) for f in range(1, 7)}
    saved = json.loads((root / "search" / "recipes.json").read_text())
    return {e["test_fold"]: (e["optim"], scored(saved["searches"][e["search"]]["trial_ids"]))
            for e in saved["recipes"]}


def phase2_configs(root: Path) -> list[dict]:
    return [json.loads(p.read_text())["trial"] for p in (root / "trials").glob("*/config.json")]


@pytest.mark.parametrize("per_fold", [False, True], ids=["one-recipe", "per-fold"])
def test_phase1_never_scores_on_a_fold_its_recipe_is_tested_on(tiny_fsdd, tmp_path, per_fold, capsys):
    # phase 2 tests folds 2 and 4. One recipe: the search on test fold 3 scores on fold 4, so fold 4 needs a
    # recipe from another search (test fold 4, scored on 5). Per fold: fold 2 <- scored on 3, 4 <- on 5, and
    # phase 2 on the paper's split (no validation fold): the searches still need theirs, so they stay nested.
    mode = {"per_fold": True} if per_fold else {"fold": 3}
    search = {"enabled": True, "num_samples": 2, "max_concurrent": 1, **mode}
    plan = load_plan(write_plan(tmp_path, folds=[2, 4], inits=["pretrained"], search=search,
                                optim={"epochs": 1, "lr": 0.001, "batch_size": 16}, dataset=tiny_fsdd,
                                **({"split": "paper"} if per_fold else {})))
    result = run_sweep(plan)
    root = Path(result.root)
    provenance = recipe_provenance(root)
    trials = phase2_configs(root)
    assert sorted(t["fold"] for t in trials) == [2, 4] and result.finished == 2
    assert {t["split"] for t in trials} == {"paper" if per_fold else "nested"}
    for trial in trials:
        recipe, scored_on = provenance[trial["fold"]]
        assert trial["optim"] == recipe  # the trial ran the recipe recorded for its fold ...
        assert trial["fold"] not in scored_on, f"test fold {trial['fold']} got a recipe scored on {scored_on}"
    searches = {p.parent.name: json.loads(p.read_text()) for p in (root / "search").glob("*/best.json")}
    expected = {"fold2": (3, [2]), "fold4": (5, [4])} if per_fold else {"fold3": (4, [2]), "fold4": (5, [4])}
    assert {n: (b["valid_fold"], b["feeds"]) for n, b in searches.items()} == expected
    for name, best in searches.items():
        tried = pq.read_table(root / "search" / name / "trials.parquet").to_pandas()
        assert len(tried) == 2 and tried["valid_acc"].max() == pytest.approx(best["valid_acc"])
        assert ((tried["lr"] - 1e-3).abs() < 1e-12).any()  # the plan's own recipe is evaluated first
        assert best["source"] == "hyperopt TPE" and best["scored_on"] == "valid_acc"
    search_trials = [json.loads(p.read_text()) for p in (root / "search" / "trials").glob("*/config.json")]
    assert len(search_trials) == 4 and {c["trial"]["split"] for c in search_trials} == {"nested"}
    default = json.loads((root / "search" / "best.json").read_text())["optim"]
    assert to_dict(result.optim) == default == (to_dict(plan.optim) if per_fold else searches["fold3"]["optim"])
    if per_fold:
        check_a_lost_search_is_redone_alone(plan, root, capsys)


def check_a_lost_search_is_redone_alone(plan, root: Path, capsys) -> None:
    """Phase 1 resumes per search: with fold 4's result lost, only fold 4 searches again, and its trials are
    reused from their records (seeded TPE proposes the same recipes), not retrained."""
    kept = (root / "search" / "fold2" / "best.json").stat().st_mtime_ns
    lost = json.loads((root / "search" / "fold4" / "best.json").read_text())
    trained = {p: p.stat().st_mtime_ns for p in (root / "search" / "trials").glob("*/summary.json")}
    for name in ("fold4/best.json", "recipes.json", "best.json"):
        (root / "search" / name).unlink()
    capsys.readouterr()
    run_sweep(plan)
    out = capsys.readouterr().out
    assert "phase 1: 1 search(es) of 2 trials: fold4 scored on fold 5" in out
    assert (root / "search" / "fold2" / "best.json").stat().st_mtime_ns == kept
    assert json.loads((root / "search" / "fold4" / "best.json").read_text()) == lost
    assert {p: p.stat().st_mtime_ns for p in (root / "search" / "trials").glob("*/summary.json")} == trained
    assert "phase 2: all 2 trials already finished" in out


def test_which_search_feeds_which_fold():
    """No search ever feeds the fold it scores on, for every choice of first fold and tested folds."""
    from orchestrator.search import plan_searches  # here, so the file also runs on code without it

    uris, folds = {"fsdd": "/nowhere/fsdd", "esc": "/nowhere/esc"}, {"fsdd": [1, 2, 3, 4, 5, 6], "esc": [1, 2, 3]}
    raw = {"name": "t", "storage": "/tmp/x", "inits": ["pretrained"],
           "datasets": {"fsdd": {"data": uris["fsdd"]}, "esc": {"data": uris["esc"]}}}
    plan = from_dict(Plan, raw | {"search": {"enabled": True}})
    one = plan_searches(plan, uris, folds)  # default: test fold 6, scored on 1; a second search for fold 1
    assert [(s.name, s.valid_fold, s.feeds, s.default) for s in one] == [
        ("fold6", 1, (2, 3, 4, 5, 6), True), ("fold1", 2, (1,), False)]
    per_fold = plan_searches(from_dict(Plan, raw | {"search": {"enabled": True, "per_fold": True}}), uris, folds)
    assert [(s.test_fold, s.valid_fold, s.feeds) for s in per_fold] == [(f, f % 6 + 1, (f,)) for f in range(1, 7)]
    for first in range(1, 7):
        for tested in ([1], [2, 4], [first], [1, 2, 3, 4, 5, 6]):
            for mode in ({"fold": first}, {"per_fold": True}):
                p = from_dict(Plan, raw | {"datasets": {"fsdd": {"data": uris["fsdd"], "folds": tested}},
                                           "search": {"enabled": True, **mode}})
                searches = plan_searches(p, {"fsdd": uris["fsdd"]}, folds)
                fed = [f for s in searches for f in s.feeds]
                assert sorted(fed) == sorted(tested)  # every tested fold gets exactly one recipe ...
                assert all(s.valid_fold not in s.feeds and s.valid_fold != s.test_fold for s in searches)
    with pytest.raises(ConfigError, match="search.fold 3 and search.per_fold"):
        from_dict(Plan, raw | {"search": {"enabled": True, "per_fold": True, "fold": 3}})


def test_phase2_takes_each_folds_recipe():
    from orchestrator.search import Recipes

    uris, folds = {"fsdd": "/nowhere/fsdd", "esc": "/nowhere/esc"}, {"fsdd": [1, 2, 3], "esc": [1, 2, 3]}
    plan = from_dict(Plan, {"name": "t", "storage": "/tmp/x", "inits": ["pretrained", "random"],
                            "datasets": {"fsdd": {"data": uris["fsdd"]}, "esc": {"data": uris["esc"]}},
                            "random_optim": {"lr": 0.5}})
    fast, slow = OptimConfig(lr=0.1), OptimConfig(lr=0.01)
    recipes = Recipes(default=slow, by_fold={("fsdd", 2): fast})
    got = {(t.data, t.fold, t.init): t.optim.lr for t in expand_grid(plan, uris, folds, recipes)}
    assert got[uris["fsdd"], 2, "pretrained"] == 0.1 and got[uris["fsdd"], 1, "pretrained"] == 0.01
    assert got[uris["esc"], 2, "pretrained"] == 0.01  # other datasets: the default recipe
    assert {lr for (_, _, init), lr in got.items() if init == "random"} == {0.5}  # random_optim still wins
    assert {t.optim for t in expand_grid(plan, uris, folds, fast) if t.init == "pretrained"} == {fast}
