"""Progress output on real runs: a quiet sweep (one line per epoch, no Tune tables, no Ray Data status
blocks), ``--verbose`` bringing Tune's output back, ``--json`` keeping stdout to its summary, the counter of
clips featurized, and the report's line per stage."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from analysis.report import build_report
from layouts import make_esc50
from orchestrator.cli import main
from orchestrator.config import FeatureConfig
from orchestrator.preprocess import PreprocessRequest, preprocess
from orchestrator.progress import Counter

REPO = Path(__file__).resolve().parent.parent
TUNE_OUTPUT = ("╭", "Trial name", "Trial status", "Configuration for experiment", "View detailed results")
RAY_DATA_OUTPUT = ("logging_progress", "Queued blocks", "Running Dataset", "Starting execution of Dataset")
EPOCH_LINE = re.compile(r"^\[sweep\]   \S+-fold1-seed0-\w+ epoch 1: train_loss [\d.]+ valid_acc [\d.]+ "
                        r"test_acc [\d.]+$", re.M)


class CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (a handler holding a capture's stream
    would outlive it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture
def ray_data_progress_on(capfd, monkeypatch):
    """Ray Data's progress display as a user gets it (tests/conftest.py turns it off for the suite): without
    this, the absence of its status blocks below would prove nothing. Its console handler writes to the
    ``sys.stderr`` of the moment Ray Data was imported (pytest's own capture, here), so it is pointed at the
    test's stderr, where a terminal user would see it. (capfd first: monkeypatch is undone before it closes.)"""
    import logging

    from ray._private.log import PlainRayHandler
    from ray.data import DataContext

    monkeypatch.setattr(DataContext.get_current(), "enable_progress_bars", True)
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, PlainRayHandler):  # not pytest's own log capture, also a StreamHandler
            monkeypatch.setattr(handler, "stream", CurrentStderr())


def shown(text: str, markers: tuple[str, ...]) -> list[str]:
    return [m for m in markers if m in text]


def test_preprocess_prints_one_counter_and_verbose_keeps_ray_datas_own_output(ray_local, ray_data_progress_on,
                                                                              tmp_path, capfd):
    from ray.data import DataContext

    root = make_esc50(tmp_path / "esc50", clips_per_fold=2, seconds=1.0, rate=16000)
    features = FeatureConfig(height=32, width=40)
    capfd.readouterr()
    preprocess(PreprocessRequest("esc50", str(root), str(tmp_path / "quiet"), features=features))
    out, err = capfd.readouterr()
    assert "[preprocess] esc50: featurizing: 10/10 clips (100%)" in err
    assert shown(out + err, RAY_DATA_OUTPUT) == []
    assert DataContext.get_current().enable_progress_bars  # restored for whatever runs next
    preprocess(PreprocessRequest("esc50", str(root), str(tmp_path / "verbose"), features=features), verbose=True)
    out, err = capfd.readouterr()
    assert "logging_progress" in out + err  # the status blocks the quiet run kept out: they were there to hide
    assert "[preprocess] esc50: featurizing: 10/10 clips (100%)" in err


def test_counter_off_a_terminal_prints_throttled_lines_and_one_at_the_end(capsys):
    counter = Counter("[x] files", 100, "clips", interval=3600)
    for done in (10, 50, 40, 99):  # a count never goes backwards; within the interval only the first prints
        counter.update(done)
    counter.close(100)
    assert capsys.readouterr().err.splitlines() == ["[x] files: 10/100 clips (10%)", "[x] files: 100/100 clips (100%)"]


def test_sweep_is_quiet_by_default_verbose_shows_tune_and_the_report_says_each_stage(ray_local, ray_data_progress_on,
                                                                                    tmp_path, capfd):
    plan = str(REPO / "plans" / "demo.yaml")
    capfd.readouterr()
    assert main(["sweep", plan, "--smoke", "--storage", str(tmp_path), "--json"]) == 0
    out, err = capfd.readouterr()
    # --json: stdout is the summary line and nothing else; every progress line went to stderr
    summary = json.loads(out)
    assert summary["finished"] == 2 and "\n" not in out.strip()
    assert "[preprocess] fsdd: featurizing: 600/600 clips (100%)" in err
    assert len(EPOCH_LINE.findall(err)) == 2  # one line per trial epoch (smoke: 1 epoch, 2 trials)
    assert "[sweep] 2/2 trials done (0 failed)" in err
    assert shown(out + err, TUNE_OUTPUT) == [] and shown(out + err, RAY_DATA_OUTPUT) == []

    # the tables stage of that sweep: one line per stage, one per network rebuilt
    root = tmp_path / "demo-smoke"
    lines: list[str] = []
    build_report(str(root), str(tmp_path / "report"), progress=lines.append, svcca_clips=16, max_clips=2,
                 ig_steps=4)
    assert lines[0].startswith("[report] scanning trial records under ")
    assert "[report] ensembles and tables (2 finished trials)" in lines
    assert [line.split(":")[0] for line in lines if "SVCCA" in line or "Integrated" in line] == [
        "[report] SVCCA 1/2", "[report] SVCCA 2/2", "[report] Integrated Gradients 1/1"]
    assert lines[-1].startswith("[report] writing report.md and report.html")

    # --verbose: the same trials again (finished ones are kept, so drop them) with Tune's own output; the
    # suite's Ray streams no worker logs and cannot start to, which the sweep says instead of pretending
    for folder in ("trials", "grid"):
        shutil.rmtree(root / folder)
    assert main(["sweep", plan, "--smoke", "--storage", str(tmp_path), "--verbose", "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["finished"] == 2
    # Tune's status table, in its new boxed layout or (after an earlier quiet sweep in the same process, which
    # switched Tune to its legacy output for a while) its legacy one: either way the table is shown
    assert "Trial name" in err and ("╭" in err or "+--" in err)
    assert "note: Ray was already initialised in this process with worker logs kept in its session logs" in err
    assert "[sweep] 2/2 trials done (0 failed)" in err and not EPOCH_LINE.search(err)  # Tune reports epochs

