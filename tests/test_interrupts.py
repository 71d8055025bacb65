"""Long runs meet signals: Ctrl-C / SIGTERM to a sweep or a `train`, SIGTERM to a trial (spot preemption), and a
checkpoint that cannot be loaded. Every signal is sent to a real process; every resumed curve is compared with
an uninterrupted run's (CPU training is deterministic)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sweep_helpers import write_plan

from orchestrator.cli import main
from orchestrator.config import OptimConfig, TrialConfig
from orchestrator.trial import CHECKPOINT_FILE, RUNNING_FILE, run_trial, trial_id

REPO = Path(__file__).resolve().parent.parent
TIMING = ["seconds", "samples_per_s"]  # the only columns two runs of one trial may differ in
# 64 clips in batches of 2: 32 steps an epoch, so a signal sent after epoch 1 lands inside an epoch, and long
# before the trial ends even after the 2 s poll and a `ray drain-node` start-up
SLOW_OPTIM = {"epochs": 3, "lr": 0.001, "batch_size": 2}


def start_cli(args: list[str], log: Path) -> subprocess.Popen:
    """``rethink-audio ARGS`` in a session of its own (the terminal's process group: what Ctrl-C signals),
    stdout and stderr into ``log``."""
    env = os.environ | {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(proc: subprocess.Popen, log: Path, pattern: str, timeout: float = 420, times: int = 1) -> None:
    """Until ``pattern`` is in the log ``times`` times (the process must not exit meanwhile)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(re.findall(pattern, log.read_text())) >= times:
            return
        assert proc.poll() is None, f"exited {proc.returncode} before {pattern!r}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no {pattern!r} within {timeout} s:\n{log.read_text()[-3000:]}")


def curve(folder: Path) -> pd.DataFrame:
    return pq.read_table(folder / "epochs.parquet").to_pandas().drop(columns=TIMING)


@pytest.fixture(scope="module")
def uninterrupted(tiny_fsdd, tmp_path_factory) -> tuple[Path, Path]:
    """The plan of the signal tests run once without a signal: (plan file, its one trial's folder). The trial
    ids of the tests differ from its id (the dataset's path is part of it), their curves must not."""
    tmp = tmp_path_factory.mktemp("whole")
    plan = write_plan(tmp, inits=["pretrained"], optim=SLOW_OPTIM, checkpoint_every=100, dataset=tiny_fsdd)
    assert main(["sweep", str(plan)]) == 0
    return plan, next((tmp / "store" / "t" / "trials").iterdir())


@pytest.mark.parametrize("sig", [signal.SIGINT], ids=["ctrl-c"])  # SIGTERM: the `train` test below
def test_an_interrupted_sweep_checkpoints_at_a_step_exits_128_plus_signal_and_resumes(uninterrupted, tiny_fsdd,
                                                                                   tmp_path, sig):
    _, whole = uninterrupted
    plan = write_plan(tmp_path, inits=["pretrained"], optim=SLOW_OPTIM, checkpoint_every=100, dataset=tiny_fsdd)
    log = tmp_path / "sweep.log"
    driver = start_cli(["sweep", str(plan)], log)
    wait_for(driver, log, r"epoch 1: train_loss")
    # Ctrl-C signals the terminal's whole process group (driver and the local Ray it started); `kill` the driver
    os.killpg(driver.pid, sig) if sig == signal.SIGINT else driver.send_signal(sig)
    signalled = time.time()
    assert driver.wait(timeout=180) == 128 + sig
    out = log.read_text()
    ended = [line for line in out.splitlines() if line.startswith("interrupted (")]
    assert ended == [f"interrupted ({sig.name}): 0/1 trials finished, 1 interrupted (checkpoint written), 0 failed, "
                     f"0 not started; resume with: rethink-audio sweep {plan} --resume"], out[-3000:]
    assert "Tuner.restore" not in out and "Traceback" not in out and "sweep finished" not in out
    folder = next((tmp_path / "store" / "t" / "trials").iterdir())
    assert not (folder / "summary.json").exists()
    written = (folder / CHECKPOINT_FILE).stat().st_mtime_ns
    assert written / 1e9 > signalled  # written on the way out (checkpoint_every 100: no epoch checkpoint before)
    time.sleep(3)
    assert (folder / CHECKPOINT_FILE).stat().st_mtime_ns == written  # and nothing writes after the driver exits
    assert main(["sweep", str(plan), "--resume"]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_at_epoch"] in (2, 3)  # went on inside the epoch the signal stopped
    pd.testing.assert_frame_equal(curve(folder), curve(whole))


def test_a_preempted_trial_checkpoints_at_a_step_and_runs_again_without_a_failure(uninterrupted, tiny_fsdd, tmp_path):
    _, whole = uninterrupted
    plan = write_plan(tmp_path, inits=["pretrained"], optim=SLOW_OPTIM, checkpoint_every=100, max_failures=0,
                      dataset=tiny_fsdd)
    log = tmp_path / "sweep.log"
    driver = start_cli(["sweep", str(plan)], log)
    wait_for(driver, log, r"epoch 1: train_loss")
    folder = next((tmp_path / "store" / "t" / "trials").iterdir())
    trial_pid = json.loads((folder / RUNNING_FILE).read_text())["pid"]
    os.kill(trial_pid, signal.SIGTERM)  # what a draining spot node's Ray sends the trial's worker process
    assert driver.wait(timeout=420) == 0, log.read_text()[-3000:]
    out = log.read_text()
    assert re.search(r"<- \S+ preempted at epoch [23] step \d+ \(checkpoint written\)", out), out[-3000:]
    assert "1 trial(s) preempted" in out and "1/1 trials done, 0 failed" in out  # max_failures 0: no failure
    assert json.loads((folder / RUNNING_FILE).read_text())["pid"] != trial_pid  # ran again in another process
    pd.testing.assert_frame_equal(curve(folder), curve(whole))


@pytest.fixture(scope="module")
def one_trial(tiny_fsdd) -> TrialConfig:
    return TrialConfig(data=tiny_fsdd, model="efficientnet_lite0", init="random", fold=2, seed=0, max_train_clips=64,
                       optim=OptimConfig(**SLOW_OPTIM), checkpoint_every=1)


def test_train_on_sigterm_checkpoints_at_a_step_and_the_printed_command_resumes_to_the_same_curve(one_trial,
                                                                                                 tmp_path):
    args = ["train", "--data", one_trial.data, "--model", one_trial.model, "--init", one_trial.init, "--fold", "2",
            "--epochs", "3", "--lr", "0.001", "--batch-size", "2", "--out", str(tmp_path / "stopped")]
    log = tmp_path / "train.log"
    proc = start_cli(args, log)
    wait_for(proc, log, r"epoch 1/3: train_loss")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    out = log.read_text()
    line = re.search(r"interrupted \(SIGTERM\): the trial stopped in epoch [23] after \d+ step\(s\), checkpoint "
                     r"written; resume with: (.*)", out)
    assert line and line.group(1) == "rethink-audio " + " ".join(args), out[-2000:]  # the same command resumes
    assert "Traceback" not in out
    folder = next((tmp_path / "stopped").iterdir())
    assert (folder / CHECKPOINT_FILE).exists() and not (folder / "summary.json").exists()
    # the printed command, and the same trial uninterrupted: both in fresh processes like the first (a process's
    # torch thread count changes float sums, so the pytest process itself is no reference)
    resumed = subprocess.run([sys.executable, "-m", "orchestrator.cli", *shlex.split(line.group(1))[1:]], cwd=REPO)
    whole = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args[:-1], str(tmp_path / "whole")], cwd=REPO)
    assert resumed.returncode == whole.returncode == 0
    assert json.loads((folder / "summary.json").read_text())["resumed_at_epoch"] in (2, 3)
    pd.testing.assert_frame_equal(curve(folder), curve(tmp_path / "whole" / folder.name))


def test_a_damaged_checkpoint_is_set_aside_and_the_trial_starts_over(one_trial, tmp_path, capsys):
    run_trial(one_trial, str(tmp_path / "whole"))
    folder = tmp_path / "damaged" / trial_id(one_trial)
    folder.mkdir(parents=True)
    good = (tmp_path / "whole" / trial_id(one_trial) / CHECKPOINT_FILE).read_bytes()
    (folder / CHECKPOINT_FILE).write_bytes(good[: len(good) // 2])  # a copy cut short: zip directory missing
    capsys.readouterr()
    summary = run_trial(one_trial, str(tmp_path / "damaged"))
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "could not be loaded" in warnings[0] and "started the trial over" in warnings[0]
    aside = list(folder.glob(f"{CHECKPOINT_FILE}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == good[: len(good) // 2]
    assert summary["resumed_at_epoch"] is None and summary["epochs"] == 3
    pd.testing.assert_frame_equal(curve(folder), curve(tmp_path / "whole" / trial_id(one_trial)))


def test_a_trial_on_a_drained_node_checkpoints_and_runs_again_on_another_node(uninterrupted, tiny_fsdd, tmp_path):
    """The spot path end to end: a 2-node Ray cluster (Ray's own test utility), `ray drain-node` with reason
    PREEMPTION on the trial's node (what a spot-interruption handler runs), the trial moves to the other node."""
    from ray.cluster_utils import Cluster

    _, whole = uninterrupted
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        plan = write_plan(tmp_path, inits=["pretrained"], optim=SLOW_OPTIM, checkpoint_every=100, max_failures=0,
                          dataset=tiny_fsdd)
        log = tmp_path / "sweep.log"
        driver = start_cli(["sweep", str(plan), "--address", cluster.address], log)
        wait_for(driver, log, r"epoch 1: train_loss")
        folder = next((tmp_path / "store" / "t" / "trials").iterdir())
        drained = json.loads((folder / RUNNING_FILE).read_text())["ray_node"]
        subprocess.run([str(Path(sys.executable).parent / "ray"), "drain-node", f"--address={cluster.address}",
                        f"--node-id={drained}", "--reason=DRAIN_NODE_REASON_PREEMPTION",
                        "--reason-message=test: spot interruption notice", "--deadline-remaining-seconds=110"],
                       check=True, capture_output=True, timeout=120)
        assert driver.wait(timeout=420) == 0, log.read_text()[-3000:]
        out = log.read_text()
        assert re.search(r"<- \S+ preempted at epoch [23] step \d+ \(checkpoint written\)", out), out[-3000:]
        assert "1/1 trials done, 0 failed" in out
        assert json.loads((folder / RUNNING_FILE).read_text())["ray_node"] != drained
        pd.testing.assert_frame_equal(curve(folder), curve(whole))
    finally:
        cluster.shutdown()


def test_phase1_search_trials_stop_too_and_a_preempted_one_reruns_with_its_sample(tiny_fsdd, tmp_path):
    """Phase 1 meets the same signals: a search that lost a trial to SIGTERM runs again (its seeded TPE proposes the
    same samples: the preempted trial resumes from its checkpoint, in its own folder); Ctrl-C then stops the
    search cleanly, writing no best.json."""
    search = {"enabled": True, "num_samples": 2, "max_concurrent": 1, "fold": 3, "epochs": 3}
    plan = write_plan(tmp_path, inits=["pretrained"], optim=SLOW_OPTIM, checkpoint_every=100, search=search,
                      dataset=tiny_fsdd)
    root = tmp_path / "store" / "t"
    log = tmp_path / "sweep.log"
    driver = start_cli(["sweep", str(plan)], log)
    wait_for(driver, log, r"epoch 1: train_loss")
    folder = next((root / "search" / "trials").iterdir())
    os.kill(json.loads((folder / RUNNING_FILE).read_text())["pid"], signal.SIGTERM)
    wait_for(driver, log, r"preempted at epoch [23] step \d+ \(checkpoint written\)")
    wait_for(driver, log, r"lost a trial to preemption: searching again")
    wait_for(driver, log, r"epoch 1: train_loss", times=2)  # the rerun goes on at epoch 2 or 3: the next sample
    os.killpg(driver.pid, signal.SIGINT)  # in the second search trial (the rerun went first, then a new sample)
    assert driver.wait(timeout=180) == 130
    out = log.read_text()
    ended = [line for line in out.splitlines() if line.startswith("interrupted (")]
    assert ended == [f"interrupted (SIGINT): stopped before any trial of phase 2 started (finished searches and "
                     f"datasets are kept); resume with: rethink-audio sweep {plan} --resume"], out[-3000:]
    assert "Traceback" not in out and not (root / "search" / "fold3" / "best.json").exists()
    rerun = json.loads((folder / "summary.json").read_text())  # the preempted sample finished in its own folder
    assert rerun["resumed_at_epoch"] in (2, 3) and rerun["epochs"] == 3
