"""The crash -> resume -> compare check that the trial, SoundCLR and modern-recipe tests share."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.config import TrialConfig
from faults import injected
from orchestrator.trial import InjectedFault, run_trial, trial_id

TIMING = ["seconds", "samples_per_s"]  # the only columns two runs of one trial may differ in


def crash_resume_compare(cfg: TrialConfig, tmp_path: Path) -> tuple[dict, pd.DataFrame]:
    """Kill ``cfg``'s trial after epoch 1 (an injected fault, no retry), run it again on the same storage, and
    once more uninterrupted elsewhere. Asserts the second run resumed at epoch 2 from the checkpoint and that
    both curves are equal but for timing; returns the resumed run's summary and the uninterrupted curve."""
    with injected({trial_id(cfg): {"after_epoch": 1, "log": str(tmp_path / "faults.log")}}), \
            pytest.raises(InjectedFault, match="injected fault after epoch 1"):
        run_trial(cfg, str(tmp_path / "crashed"))
    assert not (tmp_path / "crashed" / trial_id(cfg) / "summary.json").exists()
    summary = run_trial(cfg, str(tmp_path / "crashed"))
    assert summary["resumed_at_epoch"] == 2
    run_trial(cfg, str(tmp_path / "whole"))
    crashed, whole = (pq.read_table(tmp_path / run / trial_id(cfg) / "epochs.parquet").to_pandas()
                      for run in ("crashed", "whole"))
    pd.testing.assert_frame_equal(crashed.drop(columns=TIMING), whole.drop(columns=TIMING))
    return summary, whole
