"""The cost preview (orchestrator/cost.py, `rethink-audio plan`) and the sweep's confirmation before a costly
run. Nothing here starts Ray or a trial: the sweep tests stop at the confirmation or at the storage check
that follows it."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from orchestrator import cli, cost
from orchestrator.cli import main
from orchestrator.plan import load_plan
from sweep_helpers import REPO

RATES = {("densenet201", "a10g"): (400.0, "test row")}
PRICES = {"as_of": "test", "region": "test",
          "instances": {"g5.xlarge": {"gpu": "a10g", "gpus": 1, "on_demand": 2.0, "spot": 0.5}}}


def write_card(folder, per_fold: dict[int, int], copies: int, width: int) -> str:
    """A finished dataset version's card (only the keys the plan check and the estimate read)."""
    folder.mkdir(parents=True)
    card = {"name": "toy", "folds": sorted(per_fold), "augment": {"copies": copies},
            "spec": {"shape": [3, 128, width], "dtype": "float16"},
            "counts": {"per_fold": {str(f): n for f, n in per_fold.items()}}}
    (folder / "dataset.json").write_text(json.dumps(card))
    return str(folder)


def write_plan(tmp_path, data: str, *, split="paper", gpus=1, **extra) -> str:
    plan = {"name": "toy", "storage": str(tmp_path / "runs"),
            "datasets": {"toy": {"data": data, "folds": [1, 2]}},
            "models": ["densenet201"], "inits": ["pretrained", "random"], "seeds": [0, 1],
            "split": split, "augmented": "draw", "optim": {"epochs": 36}, "download_weights": True,
            "resources": {"num_workers": 1, "cpus_per_worker": 4, "gpus_per_worker": gpus}, **extra}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def write_cluster(tmp_path) -> str:
    """A launcher config: 3 nodes at most overall, one g5.xlarge worker type (4 CPUs, 1 GPU) allowing 5."""
    cluster = {"cluster_name": "toy", "max_workers": 3, "head_node_type": "head",
               "available_node_types": {
                   "head": {"resources": {}, "node_config": {"InstanceType": "m6i.2xlarge"}},
                   "gpu": {"min_workers": 0, "max_workers": 5, "resources": {},
                           "node_config": {"InstanceType": "g5.xlarge"}}}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    return str(path)


def test_hand_worked_plan(tmp_path):
    """Worked by hand.

    Dataset: 4 folds of 100 clips, 2 augmented copies per clip, inputs 3 x 128 x 500 (2x the paper's pixels).
    Plan: 1 model x 2 inits x 2 seeds x test folds [1, 2] = 8 trials, 36 epochs each, split paper, draw.
    Per epoch: train on the 3 other folds = 300 clips, x 2 with the drawn copy = 600 samples; eval the
    test fold = 100. Samples: train 600 x 36 x 8 = 172,800; eval 100 x 36 x 8 = 28,800.
    Seconds per epoch at 400 samples/s (eval 3x faster), x 2 for the pixels: (600/400 + 100/1200) x 2
    = 3 + 1/6 = 19/6 s; a trial = 36 x 19/6 = 114 s; 8 trials = 912 s = 0.25333 GPU-hours.
    Cluster: min(5 node max, 3 cluster max) = 3 g5.xlarge, 1 trial each (4 CPUs, 1 GPU) -> 3 at once;
    wall = max(912 / 3 = 304 s, longest trial 114 s) = 304 s = 0.084444 h.
    Dollars at $2.00/h on-demand and $0.50/h spot, 1 GPU per instance: 0.25333 x 2 = $0.50667 and
    0.25333 x 0.5 = $0.12667.
    """
    data = write_card(tmp_path / "toy-version", {1: 100, 2: 100, 3: 100, 4: 100}, copies=2, width=500)
    plan = load_plan(write_plan(tmp_path, data))
    result = cost.estimate(plan, cluster=write_cluster(tmp_path), rates=RATES, prices=PRICES)
    assert result.gpu == "a10g" and result.trials == 8
    assert [(r.init, r.trials, r.epochs) for r in result.rows] == [("pretrained", 4, {36}), ("random", 4, {36})]
    assert sum(r.train_samples for r in result.rows) == 172_800
    assert sum(r.eval_samples for r in result.rows) == 28_800
    assert result.gpu_hours == pytest.approx(912 / 3600)
    (deploy,) = result.deployments
    assert (deploy.instance, deploy.node_types, deploy.nodes, deploy.trial_slots) == ("g5.xlarge", ("gpu",), 3, 3)
    assert deploy.wall_hours == pytest.approx(304 / 3600)
    assert deploy.on_demand_usd == pytest.approx(912 / 3600 * 2.0)
    assert deploy.spot_usd == pytest.approx(912 / 3600 * 0.5)
    text = cost.render(result)
    assert "| **all** | | | **8** | | 172,800 | 28,800 | **0.3** |" in text and "prices as of test" in text


def test_nested_split_trains_on_k_minus_2_folds_and_evaluates_two(tmp_path):
    """Nested, test fold 1: valid fold 2, train folds 3 + 4 = 200 clips x 2 (draw) = 400, eval 200.
    Test fold 2: valid 3, train 1 + 4: the same counts. 8 trials x 36 epochs."""
    data = write_card(tmp_path / "toy-version", {1: 100, 2: 100, 3: 100, 4: 100}, copies=2, width=500)
    result = cost.estimate(load_plan(write_plan(tmp_path, data, split="nested")), rates=RATES, prices=PRICES)
    assert sum(r.train_samples for r in result.rows) == 400 * 36 * 8
    assert sum(r.eval_samples for r in result.rows) == 200 * 36 * 8
    (deploy,) = result.deployments  # no cluster: dollars per priced instance of the GPU, no wall time
    assert deploy.wall_hours is None and deploy.on_demand_usd == pytest.approx(result.gpu_hours * 2.0)


def test_unknown_throughput_leaves_gpu_hours_unknown_and_names_the_file(tmp_path):
    data = write_card(tmp_path / "toy-version", {1: 10, 2: 10, 3: 10}, copies=0, width=250)
    result = cost.estimate(load_plan(write_plan(tmp_path, data)), gpu="h100", rates=RATES, prices=PRICES)
    assert result.gpu_hours is None
    assert any("no throughput row for densenet201 on h100" in n and "throughput.csv" in n for n in result.notes)


def paper_hours() -> float:
    """cluster/README.md's arithmetic for plans/paper.yaml at 400 samples/s (eval 1,200) for every model:
    per trial-epoch seconds = train / 400 + eval / 1200, x 6 for GTZAN's 128 x 1500 inputs; train samples
    are every fold but the test fold, doubled by the augmented draw. GTZAN: 999 readable clips."""
    esc = 1600 * 2 / 400 + 400 / 1200
    us8k = 8732 * 0.9 * 2 / 400 + 873.2 / 1200
    gtzan = 6 * (999 * 0.8 * 2 / 400 + 999 * 0.2 / 1200)
    seconds = (75 * esc + 150 * us8k + 15 * gtzan) * (70 + 450) + 50 * 70 * esc
    return seconds / 3600


def test_paper_plan_preview_matches_the_cluster_readme(capsys):
    code = main(["plan", str(REPO / "plans" / "paper.yaml"), "--gpu", "a10g",
                 "--cluster", str(REPO / "cluster" / "aws-gpu.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"| **all** | | | **530** |" in out and f"**{paper_hours():,.1f}** |" in out
    assert 1015 < paper_hours() < 1025  # the README's "≈ 1,020 GPU-hours"
    # 16 x g5.xlarge (cluster max_workers 16): 1,019.8 / 16 = 63.7 h; $1.006/h and $0.40/h per GPU-hour
    row = next(line for line in out.splitlines() if line.startswith("| g5.xlarge |") and "$" in line)
    assert f"{paper_hours() / 16:,.1f} h" in row
    assert f"${paper_hours() * 1.006:,.0f}" in row and f"${paper_hours() * 0.40:,.0f}" in row
    assert "prices as of" in out and "estimate" in out


def test_demo_plan_is_cpu_only_and_priced_at_zero(capsys):
    assert main(["plan", str(REPO / "plans" / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert "CPU only" in out and "| **all** | | | **12** |" in out  # 2 inits x 3 seeds x 2 folds


def sweep_args(tmp_path, *extra) -> list[str]:
    """A GPU sweep of 8 toy trials (0.25 GPU-hours at the shipped 400 samples/s) whose storage is a file,
    so a sweep that gets past the confirmation stops at the storage check, before Ray or any trial."""
    data = write_card(tmp_path / "toy-version", {1: 100, 2: 100, 3: 100, 4: 100}, copies=2, width=500)
    (tmp_path / "not-a-folder").write_text("")
    return ["sweep", write_plan(tmp_path, data), "--storage", str(tmp_path / "not-a-folder" / "x"),
            "--max-gpu-hours", "0.1", *extra]


class NoTerminal:
    """stdin of a job or a pipe."""

    def isatty(self) -> bool:
        return False


class Terminal(NoTerminal):
    def isatty(self) -> bool:
        return True


def test_sweep_refuses_without_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", NoTerminal())
    assert main(sweep_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "## Cost preview: plan toy" in err
    assert "stdin is not a terminal" in err and "--yes" in err and "above --max-gpu-hours 0.1" in err


def test_sweep_with_yes_goes_on_to_the_storage_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", NoTerminal())
    assert main(sweep_args(tmp_path, "--yes")) == 2
    err = capsys.readouterr().err
    assert "stdin is not a terminal" not in err and "not-a-folder" in err  # the storage check's error


@pytest.mark.parametrize("answer, code", [("n", 1), ("", 1), ("y", 2)])
def test_sweep_asks_on_a_terminal(tmp_path, monkeypatch, capsys, answer, code):
    monkeypatch.setattr(sys, "stdin", Terminal())
    asked = []
    monkeypatch.setattr(cli, "_ask", lambda prompt: asked.append(prompt) or answer)
    assert main(sweep_args(tmp_path)) == code  # y: on to the storage check (2), n / empty: cancelled (1)
    assert asked and "start 8 trials" in asked[0]
    assert ("sweep cancelled" in capsys.readouterr().err) == (code == 1)


def test_sweep_under_the_threshold_does_not_ask(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", NoTerminal())
    args = sweep_args(tmp_path)
    args[args.index("--max-gpu-hours") + 1] = "10"
    assert main(args) == 2 and "not-a-folder" in capsys.readouterr().err


def test_jobs_log_the_preview_and_never_ask(tmp_path, monkeypatch, capsys):
    """Jobs run the CLI with --yes: the preview goes to the job log (stderr), nothing is asked, even above the
    threshold and without a terminal."""
    from jobs import paper, sweep
    from orchestrator.cli import build_parser, confirm_cost

    monkeypatch.setattr(sys, "stdin", NoTerminal())
    for job in (sweep, paper):
        args = build_parser().parse_args(job.arguments([str(REPO / "plans" / "paper.yaml")]))
        assert confirm_cost(load_plan(args.plan), args)
        err = capsys.readouterr().err
        assert "## Cost preview: plan paper, on a10g" in err and "| **all** | | | **530** |" in err


def test_kuberay_manifest_gives_instance_types_from_node_affinity():
    """cluster/rayjob.yaml: gpu1 pods on g5.2xlarge (maxReplicas 16, 7 CPUs, 1 GPU: 1 trial each) and gpu4
    pods on g5.12xlarge (maxReplicas 2, 44 CPUs, 4 GPUs: 4 trials each); no launcher-wide node cap."""
    result = cost.estimate(load_plan(str(REPO / "plans" / "paper.yaml")), cluster=REPO / "cluster" / "rayjob.yaml")
    assert [(d.instance, d.nodes, d.trial_slots) for d in result.deployments] == [
        ("g5.2xlarge", 16, 16), ("g5.12xlarge", 2, 8)]
    assert result.deployments[0].on_demand_usd == pytest.approx(result.gpu_hours * 1.212)


def test_paper_plan_preview_shows_memory_per_trial_and_per_node(capsys):
    """plans/paper.yaml's largest trial is ResNet-50 at batch 32 on GTZAN's 3 x 128 x 1500 (orchestrator/memory.py):
    1 GiB process + 1.5 GiB CUDA host + 2 x 90 MiB weights + 2 x 270 MiB checkpoint + 316 MiB batch buffers
    = 3.5 GiB private; versions of 10,000 / 43,660 / 4,995 rows x 3 x 32,000 (GTZAN 192,000) px float16.
    g5.xlarge: Ray memory 0.7 x (16 - 1) = 10.5 GiB holds 2 requests, RAM 2 + 3.5 + 7.8 (US8K) = 13.3 of 16 GiB
    holds one trial (two would need 22.2); g5.12xlarge: 4 GPUs, 2 + 4 x 3.5 + all three versions = 31.0 GiB."""
    assert main(["plan", str(REPO / "plans" / "paper.yaml"), "--cluster", str(REPO / "cluster" / "aws-gpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Memory (orchestrator/memory.py; the largest trial: resnet50 at batch 32 on 3 x 192,000 px):" in out
    assert "| host, private, per trial | 3.5 GiB |" in out and "| GPU per trial | 12.5 GiB |" in out
    for name, size in (("esc50", "1.8"), ("us8k", "7.8"), ("gtzan", "5.4")):
        assert f"| data {name}, per node | {size} GiB | the dataset version, mapped once per node |" in out
    assert ("| g5.xlarge | gpu1-spot, gpu1-ondemand | 16.0 GiB (2.0 GiB) | 10.5 GiB | 1 | 2 | 1 | 1 | 7.8 GiB | "
            "13.3 GiB |") in out
    assert ("| g5.12xlarge | gpu4-spot, gpu4-ondemand | 192.0 GiB (2.0 GiB) | 133.7 GiB | 4 | 38 | 49 | 4 | 15.0 GiB | "
            "31.0 GiB |") in out


def test_ram_decides_trials_at_once_and_the_wall_time(tmp_path):
    """A g5.12xlarge pod limited to 24Gi: 4 GPUs, 6 requests of Ray memory, but RAM for 2 paper trials
    (1 GiB Ray + 2 x 3.5 + 7.8 + 5.4 = 21.2 GiB; a third would need 26.5): 2 pods x 2 = 4 trials at once."""
    manifest = yaml.safe_load((REPO / "cluster" / "rayjob.yaml").read_text())
    groups = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpu4 = next(g for g in groups if g["groupName"] == "gpu4")
    gpu4["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "24Gi"
    manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"] = [gpu4]
    path = tmp_path / "small-gpu4.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = cost.estimate(load_plan(str(REPO / "plans" / "paper.yaml")), cluster=path)
    (node,) = result.node_memory
    assert (node.instance, node.by_resources, node.by_memory, node.by_ram, node.per_node) == ("g5.12xlarge", 4, 6, 2, 2)
    assert [(d.instance, d.nodes, d.trial_slots) for d in result.deployments] == [("g5.12xlarge", 2, 4)]
    # Ray alone would put 4 trials on such a pod (4 GPUs, 24 GiB of memory resource): the preview says so
    assert any(n.startswith("plan 'paper' on small-gpu4:gpu4: Ray places up to 4 bundle(s)") and
               "lower its Ray memory to 7.0 GiB" in n for n in result.notes), result.notes
