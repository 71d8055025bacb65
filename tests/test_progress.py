"""Progress output on real runs: the counter of clips featurized, quiet by default and with Ray Data's own
output under ``--verbose`` (tests/progress_display.py has the helpers that check a display). The sweep's
progress (one line per epoch, no Tune tables, no Ray Data status blocks, ``--verbose`` bringing Tune's output
back, ``--json`` keeping stdout to its summary, the report's line per stage) is checked in test_sweep.py, on
the demo sweep it shares."""

from __future__ import annotations

import pytest

from layouts import make_esc50
from orchestrator.config import FeatureConfig
from orchestrator.preprocess import PreprocessRequest, preprocess
from orchestrator.progress import Counter
from progress_display import RAY_DATA_OUTPUT, ray_data_progress_shown, shown


@pytest.fixture
def ray_data_progress_on(capfd):
    """:func:`ray_data_progress_shown` for one test (capfd first: the display is restored before it closes)."""
    with ray_data_progress_shown():
        yield


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
