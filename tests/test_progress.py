"""Progress output on real runs: the counter of clips featurized, quiet by default and with Ray Data's own
output under ``--verbose``, and the helpers that check a display. The sweep's progress (one line per epoch,
no Tune tables, no Ray Data status blocks, ``--verbose`` bringing Tune's output back, ``--json`` keeping stdout
to its summary, the report's line per stage) is checked in test_sweep.py, on the demo sweep it shares."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from layouts import make_esc50
from orchestrator.config import FeatureConfig
from orchestrator.preprocess import PreprocessRequest, preprocess
from orchestrator.progress import Counter

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


@contextmanager
def ray_data_progress_shown() -> Iterator[None]:
    """Ray Data's progress display as a user gets it (tests/conftest.py turns it off for the suite): without
    this, the absence of its status blocks proves nothing. Its console handler writes to the ``sys.stderr`` of
    the moment Ray Data was imported (pytest's own capture, here), so it is pointed at whatever ``sys.stderr``
    is at each write, where a terminal user would see it. Both are restored afterwards."""
    import logging

    from ray._private.log import PlainRayHandler
    from ray.data import DataContext

    context = DataContext.get_current()
    handlers = [h for h in logging.getLogger("ray.data").handlers
                if isinstance(h, PlainRayHandler)]  # not pytest's own log capture, also a StreamHandler
    saved = context.enable_progress_bars, [h.stream for h in handlers]
    context.enable_progress_bars = True
    for handler in handlers:
        handler.stream = CurrentStderr()
    try:
        yield
    finally:
        context.enable_progress_bars = saved[0]
        for handler, stream in zip(handlers, saved[1]):
            handler.stream = stream


@pytest.fixture
def ray_data_progress_on(capfd):
    """:func:`ray_data_progress_shown` for one test (capfd first: the display is restored before it closes)."""
    with ray_data_progress_shown():
        yield


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
