"""Every shipped plan against every node type of the shipped clusters (cluster/fit.py), offline."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_sweep import REPO

sys.path.insert(0, str(REPO / "cluster"))
import fit  # noqa: E402  (cluster/fit.py)

PLANS = sorted((REPO / "plans").glob("*.yaml"))


@pytest.fixture(scope="module")
def nodes() -> list[fit.NodeType]:
    return [n for path in fit.CLUSTERS for n in fit.node_types(path)]


def test_node_types_are_read_as_ray_sees_them(nodes):
    offered = {n.label: (n.resources, n.max_nodes, n.head) for n in nodes}
    assert offered["aws-gpu:head"] == ({"CPU": 8, "GPU": 0}, 1, True)  # m6i.2xlarge, auto-detected
    assert offered["aws-gpu:gpu1-spot"] == ({"CPU": 4, "GPU": 1}, 16, False)  # g5.xlarge
    assert offered["aws-gpu:gpu4-ondemand"] == ({"CPU": 48, "GPU": 4}, 1, False)  # g5.12xlarge
    assert offered["rayjob:head"] == ({"CPU": 8, "GPU": 0}, 1, True)  # num-gpus "0", pod limit 8 CPUs
    assert offered["rayjob:gpu4"] == ({"CPU": 44, "GPU": 4}, 2, False)  # pod limits


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_every_gpu_plan_fits_a_gpu_group_of_every_cluster(plan, nodes):
    shape = fit.trial_shape(plan)
    assert fit.unplaceable_gpu_plans([shape], nodes) == []
    assert any(fit.fits(shape, n) for n in nodes), fit.table([shape], nodes)


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


def test_a_gpu_plan_that_fits_no_gpu_group_is_reported(nodes, tmp_path):
    plan = tmp_path / "huge.yaml"
    plan.write_text("name: huge\nresources: {num_workers: 1, cpus_per_worker: 64, gpus_per_worker: 1}\n")
    problems = fit.unplaceable_gpu_plans([fit.trial_shape(plan)], nodes)
    assert len(problems) == 2 and all("plan 'huge'" in p and "fits no GPU node type" in p for p in problems)
    done = subprocess.run([sys.executable, str(REPO / "cluster" / "fit.py"), str(plan)], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "fits no GPU node type of rayjob" in done.stderr
    assert "| huge (1 x {CPU: 64, GPU: 1}) |" in done.stdout


def test_kuberay_groups_read_ray_start_params_first(tmp_path):
    manifest = tmp_path / "rc.yaml"
    manifest.write_text("""apiVersion: ray.io/v1
kind: RayCluster
spec:
  headGroupSpec:
    rayStartParams: {num-cpus: "0"}
    template: {spec: {containers: [{name: h, resources: {limits: {cpu: "2"}}}]}}
  workerGroupSpecs:
    - groupName: w
      maxReplicas: 2
      rayStartParams: {num-cpus: "2", resources: '"{\\"trial_slot\\": 1}"'}
      template: {spec: {containers: [{name: w, resources: {requests: {cpu: "3500m", nvidia.com/gpu: "1"}}}]}}
""")
    head, worker = fit.node_types(manifest)
    assert head.resources == {"CPU": 0, "GPU": 0} and head.head
    assert worker.resources == {"CPU": 2, "GPU": 1, "trial_slot": 1} and worker.max_nodes == 2


def test_unreadable_inputs_fail_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresources: {num_worker: 2}\n")
    with pytest.raises(fit.FitError, match=r"bad.yaml: cannot read the plan's resources: .*num_worker"):
        fit.trial_shape(bad)
    bad.write_text("available_node_types: {gpu: {node_config: {InstanceType: x9.huge}, max_workers: 1}}\n")
    with pytest.raises(fit.FitError, match="instance type 'x9.huge' is not in cluster/fit.py INSTANCE_TYPES"):
        fit.node_types(bad)
