"""A sweep on Ray's fake multi-node autoscaler: queued trials make the autoscaler add nodes, trials run side by
side on different nodes, every trial finishes with its records.

The cluster is private (cluster/local_autoscaler.py: own session, temp dir, ports, token) and is stopped by
its own process ids, never by ``ray stop``; the sweep runs in a driver subprocess joined to it, so the pytest
process's own Ray (the ``ray_local`` fixture) is untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, summaries, write_plan

from cluster.local_autoscaler import start_autoscaling_head

WORKER = {"resources": {"CPU": 1, "trial_slot": 1, "object_store_memory": 200 * 1024 ** 2},
          "min_workers": 0, "max_workers": 3}
SEEDS = list(range(6))  # 6 trials: one init, one fold

# The driver: the sweep, then which node ran each Tune actor (by pid) and every node the cluster saw.
DRIVER = """
import json, sys
import ray
from ray.util.state import list_actors
from orchestrator.plan import load_plan
from orchestrator.sweep import run_sweep

plan_file, address, dashboard, out = sys.argv[1:5]
result = run_sweep(load_plan(plan_file), ray_address=address, quiet=True)
actors = [{"pid": a.pid, "node_id": a.node_id, "class": a.class_name}
          for a in list_actors(address=dashboard, detail=True, limit=10000, raise_on_missing_output=False)]
nodes = [{"node_id": n["NodeID"], "resources": n["Resources"], "alive": n["Alive"]} for n in ray.nodes()]
json.dump({"summary": result.summary(), "actors": actors, "nodes": nodes}, open(out, "w"))
"""


@pytest.fixture
def autoscaling_head():
    """A head with 1 CPU (Ray Data preprocessing runs there) and no trial_slot; workers of one type, 0..3."""
    head = start_autoscaling_head(1, {"trial": WORKER}, idle_timeout_minutes=5)
    yield head
    left = head.stop()  # the head and the worker nodes it launched (asserted below)
    head.cleanup()
    assert not left, f"processes of the autoscaling cluster still alive: {sorted(left)}"


def trial_runs(grid: Path) -> list[dict]:
    """Per Tune trial: its id, the pid of the actor that ran it, start and end (from Tune's result.json)."""
    runs = []
    for result_file in sorted(grid.glob("*/result.json")):
        results = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        last = results[-1]
        runs.append({"trial": result_file.parent.name, "pid": last["pid"],
                     "start": last["timestamp"] - last["time_total_s"], "end": last["timestamp"]})
    return runs


def peak_overlap(runs: list[dict], slack: float = 1.0) -> tuple[int, list[tuple[dict, dict]]]:
    """Most runs in flight at one time, and the pairs that overlapped by more than ``slack`` seconds
    (Tune's timestamps are whole seconds)."""
    events = sorted([(r["start"] + slack, 1) for r in runs] + [(r["end"], -1) for r in runs])
    peak = live = 0
    for _, step in events:
        live += step
        peak = max(peak, live)
    pairs = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
             if min(a["end"], b["end"]) - max(a["start"], b["start"]) > slack]
    return peak, pairs


def test_queued_trials_make_the_autoscaler_add_nodes_and_run_side_by_side(autoscaling_head, tiny_fsdd, tmp_path):
    plan = write_plan(tmp_path, inits=["pretrained"], seeds=SEEDS, optim={"epochs": 1, "lr": 0.001, "batch_size": 16},
                      dataset=tiny_fsdd,
                      max_train_clips=32, max_concurrent_trials=0, max_failures=1,
                      resources={"num_workers": 1, "cpus_per_worker": 1, "custom": {"trial_slot": 1}})
    out = tmp_path / "driver.json"
    env = autoscaling_head.env | {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    start = time.time()
    driver = subprocess.run([sys.executable, "-c", DRIVER, str(plan), autoscaling_head.gcs_address,
                             autoscaling_head.dashboard_url, str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
    wall = time.time() - start
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    seen = json.loads(out.read_text())
    root = tmp_path / "store" / "t"

    workers = [n for n in seen["nodes"] if n["resources"].get("trial_slot")]
    node_of_pid = {a["pid"]: a["node_id"] for a in seen["actors"]}
    runs = [r | {"node": node_of_pid.get(r["pid"])} for r in trial_runs(root / "grid")]
    peak, pairs = peak_overlap(runs)
    print(f"\n[autoscaling] worker nodes launched: {len(workers)}; trials: {len(runs)}; peak concurrent trials: "
          f"{peak}; nodes that ran trials: {len({r['node'] for r in runs})}; sweep wall time: {wall:.0f} s")
    for r in runs:
        print(f"[autoscaling]   {r['trial']} node ...{str(r['node'])[-5:]} pid {r['pid']} "
              f"{r['start'] - start:6.1f} s -> {r['end'] - start:6.1f} s")

    assert seen["summary"]["trials"] == seen["summary"]["finished"] == len(SEEDS) and not seen["summary"]["failed"]
    assert len(summaries(root)) == len(SEEDS)  # every trial left its records
    assert len(workers) >= 2, f"the autoscaler launched {len(workers)} worker node(s)"
    assert len(runs) == len(SEEDS) and all(r["node"] for r in runs), runs
    assert all(r["node"] in {w["node_id"] for w in workers} for r in runs)  # none ran on the head
    assert peak >= 2 and any(a["node"] != b["node"] for a, b in pairs), runs
