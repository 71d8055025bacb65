"""Every shipped plan against every node type of the shipped clusters (orchestrator.cluster_fit, printed by
cluster/fit.py), offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO

from orchestrator import cluster_fit as fit

CLUSTERS = (REPO / "cluster" / "aws-gpu.yaml", REPO / "cluster" / "rayjob.yaml")

PLANS = sorted((REPO / "plans").glob("*.yaml"))
GIB = 2**30


@pytest.fixture(scope="module")
def nodes() -> list[fit.NodeType]:
    return [n for path in CLUSTERS for n in fit.node_types(path)]


def test_node_types_are_read_as_ray_sees_them(nodes):
    """Ray's memory resource: 0.7 x (RAM - 1 GiB for the OS) on a VM (Ray's default 30 % object store of what
    is available at `ray start`); on KubeRay the pod's memory limit, which KubeRay passes as --memory."""
    offered = {n.label: (n.resources, n.max_nodes, n.head, n.ram_bytes, n.reserve_bytes) for n in nodes}
    vm = {"CPU": 8, "GPU": 0, "memory": pytest.approx(0.7 * 31 * GIB)}
    assert offered["aws-gpu:head"] == (vm, 1, True, 32 * GIB, 4 * GIB)  # m6i.2xlarge, auto-detected
    g5 = {"CPU": 4, "GPU": 1, "memory": pytest.approx(0.7 * 15 * GIB)}
    assert offered["aws-gpu:gpu1-spot"] == (g5, 16, False, 16 * GIB, 2 * GIB)  # g5.xlarge
    g5_12 = {"CPU": 48, "GPU": 4, "memory": pytest.approx(0.7 * 191 * GIB)}
    assert offered["aws-gpu:gpu4-ondemand"] == (g5_12, 1, False, 192 * GIB, 2 * GIB)  # g5.12xlarge
    # num-gpus "0", pod limits 8 CPUs and 32Gi; no OS inside a pod's limit, the head's Ray processes are
    assert offered["rayjob:head"] == ({"CPU": 8, "GPU": 0, "memory": 32 * GIB}, 1, True, 32 * GIB, 3 * GIB)
    assert offered["rayjob:gpu4"] == ({"CPU": 44, "GPU": 4, "memory": 180 * GIB}, 2, False, 180 * GIB, 1 * GIB)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_every_gpu_plan_fits_a_gpu_group_of_every_cluster(plan, nodes):
    shape = fit.trial_shape(plan)
    assert shape.private_bytes > GIB and shape.shared_bytes(1) > 0  # memory is part of the shape
    assert fit.unplaceable_gpu_plans([shape], nodes) == []
    assert fit.overcommitted_gpu_nodes([shape], nodes) == []  # Ray never places more than RAM holds
    assert any(fit.fits(shape, n) for n in nodes), fit.table([shape], nodes)
    for cluster in {n.cluster for n in nodes}:  # and on a GPU node type of each cluster, for GPU plans
        assert not shape.wants_gpu or any(fit.fits(shape, n) for n in nodes if n.cluster == cluster and n.has_gpu)


@pytest.mark.parametrize("plan", [p for p in PLANS if fit.trial_shape(p).bundle.get("GPU") == 1])
def test_one_gpu_trials_fit_the_one_gpu_groups(plan, nodes):
    """Both clusters promise a 1-GPU group for plans/paper.yaml-like trials (the cheapest place to run them)."""
    shape = fit.trial_shape(plan)
    one_gpu = [n for n in nodes if n.resources.get("GPU") == 1]
    assert {n.cluster for n in one_gpu} == {"aws-gpu", "rayjob"}
    assert all(fit.fits(shape, n) for n in one_gpu), fit.table([shape], one_gpu)
    assert not any(fit.fits(shape, n) for n in nodes if n.head)  # GPU trials never land on a head


def test_rule_single_worker_needs_one_node_ddp_may_spread_over_its_group():
    g5 = fit.NodeType("c", "g5", {"CPU": 4, "GPU": 1}, max_nodes=3)
    single = fit.TrialShape("p", 1, {"CPU": 4, "GPU": 1})
    assert fit.trials_per_node(single.bundle, g5.resources) == 1 and fit.cell(single, g5) == "1/node"
    assert not fit.fits(fit.TrialShape("p", 1, {"CPU": 5, "GPU": 1}), g5)  # more CPUs than one node has
    assert not fit.fits(fit.TrialShape("p", 1, {"CPU": 1, "slot": 1}), g5)  # a custom resource it lacks
    ddp = fit.TrialShape("p", 3, {"CPU": 4, "GPU": 1})
    assert fit.fits(ddp, g5) and fit.cell(ddp, g5) == "3 node(s)"  # PACK spills over to other nodes
    assert not fit.fits(fit.TrialShape("p", 4, {"CPU": 4, "GPU": 1}), g5)  # more nodes than max_workers


def paper_variant(tmp_path, name: str, **changes) -> Path:
    """plans/paper.yaml with some keys replaced, written under ``tmp_path`` (its data paths are absolute)."""
    raw = yaml.safe_load((REPO / "plans" / "paper.yaml").read_text()) | {"name": name, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_gpu_plan_that_fits_no_gpu_group_is_reported(nodes, tmp_path):
    plan = paper_variant(tmp_path, "huge", resources={"num_workers": 1, "cpus_per_worker": 64, "gpus_per_worker": 1})
    problems = fit.unplaceable_gpu_plans([fit.trial_shape(plan)], nodes)
    assert len(problems) == 2 and all("plan 'huge'" in p and "fits no GPU node type" in p for p in problems)
    done = subprocess.run([sys.executable, str(REPO / "cluster" / "fit.py"), str(plan)], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "fits no GPU node type of rayjob" in done.stderr
    assert "| huge (1 x {CPU: 64, GPU: 1, memory: 3.5 GiB}, largest data version 7.8 GiB) |" in done.stdout


def small_gpu_pods(tmp_path, memory: str, ray_memory: str | None = None) -> Path:
    """A KubeRay cluster whose only GPU group is a g5.xlarge-like pod (4 CPUs, 1 GPU) with ``memory``."""
    params = {"memory": ray_memory} if ray_memory else {}
    manifest = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "spec": {
        "headGroupSpec": {"rayStartParams": {"num-gpus": "0"}, "template": {"spec": {"containers": [
            {"name": "h", "resources": {"limits": {"cpu": "4", "memory": "16Gi"}}}]}}},
        "workerGroupSpecs": [{"groupName": "small", "maxReplicas": 4, "rayStartParams": params,
                              "template": {"spec": {"containers": [{"name": "w", "resources": {"limits": {
                                  "cpu": "4", "nvidia.com/gpu": "1", "memory": memory}}}]}}}]}}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_a_node_type_too_small_in_memory_for_the_paper_plan_is_reported(tmp_path):
    """Paper: 3.5 GiB private per trial, US8K's version 7.8 GiB per node. An 8 GiB pod has the CPUs and the GPU
    but not the RAM; a 12 GiB pod has Ray memory for 3 trials, but 1 GiB of Ray's processes + 3.5 + 7.8 =
    12.3 GiB > 12: US8K's version decides, and SoundCLR on ESC-50 (1.8 GiB) still fits there."""
    paper, soundclr = fit.trial_shape(REPO / "plans" / "paper.yaml"), fit.trial_shape(REPO / "plans" / "soundclr.yaml")
    (small,) = [n for n in fit.node_types(small_gpu_pods(tmp_path, "8Gi")) if not n.head]
    assert (fit.node_fit(paper, small).by_resources, fit.node_fit(paper, small).by_memory) == (1, 2)
    assert not fit.fits(paper, small)
    assert fit.cell(paper, small) == ("- (RAM 8.0 GiB < 12.3 GiB (reserve 1.0 GiB + 3.5 GiB private + 7.8 GiB data)) "
                                      "(Ray places 1)")  # Ray's memory resource (8 GiB) would still admit one
    (twelve,) = [n for n in fit.node_types(small_gpu_pods(tmp_path, "12Gi")) if not n.head]
    limits = fit.node_fit(paper, twelve)
    assert (limits.by_resources, limits.by_memory, limits.by_ram, limits.per_node) == (1, 3, 0, 0)
    assert fit.fits(soundclr, twelve) and fit.cell(soundclr, twelve) == "1/node, RAM 6.2 GiB of 12.0 GiB"
    done = subprocess.run([sys.executable, str(REPO / "cluster" / "fit.py"), str(REPO / "plans" / "paper.yaml"),
                           str(small_gpu_pods(tmp_path, "12Gi"))], capture_output=True, text=True)
    assert done.returncode == 1, done.stdout
    assert "plan 'paper'" in done.stderr and "fits no GPU node type of small" in done.stderr
    assert "RAM 12.0 GiB < 12.3 GiB" in done.stderr
    # Ray itself would place the trial there (CPU, GPU and its memory resource allow it): said, with the fix
    assert ("plan 'paper' on small:small: Ray places up to 1 bundle(s) per node (CPU / GPU and its memory "
            "resource allow it) but the node's RAM holds 0 with their data (12.3 GiB needed, 12.0 GiB there): give "
            "it more RAM") in done.stderr


def test_ray_memory_below_a_trial_private_memory_is_reported(tmp_path):
    """rayStartParams.memory wins over the pod's limit: 3 GB of Ray memory cannot grant a 3.5 GiB request."""
    (node,) = [n for n in fit.node_types(small_gpu_pods(tmp_path, "64Gi", ray_memory="3000000000")) if not n.head]
    paper = fit.trial_shape(REPO / "plans" / "paper.yaml")
    assert node.resources["memory"] == 3e9 and node.ram_bytes == 64 * GIB
    assert not fit.fits(paper, node) and fit.cell(paper, node) == "- (Ray memory 2.8 GiB < 3.5 GiB private)"


def test_ram_bounds_how_many_trials_share_a_node():
    """Four GPUs and 24 GiB: reserve 2 + k x 3.5 + the k largest versions (7.8, 5.4, 1.8 GiB): k = 1 needs
    13.3 GiB, k = 2 needs 22.2, k = 3 needs 27.5 > 24, so two trials at once, not four."""
    paper = fit.trial_shape(REPO / "plans" / "paper.yaml")
    node = fit.NodeType("c", "g4", {"CPU": 48, "GPU": 4, "memory": fit.ray_default_memory(24 * GIB)}, 2,
                        ram_bytes=24 * GIB)
    limits = fit.node_fit(paper, node)
    assert (limits.by_resources, limits.by_memory, limits.by_ram, limits.per_node) == (4, 4, 2, 2)
    # Ray's scheduler knows CPUs, GPUs and its memory resource (16.1 GiB: 4 requests), not RAM: it would put
    # 4 trials there, so the node type is reported with the Ray memory that stops at 2 (2 x 3.5 GiB)
    assert limits.ray_places == 4 and limits.overcommitted
    assert fit.cell(paper, node) == "2/node, RAM 22.2 GiB of 24.0 GiB (Ray places 4)"
    line = fit.overcommit(paper, node)
    assert "Ray places up to 4 bundle(s)" in line and "RAM holds 2" in line and "31.0 GiB needed, 24.0 GiB" in line
    assert f"lower its Ray memory to 7.0 GiB (resources.memory / rayStartParams memory, in bytes: " \
           f"{2 * paper.private_bytes})" in line
    assert fit.ram_needed(paper, node, 2) == 2 * GIB + 2 * paper.private_bytes + paper.shared_bytes(2)
    assert paper.shared_bytes(2) == paper.shared_bytes(1) + sorted(paper.memory.datasets.values())[-2]


def test_kuberay_groups_read_ray_start_params_first(tmp_path):
    manifest = tmp_path / "rc.yaml"
    manifest.write_text("""apiVersion: ray.io/v1
kind: RayCluster
spec:
  headGroupSpec:
    rayStartParams: {num-cpus: "0", memory: "2000000000"}
    template: {spec: {containers: [{name: h, resources: {limits: {cpu: "2", memory: 4Gi}}}]}}
  workerGroupSpecs:
    - groupName: w
      maxReplicas: 2
      rayStartParams: {num-cpus: "2", resources: '"{\\"trial_slot\\": 1}"'}
      template: {spec: {containers: [{name: w, resources: {requests: {cpu: "3500m", nvidia.com/gpu: "1",
                                                                       memory: 16G}}}]}}
""")
    head, worker = fit.node_types(manifest)
    assert head.resources == {"CPU": 0, "GPU": 0, "memory": 2e9} and head.head and head.ram_bytes == 4 * GIB
    # no memory limit: KubeRay passes no --memory, Ray sizes itself from the host (at least the request)
    assert worker.resources == {"CPU": 2, "GPU": 1, "memory": pytest.approx(0.7 * 16e9), "trial_slot": 1}
    assert worker.max_nodes == 2 and worker.ram_bytes == 16 * 10**9


@pytest.mark.parametrize("text, value", [("64Gi", 64 * GIB), ("16G", 16 * 10**9), ("512Mi", 512 * 2**20),
                                         ("1e9", 10**9), (2000000000, 2 * 10**9), ("1.5Ti", int(1.5 * 2**40))])
def test_kubernetes_memory_quantities(text, value):
    assert fit._bytes(text, "here") == value


def test_unreadable_inputs_fail_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresources: {num_worker: 2}\n")
    with pytest.raises(fit.FitError, match=r"bad.yaml: cannot read the plan: .*num_worker"):
        fit.trial_shape(bad)
    bad.write_text("available_node_types: {gpu: {node_config: {InstanceType: x9.huge}, max_workers: 1}}\n")
    with pytest.raises(fit.FitError, match="instance type 'x9.huge' is not in orchestrator/cluster_fit.py "
                                           r"INSTANCE_TYPES; add it with its vCPUs, GPUs and RAM \(ram_gib\)"):
        fit.node_types(bad)
    bad.write_text("apiVersion: ray.io/v1\nkind: RayCluster\nspec: {headGroupSpec: {template: {spec: {containers: "
                   "[{name: h, resources: {limits: {cpu: '2'}}}]}}}}\n")
    with pytest.raises(fit.FitError, match="bad: headGroupSpec: the Ray container has no memory limit or request.*"
                                           "set resources.limits.memory"):
        fit.node_types(bad)
    bad.write_text("apiVersion: ray.io/v1\nkind: RayCluster\nspec: {headGroupSpec: {template: {spec: {containers: "
                   "[{name: h, resources: {limits: {cpu: '2', memory: lots}}}]}}}}\n")
    with pytest.raises(fit.FitError, match="headGroupSpec: container memory: 'lots' is not a memory quantity"):
        fit.node_types(bad)
