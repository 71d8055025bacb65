"""Which node types of the shipped clusters can host one trial of each plan (offline, no cloud call).

    python cluster/fit.py                       # every plan under plans/ x every node type of both clusters
    python cluster/fit.py plans/paper.yaml cluster/rayjob.yaml

What a node type offers (:func:`node_types`):

- ``cluster/aws-gpu.yaml`` (Ray cluster launcher): each ``available_node_types`` entry's ``resources``; keys it
  leaves out are what Ray detects on the instance type (``INSTANCE_TYPES``: vCPUs and GPUs), as ``ray up`` does.
- ``cluster/rayjob.yaml`` (KubeRay): the head group and each ``workerGroupSpecs`` group. CPUs and GPUs are
  ``rayStartParams`` ``num-cpus`` / ``num-gpus`` when given, else the Ray container's ``limits`` (then
  ``requests``) ``cpu`` / ``nvidia.com/gpu``, which is what KubeRay passes to ``ray start``. Custom resources
  come from ``rayStartParams.resources``.

The rule (:func:`trials_per_node`, :func:`fits`): a trial asks for ``num_workers`` bundles of
``{CPU: cpus_per_worker, GPU: gpus_per_worker, **custom}`` (the sweep's placement: one bundle held by the Tune
trial itself for a single-worker trial; for a DDP trial one bundle per Ray Train worker, and a driver that
asks for no CPU). A single-worker trial fits a node type when one node of it holds the bundle. A DDP trial
fits a node type when its bundles fit on at most ``max_workers`` nodes of that one type (Ray Train's default
``PACK`` placement fills a node first and spills over to others); the plans have no setting that pins a DDP
trial to one node. Mixing node types inside one trial is possible in Ray but not counted here.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTERS = (REPO / "cluster" / "aws-gpu.yaml", REPO / "cluster" / "rayjob.yaml")

# What Ray detects on the EC2 instance types the configs use (vCPUs, NVIDIA GPUs).
INSTANCE_TYPES = {
    "m6i.2xlarge": {"CPU": 8, "GPU": 0},
    "g5.xlarge": {"CPU": 4, "GPU": 1},
    "g5.2xlarge": {"CPU": 8, "GPU": 1},
    "g5.12xlarge": {"CPU": 48, "GPU": 4},
}


class FitError(ValueError):
    """A cluster or plan file cannot be read for the fit check; the message names the file and key."""


@dataclass(frozen=True)
class NodeType:
    """One node type (launcher) or group (KubeRay): what one node offers, and how many there can be."""

    cluster: str  # file stem: aws-gpu, rayjob
    name: str
    resources: dict[str, float]
    max_nodes: int
    head: bool = False

    @property
    def label(self) -> str:
        return f"{self.cluster}:{self.name}"

    @property
    def has_gpu(self) -> bool:
        return self.resources.get("GPU", 0) > 0


# ---------------------------------------------------------------- what node types offer


def _launcher_types(config: dict[str, Any], stem: str) -> list[NodeType]:
    """Node types of a Ray cluster-launcher config (explicit resources over the instance type's)."""
    found = []
    for name, spec in (config.get("available_node_types") or {}).items():
        shape = (spec.get("node_config") or {}).get("InstanceType")
        if shape not in INSTANCE_TYPES and not {"CPU", "GPU"} <= set(spec.get("resources") or {}):
            raise FitError(f"{stem}: available_node_types.{name}: instance type {shape!r} is not in "
                           "cluster/fit.py INSTANCE_TYPES; add it or declare resources CPU and GPU")
        offered = dict(INSTANCE_TYPES.get(shape, {})) | {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        head = name == config.get("head_node_type")
        found.append(NodeType(stem, name, offered, 1 if head else int(spec.get("max_workers", 0)), head))
    return found


def _quantity(value: Any) -> float:
    """A Kubernetes quantity of CPUs or GPUs: 4, "4", "3500m"."""
    text = str(value).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _group_resources(group: dict[str, Any], where: str) -> dict[str, float]:
    """Ray resources of a KubeRay group's pods: rayStartParams first, else the Ray container's limits/requests."""
    params = group.get("rayStartParams") or {}
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        raise FitError(f"{where}: template.spec.containers is empty")
    pod = containers[0].get("resources") or {}
    sized = (pod.get("requests") or {}) | (pod.get("limits") or {})  # KubeRay reads limits, then requests
    offered = {"CPU": _quantity(params.get("num-cpus", sized.get("cpu", 0))),
               "GPU": _quantity(params.get("num-gpus", sized.get("nvidia.com/gpu", 0)))}
    custom = params.get("resources")
    if custom:
        try:
            offered |= {k: float(v) for k, v in json.loads(custom.strip("'\"").replace('\\"', '"')).items()}
        except (ValueError, AttributeError):
            raise FitError(f"{where}: rayStartParams.resources is not a JSON mapping: {custom!r}") from None
    return offered


def _kuberay_types(config: dict[str, Any], stem: str) -> list[NodeType]:
    """The head group and every worker group of a RayJob / RayCluster manifest."""
    spec = config.get("spec") or {}
    cluster = spec.get("rayClusterSpec") or spec  # RayJob wraps a RayCluster spec
    found = [NodeType(stem, "head", _group_resources(cluster.get("headGroupSpec") or {}, f"{stem}: headGroupSpec"),
                      1, head=True)]
    for group in cluster.get("workerGroupSpecs") or []:
        name = group.get("groupName", "?")
        found.append(NodeType(stem, name, _group_resources(group, f"{stem}: workerGroupSpecs.{name}"),
                              int(group.get("maxReplicas", 0))))
    return found


def node_types(path: str | Path) -> list[NodeType]:
    """Node types of a cluster file: a launcher YAML (``available_node_types``) or a KubeRay manifest."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FitError(f"{path}: cannot read it as YAML: {exc}") from None
    if isinstance(config, dict) and "available_node_types" in config:
        return _launcher_types(config, path.stem)
    if isinstance(config, dict) and str(config.get("apiVersion", "")).startswith("ray.io/"):
        return _kuberay_types(config, path.stem)
    raise FitError(f"{path}: neither a Ray cluster-launcher config nor a KubeRay manifest")


# ---------------------------------------------------------------- what one trial asks for


@dataclass(frozen=True)
class TrialShape:
    """One trial of a plan: ``workers`` bundles of ``bundle`` each."""

    plan: str
    workers: int
    bundle: dict[str, float]

    @property
    def wants_gpu(self) -> bool:
        return self.bundle.get("GPU", 0) > 0


def trial_shape(path: str | Path) -> TrialShape:
    """The bundles of one trial of the plan at ``path`` (only ``name`` and ``resources`` are read, so a plan
    whose data lives on a cluster, e.g. /data/..., is checked on any machine)."""
    from orchestrator.config import from_dict
    from orchestrator.errors import ConfigError
    from orchestrator.plan import Resources

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        res = from_dict(Resources, raw.get("resources"), where="plan.resources")
    except (OSError, yaml.YAMLError, AttributeError, ConfigError) as exc:
        raise FitError(f"{path}: cannot read the plan's resources: {exc}") from None
    bundle = {"CPU": float(res.cpus_per_worker), "GPU": float(res.gpus_per_worker),
              **{k: float(v) for k, v in res.custom.items()}}
    return TrialShape(str(raw.get("name") or path.stem), res.num_workers, {k: v for k, v in bundle.items() if v > 0})


# ---------------------------------------------------------------- the rule


def trials_per_node(bundle: dict[str, float], offered: dict[str, float]) -> int:
    """How many ``bundle``s one node offering ``offered`` holds at once (0: not even one)."""
    counts = [math.floor(offered.get(name, 0.0) / amount + 1e-9) for name, amount in bundle.items() if amount > 0]
    return min(counts) if counts else 1


def fits(shape: TrialShape, node: NodeType) -> bool:
    """One trial of ``shape`` can be placed on nodes of type ``node`` (see the module docstring for the rule)."""
    per_node = trials_per_node(shape.bundle, node.resources)
    return per_node > 0 and math.ceil(shape.workers / per_node) <= max(node.max_nodes, 0)


def cell(shape: TrialShape, node: NodeType) -> str:
    """A table cell: '-' when it does not fit; else trials per node (single-worker) or nodes per trial (DDP)."""
    if not fits(shape, node):
        return "-"
    per_node = trials_per_node(shape.bundle, node.resources)
    if shape.workers == 1:
        return f"{per_node}/node"
    return f"{math.ceil(shape.workers / per_node)} node(s)"


def unplaceable_gpu_plans(shapes: list[TrialShape], nodes: list[NodeType]) -> list[str]:
    """One line per (GPU plan, cluster file) where no GPU node type of that cluster can host a trial."""
    problems = []
    for cluster in dict.fromkeys(n.cluster for n in nodes):
        gpu_nodes = [n for n in nodes if n.cluster == cluster and n.has_gpu]
        for shape in (s for s in shapes if s.wants_gpu):
            if not any(fits(shape, n) for n in gpu_nodes):
                offered = "; ".join(f"{n.name} {_fmt(n.resources)} x{n.max_nodes}" for n in gpu_nodes) or "none"
                problems.append(f"plan {shape.plan!r} ({shape.workers} x {_fmt(shape.bundle)}) fits no GPU node "
                                f"type of {cluster} (offered: {offered})")
    return problems


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"


# ---------------------------------------------------------------- table


def table(shapes: list[TrialShape], nodes: list[NodeType]) -> str:
    """A Markdown table: a row per plan, a column per node type."""
    head = ["plan (workers x bundle)"] + [n.label + (" (head)" if n.head else "") for n in nodes]
    rows = [[f"{s.plan} ({s.workers} x {_fmt(s.bundle)})"] + [cell(s, n) for n in nodes] for s in shapes]
    offers = [["node offers (max nodes)"] + [f"{_fmt(n.resources)} x{n.max_nodes}" for n in nodes]]
    lines = ["| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + offers + rows]
    return "\n".join(lines)


def _is_cluster(path: Path) -> bool:
    """A cluster file (launcher config or KubeRay manifest), as opposed to a plan."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FitError(f"{path}: cannot read it as YAML: {exc}") from None
    return isinstance(config, dict) and ("available_node_types" in config
                                         or str(config.get("apiVersion", "")).startswith("ray.io/"))


def main(argv: list[str] | None = None) -> int:
    """Print the fit table for the plans and cluster files given (default: plans/*.yaml x both clusters)."""
    args = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        clusters = [a for a in args if _is_cluster(a)] or list(CLUSTERS)
        plans = [a for a in args if a not in clusters] or sorted((REPO / "plans").glob("*.yaml"))
        shapes = [trial_shape(p) for p in plans]
        nodes = [n for c in clusters for n in node_types(c)]
    except FitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(shapes, nodes))
    problems = unplaceable_gpu_plans(shapes, nodes)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # orchestrator/ when run as `python cluster/fit.py` from anywhere
    sys.exit(main())
