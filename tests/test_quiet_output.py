"""Quiet means quiet: in the default (quiet) mode of ``preprocess`` and ``sweep``, none of
Ray's own notices reach the terminal -- the token-authentication warning and "Started a local Ray instance."
(written to the Ray session's logs instead), Ray Data's ``concurrency`` deprecation (the new ``compute`` API is
used) and its "no available CPUs" warning (kept in ``ray-data.log``); ``--verbose`` still shows Ray's lines."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sweep_helpers import write_plan

REPO = Path(__file__).resolve().parent.parent
RAY_NOTICES = ("Token authentication is", "Started a local Ray instance", "``concurrency`` is deprecated",
               "does not have any available CPUs", "Connected to Ray cluster")


def cli(args: list[str], ray_tmp: Path) -> str:
    """stdout + stderr of ``rethink-audio ARGS`` in a fresh process that starts its own local Ray (files under
    ``ray_tmp``); fails the test on a non-zero exit."""
    env = os.environ | {"RAY_TMPDIR": str(ray_tmp)}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_DATA_DISABLE_PROGRESS_BARS"):
        env.pop(name, None)  # Ray's defaults, as a user meets them
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400, start_new_session=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.fixture
def ray_tmp():
    """A short RAY_TMPDIR of the test's own (Ray's socket paths must stay under 107 characters)."""
    folder = Path(tempfile.mkdtemp(prefix="rq-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_preprocess_and_sweep_print_no_ray_notices_and_verbose_keeps_them(tmp_path, ray_tmp):
    plan = write_plan(tmp_path, inits=["pretrained"], optim={"epochs": 1, "lr": 0.001, "batch_size": 16})
    datasets = tmp_path / "store" / "t" / "datasets"  # where the plan's sweep looks for (and reuses) its version
    out = cli(["preprocess", "--dataset", "fsdd", "--root", str(REPO / "data" / "fsdd-mini"), "--out", str(datasets),
               "--height", "32", "--width", "32"], ray_tmp)
    assert "wrote dataset version" in out and "[preprocess] fsdd: featurizing: 600/600 clips (100%)" in out
    assert [notice for notice in RAY_NOTICES if notice in out] == [], out
    start_log = ray_tmp / "ray" / "session_latest" / "logs" / "rethink-audio-ray-start.log"  # Ray's logs folder
    assert "Token authentication is" in start_log.read_text() and "Started a local Ray instance." in start_log.read_text()

    out = cli(["sweep", str(plan)], ray_tmp)
    assert "(reused, 0 file(s) rejected" in out and "sweep finished: 1/1 trials done" in out
    assert [notice for notice in RAY_NOTICES if notice in out] == [], out

    out = cli(["sweep", str(plan), "--verbose"], ray_tmp)  # the trial is reused: only Ray starts again
    assert "Started a local Ray instance." in out and "phase 2: all 1 trials already finished" in out


def test_ray_datas_no_cpu_warning_stays_in_its_log_file_in_quiet_mode():
    """Ray Data's console handlers drop the warning in quiet mode; its file handler (ray-data.log) keeps it.
    Checked on the handlers' own filters: under pytest-xdist the console handler may write to a stream an
    earlier test's capture left behind, so reading the terminal would test the harness, not the filter."""
    import ray.data  # noqa: F401  (configures the "ray.data" logger's handlers)

    from orchestrator.preprocess import NO_CPU_WARNING, _hide_cpu_warning

    logger = logging.getLogger("ray.data.dataset")
    text = f"Warning: {NO_CPU_WARNING}. The Dataset job will hang unless more CPUs are freed up."
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 0, text, (), None)
    other = logger.makeRecord(logger.name, logging.WARNING, __file__, 0, "Warning: something else", (), None)
    handlers = logging.getLogger("ray.data").handlers
    consoles = [h for h in handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    files = [h for h in handlers if h not in consoles]
    assert consoles and files
    with _hide_cpu_warning(True):
        assert not any(h.filter(record) for h in consoles)  # off the terminal ...
        assert all(h.filter(other) for h in consoles)  # ... and only that warning
        assert all(h.filter(record) for h in files)  # ray-data.log still gets it
    assert all(h.filter(record) for h in consoles)  # --verbose (and after the body): shown
