"""Which node types of a cluster file can host one trial of a plan, by resources and by memory (offline, no
cloud call). ``cluster/fit.py`` prints the table for the shipped plans and clusters; ``rethink-audio plan
--cluster`` (``orchestrator.cost``) uses the same rule for its trials per node.

What a node type offers (:func:`node_types`):

- ``cluster/aws-gpu.yaml`` (Ray cluster launcher): each ``available_node_types`` entry's ``resources``; keys it
  leaves out are what Ray detects on the instance type (``INSTANCE_TYPES``: vCPUs, GPUs and RAM), as ``ray up``
  does. Ray's ``memory`` resource is ``resources.memory`` when given, else Ray's default: 70 % of the memory
  available at ``ray start`` (the rest is the object store), i.e. ``0.7 x (RAM - OS_RESERVE_BYTES)``.
- ``cluster/rayjob.yaml`` (KubeRay): the head group and each ``workerGroupSpecs`` group. CPUs and GPUs are
  ``rayStartParams`` ``num-cpus`` / ``num-gpus`` when given, else the Ray container's ``limits`` (then
  ``requests``) ``cpu`` / ``nvidia.com/gpu``, which is what KubeRay passes to ``ray start``. Custom resources
  come from ``rayStartParams.resources``. The pod's RAM is the container's memory limit (else its request);
  Ray's ``memory`` is ``rayStartParams.memory``, else the memory limit (KubeRay passes it as ``--memory``),
  else 70 % of the request (Ray then sizes itself from the host: at least this).

What a trial asks for (:func:`trial_shape`): ``num_workers`` bundles of ``{CPU: cpus_per_worker, GPU:
gpus_per_worker, **custom, memory: private}`` (the sweep's placement: one bundle held by the Tune trial itself
for a single-worker trial; for a DDP trial one bundle per Ray Train worker, and a driver that asks for no CPU).
``private`` is ``orchestrator.memory.plan_memory``'s host memory private to one trial process, the same for
every trial of the plan. The trial's dataset version is not in it: each node maps a version once, read-only
and shared by every trial there (``orchestrator.data_cache``); those clean page-cache pages are not Ray's
``memory`` resource, but they must stay resident next to the trials.

The rule (:func:`node_fit`, :func:`fits`): one node holds k bundles, k = the smallest of

- by resources: ``floor(offered / asked)`` for CPU, GPU and every custom resource;
- by Ray's memory: ``floor(memory resource / private)``;
- by RAM: the largest k with ``reserve + k x private + shared(k) <= RAM``, where ``shared(k)`` is the k
  largest dataset versions of the plan (every bundle on a node may belong to a trial of another dataset; a
  version of unknown size counts 0, and ``rethink-audio plan`` shows it as unknown) and
  ``reserve`` is :attr:`NodeType.reserve_bytes`: the OS (``OS_RESERVE_BYTES``, not inside a pod, whose limit
  excludes the kubelet's reserve) plus Ray's own processes (``RAY_DAEMONS_BYTES``; ``HEAD_EXTRA_BYTES`` more
  on a head). Ray's object store is not counted: its shared memory is used only as objects fill it, and
  trials put little there (metrics; checkpoints go to storage, data come from the node's cache).

A single-worker trial fits a node type when k >= 1. A DDP trial fits when its bundles fit on at most
``max_workers`` nodes of that one type (Ray Train's default ``PACK`` placement fills a node first and spills
over to others); the plans have no setting that pins a DDP trial to one node. Mixing node types inside one
trial is possible in Ray but not counted here.

Ray's scheduler (and so the autoscaler's choice of node type) knows only the first two limits. A node type
whose RAM holds fewer bundles than Ray would place there (:func:`overcommit`) would see trials swap out their
data or be OOM-killed; its cell says "Ray places N". ``cluster/fit.py`` exits 1 when a GPU plan fits no GPU node type
of a cluster, naming what is short (a resource, Ray's memory or RAM), or when Ray would over-commit a GPU node
type's RAM, naming the Ray memory setting that would stop it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.errors import ConfigError
from orchestrator.study import resource_bundle

if TYPE_CHECKING:  # imported where used: reading a cluster file needs no memory table
    from orchestrator.memory import PlanMemory

GIB = 2**30

# What Ray detects on the EC2 instance types (vCPUs, NVIDIA GPUs) and their RAM in GiB (AWS's instance
# specifications): the types the configs use and the other ones orchestrator/data/prices.yaml prices.
INSTANCE_TYPES = {
    "m6i.2xlarge": {"CPU": 8, "GPU": 0, "ram_gib": 32},
    "g5.xlarge": {"CPU": 4, "GPU": 1, "ram_gib": 16},
    "g5.2xlarge": {"CPU": 8, "GPU": 1, "ram_gib": 32},
    "g5.12xlarge": {"CPU": 48, "GPU": 4, "ram_gib": 192},
    "g5.48xlarge": {"CPU": 192, "GPU": 8, "ram_gib": 768},
    "g6.xlarge": {"CPU": 4, "GPU": 1, "ram_gib": 16},
    "p4d.24xlarge": {"CPU": 96, "GPU": 8, "ram_gib": 1152},
    "p5.48xlarge": {"CPU": 192, "GPU": 8, "ram_gib": 2048},
}

# The OS of a VM before Ray starts (kernel and its reservations, systemd, SSH, cloud and driver agents): an
# allowance, not measured on EC2. `ray start` sees it as used and sizes its memory resource from the rest.
OS_RESERVE_BYTES = 1 * GIB
# Ray's own processes on a node: raylet, dashboard agent, runtime-env agent, log monitor, an idle worker. An
# idle local Ray 2.60 node measured 0.25 GiB PSS for these (0.64 GiB with the head's GCS, dashboard and
# autoscaler; smaps_rollup with the pinned wheels); the allowance leaves room for their growth under a sweep.
RAY_DAEMONS_BYTES = 1 * GIB
# A head also runs the GCS, the dashboard, the autoscaler, the job driver and Tune's controller.
HEAD_EXTRA_BYTES = 2 * GIB
# Ray's default split of a node's available memory: 30 % object store, the rest its `memory` resource
# (ray._private.resource_and_label_spec, DEFAULT_OBJECT_STORE_MEMORY_PROPORTION).
RAY_MEMORY_FRACTION = 0.7


class FitError(ConfigError):
    """A cluster or plan file cannot be read for the fit check; the message names the file and key."""


@dataclass(frozen=True)
class NodeType:
    """One node type (launcher) or group (KubeRay): what one node offers, and how many there can be.
    ``resources`` holds Ray's ``memory`` resource in bytes; ``ram_bytes`` is the VM's or the pod's RAM
    (None: not known, only Ray's resources are checked)."""

    cluster: str  # file stem: aws-gpu, rayjob
    name: str
    resources: dict[str, float]
    max_nodes: int
    head: bool = False
    ram_bytes: int | None = None
    in_pod: bool = False  # a KubeRay pod: its memory limit excludes the OS
    instance: str | None = None  # EC2 instance type (launcher InstanceType; KubeRay node affinity), if named
    cluster_max_workers: int | None = None  # the launcher's cap on worker nodes of all types together

    @property
    def label(self) -> str:
        return f"{self.cluster}:{self.name}"

    @property
    def has_gpu(self) -> bool:
        return self.resources.get("GPU", 0) > 0

    @property
    def reserve_bytes(self) -> int:
        """RAM that trials cannot have: the OS (outside a pod's limit) and Ray's processes."""
        return (0 if self.in_pod else OS_RESERVE_BYTES) + RAY_DAEMONS_BYTES + (HEAD_EXTRA_BYTES if self.head else 0)


# ---------------------------------------------------------------- what node types offer


def ray_default_memory(ram_bytes: int, in_pod: bool = False) -> float:
    """Ray's ``memory`` resource when nothing sets it: 70 % of what is available at ``ray start``."""
    return RAY_MEMORY_FRACTION * (ram_bytes - (0 if in_pod else OS_RESERVE_BYTES))


def _launcher_types(config: dict[str, Any], stem: str) -> list[NodeType]:
    """Node types of a Ray cluster-launcher config (explicit resources over the instance type's)."""
    found = []
    for name, spec in (config.get("available_node_types") or {}).items():
        shape = (spec.get("node_config") or {}).get("InstanceType")
        if shape not in INSTANCE_TYPES:
            raise FitError(f"{stem}: available_node_types.{name}: instance type {shape!r} is not in "
                           "orchestrator/cluster_fit.py INSTANCE_TYPES; add it with its vCPUs, GPUs and RAM (ram_gib)")
        detected = INSTANCE_TYPES[shape]
        ram = int(detected["ram_gib"] * GIB)
        offered = {"CPU": float(detected["CPU"]), "GPU": float(detected["GPU"]), "memory": ray_default_memory(ram)}
        offered |= {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        head = name == config.get("head_node_type")
        found.append(NodeType(stem, name, offered, 1 if head else int(spec.get("max_workers", 0)), head, ram,
                              instance=shape, cluster_max_workers=config.get("max_workers")))
    return found


def _quantity(value: Any) -> float:
    """A Kubernetes quantity of CPUs or GPUs: 4, "4", "3500m"."""
    text = str(value).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


# Kubernetes quantity suffixes (binary first: "Gi" must not be read as "G" + junk).
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def _bytes(value: Any, where: str) -> int:
    """A Kubernetes memory quantity ("64Gi", "16G", "512Mi", "1e9", 2000000000) or Ray's byte count."""
    text = str(value).strip().strip("'\"")
    try:
        for suffix, factor in _SUFFIXES.items():
            if text.endswith(suffix):
                return int(float(text[: -len(suffix)]) * factor)
        return int(float(text))
    except ValueError:
        raise FitError(f"{where}: {value!r} is not a memory quantity (bytes, or e.g. 64Gi, 16G)") from None


def _group_memory(params: dict[str, Any], sized: dict[str, Any], limits: dict[str, Any],
                  where: str) -> tuple[int, float]:
    """(the pod's RAM, Ray's memory resource) of a KubeRay group."""
    if "memory" not in sized:
        raise FitError(f"{where}: the Ray container has no memory limit or request, so its RAM is unknown: set "
                       "resources.limits.memory (KubeRay passes it to ray start as --memory)")
    ram = _bytes(sized["memory"], f"{where}: container memory")
    if "memory" in params:
        return ram, float(_bytes(params["memory"], f"{where}: rayStartParams.memory"))
    if "memory" in limits:
        return ram, float(ram)
    return ram, ray_default_memory(ram, in_pod=True)  # Ray sees the host; the request is a lower bound


def _group_resources(group: dict[str, Any], where: str) -> tuple[dict[str, float], int]:
    """Ray resources of a KubeRay group's pods (rayStartParams first, else the Ray container's
    limits/requests) and the pod's RAM in bytes."""
    params = group.get("rayStartParams") or {}
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        raise FitError(f"{where}: template.spec.containers is empty")
    pod = containers[0].get("resources") or {}
    limits = pod.get("limits") or {}
    sized = (pod.get("requests") or {}) | limits  # KubeRay reads limits, then requests
    ram, memory = _group_memory(params, sized, limits, where)
    offered = {"CPU": _quantity(params.get("num-cpus", sized.get("cpu", 0))),
               "GPU": _quantity(params.get("num-gpus", sized.get("nvidia.com/gpu", 0))), "memory": memory}
    custom = params.get("resources")
    if custom:
        try:
            offered |= {k: float(v) for k, v in json.loads(custom.strip("'\"").replace('\\"', '"')).items()}
        except (ValueError, AttributeError):
            raise FitError(f"{where}: rayStartParams.resources is not a JSON mapping: {custom!r}") from None
    return offered, ram


def _kuberay_types(config: dict[str, Any], stem: str) -> list[NodeType]:
    """The head group and every worker group of a RayJob / RayCluster manifest."""
    spec = config.get("spec") or {}
    cluster = spec.get("rayClusterSpec") or spec  # RayJob wraps a RayCluster spec
    offered, ram = _group_resources(cluster.get("headGroupSpec") or {}, f"{stem}: headGroupSpec")
    found = [NodeType(stem, "head", offered, 1, True, ram, in_pod=True)]
    for group in cluster.get("workerGroupSpecs") or []:
        name = group.get("groupName", "?")
        offered, ram = _group_resources(group, f"{stem}: workerGroupSpecs.{name}")
        found.append(NodeType(stem, name, offered, int(group.get("maxReplicas", 0)), False, ram, in_pod=True,
                              instance=_pinned_instance(group)))
    return found


def _pinned_instance(group: dict[str, Any]) -> str | None:
    """The EC2 instance type a KubeRay group's pods are pinned to (node affinity on
    ``node.kubernetes.io/instance-type``), if any."""
    affinity = (((group.get("template") or {}).get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == "node.kubernetes.io/instance-type" and expr.get("values"):
                return expr["values"][0]
    return None


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
    """One trial of a plan: ``workers`` bundles of ``bundle`` each (its ``memory`` key: private bytes per
    bundle); ``memory`` is the plan's ``PlanMemory`` (None: no dataset bytes counted)."""

    plan: str
    workers: int
    bundle: dict[str, float]
    memory: PlanMemory | None = None

    @property
    def wants_gpu(self) -> bool:
        return self.bundle.get("GPU", 0) > 0

    @property
    def private_bytes(self) -> int:
        return int(self.bundle.get("memory", 0))

    def shared_bytes(self, bundles_on_node: int) -> int:
        """Dataset bytes a node holding that many bundles maps (0 when unknown or not given)."""
        return (self.memory.shared_bytes(bundles_on_node) or 0) if self.memory else 0


def plan_shape(plan, memory: PlanMemory | None = None) -> TrialShape:
    """The bundles of one trial of a loaded ``Plan``, with its private memory (``memory``: its
    ``PlanMemory`` when the caller has it, else computed here)."""
    from orchestrator.memory import plan_memory

    memory = memory or plan_memory(plan)
    res = plan.resources
    bundle = resource_bundle(res.cpus_per_worker, res.gpus_per_worker, res.custom, memory.trial_private_bytes)
    return TrialShape(plan.name, res.num_workers, {k: float(v) for k, v in bundle.items() if v > 0}, memory)


def trial_shape(path: str | Path) -> TrialShape:
    """The bundles of one trial of the plan at ``path``. The plan is built from its YAML without
    ``load_plan``'s look at this machine's files (default weights, local dataset cards), and dataset sizes
    come from readable cards or the official sizes (as in ``rethink-audio plan``), so a plan whose data live
    on a cluster (/data/..., s3://) is checked on any machine."""
    from orchestrator.plan import plan_from_mapping

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise ConfigError("a plan is a YAML mapping (name, storage, datasets, resources, ...)")
        return plan_shape(plan_from_mapping(raw, path.parent))
    except (OSError, yaml.YAMLError, ConfigError) as exc:
        raise FitError(f"{path}: cannot read the plan: {exc}") from None


# ---------------------------------------------------------------- the rule


def trials_per_node(bundle: dict[str, float], offered: dict[str, float]) -> int:
    """How many ``bundle``s one node offering ``offered`` holds at once by Ray's resources (0: not one)."""
    counts = [math.floor(offered.get(name, 0.0) / amount + 1e-9) for name, amount in bundle.items() if amount > 0]
    return min(counts) if counts else 1


def ram_needed(shape: TrialShape, node: NodeType, bundles: int) -> int:
    """RAM a node must hold for ``bundles`` bundles of ``shape``: reserve + private each + shared data."""
    return node.reserve_bytes + bundles * shape.private_bytes + shape.shared_bytes(bundles)


def trials_by_ram(shape: TrialShape, node: NodeType) -> int | None:
    """The most bundles whose :func:`ram_needed` fits the node's RAM (None: RAM unknown, or no private
    memory asked so no limit beyond the first)."""
    if node.ram_bytes is None:
        return None
    if shape.private_bytes <= 0:
        return 0 if ram_needed(shape, node, 1) > node.ram_bytes else None
    versions = len(shape.memory.datasets) if shape.memory else 0
    k = 0
    while k < versions and ram_needed(shape, node, k + 1) <= node.ram_bytes:
        k += 1
    if k == versions:  # every version counted: each further bundle adds its private memory only
        k += max(0, node.ram_bytes - ram_needed(shape, node, k)) // shape.private_bytes
    return k


@dataclass(frozen=True)
class NodeFit:
    """How many bundles of a trial one node holds, and which limit decides."""

    by_resources: int  # CPU, GPU, custom resources
    by_memory: int | None  # Ray's memory resource / private memory (None: the trial asks for none)
    by_ram: int | None  # RAM for reserve + private + shared data (None: not limited or unknown)
    per_node: int  # the smallest of the three
    ram_bytes: int  # RAM needed at per_node bundles (at 1 when none fits)

    @property
    def ray_places(self) -> int:
        """Bundles Ray's scheduler puts on one node: it knows its resources and its memory, not RAM or data."""
        return min(self.by_resources, self.by_resources if self.by_memory is None else self.by_memory)

    @property
    def overcommitted(self) -> bool:
        """Ray would place more bundles on the node than its RAM holds with their data."""
        return self.by_ram is not None and self.by_ram < self.ray_places


def node_fit(shape: TrialShape, node: NodeType) -> NodeFit:
    """The three limits of the module docstring's rule for ``shape`` on one node of ``node``."""
    plain = {k: v for k, v in shape.bundle.items() if k != "memory"}
    by_resources = trials_per_node(plain, node.resources)
    by_memory = trials_per_node({"memory": shape.private_bytes}, node.resources) if shape.private_bytes else None
    by_ram = trials_by_ram(shape, node)
    per_node = min(n for n in (by_resources, by_memory, by_ram) if n is not None)
    return NodeFit(by_resources, by_memory, by_ram, per_node, ram_needed(shape, node, max(per_node, 1)))


def fits(shape: TrialShape, node: NodeType) -> bool:
    """One trial of ``shape`` can be placed on nodes of type ``node`` (see the module docstring for the rule)."""
    per_node = node_fit(shape, node).per_node
    return per_node > 0 and math.ceil(shape.workers / per_node) <= max(node.max_nodes, 0)


def shortfall(shape: TrialShape, node: NodeType) -> str:
    """Why one bundle of ``shape`` does not fit a node of ``node`` ("" when it does, or only the node count is
    short): the memory limits are spelled out with their numbers."""
    fit = node_fit(shape, node)
    if fit.by_resources == 0:
        return "resources"
    if fit.by_memory == 0:
        return f"Ray memory {gib(node.resources.get('memory', 0))} < {gib(shape.private_bytes)} private"
    if fit.by_ram == 0:
        return (f"RAM {gib(node.ram_bytes)} < {gib(fit.ram_bytes)} (reserve {gib(node.reserve_bytes)} + "
                f"{gib(shape.private_bytes)} private + {gib(shape.shared_bytes(1))} data)")
    return ""


def overcommit(shape: TrialShape, node: NodeType) -> str:
    """A line when Ray would put more bundles of ``shape`` on a node of ``node`` than its RAM holds with their
    data (its scheduler counts the ``memory`` resource, not RAM or the shared data), with the fix; else ""."""
    fit = node_fit(shape, node)
    if not fit.overcommitted:
        return ""
    cap = fit.by_ram * shape.private_bytes
    fix = (f"lower its Ray memory to {gib(cap)} (resources.memory / rayStartParams memory, in bytes: {cap}) or "
           "give it more RAM") if fit.by_ram else "give it more RAM (one trial and its data do not fit)"
    return (f"plan {shape.plan!r} on {node.label}: Ray places up to {fit.ray_places} bundle(s) per node (CPU / GPU "
            f"and its memory resource allow it) but the node's RAM holds {fit.by_ram} with their data "
            f"({gib(ram_needed(shape, node, fit.ray_places))} needed, {gib(node.ram_bytes)} there): {fix}")


def cell(shape: TrialShape, node: NodeType) -> str:
    """A table cell: '-' (with what is short) when it does not fit; else trials per node (single-worker) or
    nodes per trial (DDP), and the RAM they need of the node's; "Ray places N" when its scheduler would put
    more there than RAM holds."""
    fit = node_fit(shape, node)
    warn = f" (Ray places {fit.ray_places})" if fit.overcommitted else ""
    if not fits(shape, node):
        why = shortfall(shape, node)
        return (f"- ({why})" if why and why != "resources" else "-") + warn
    ram = f", RAM {gib(fit.ram_bytes)} of {gib(node.ram_bytes)}" if node.ram_bytes else ""
    if shape.workers == 1:
        return f"{fit.per_node}/node{ram}{warn}"
    return f"{math.ceil(shape.workers / fit.per_node)} node(s){ram}{warn}"


def unplaceable_gpu_plans(shapes: list[TrialShape], nodes: list[NodeType]) -> list[str]:
    """One line per (GPU plan, cluster file) where no GPU node type of that cluster can host a trial."""
    problems = []
    for cluster in dict.fromkeys(n.cluster for n in nodes):
        gpu_nodes = [n for n in nodes if n.cluster == cluster and n.has_gpu]
        for shape in (s for s in shapes if s.wants_gpu):
            if not any(fits(shape, n) for n in gpu_nodes):
                offered = "; ".join(_offer(shape, n) for n in gpu_nodes) or "none"
                problems.append(f"plan {shape.plan!r} ({shape.workers} x {_fmt(shape.bundle)}) fits no GPU node "
                                f"type of {cluster} (offered: {offered})")
    return problems


def overcommitted_gpu_nodes(shapes: list[TrialShape], nodes: list[NodeType]) -> list[str]:
    """One line per (GPU plan, GPU node type) on which Ray would place more trials than the node's RAM holds."""
    return [line for s in shapes if s.wants_gpu for n in nodes if n.has_gpu if (line := overcommit(s, n))]


def _offer(shape: TrialShape, node: NodeType) -> str:
    why = shortfall(shape, node)
    return f"{node.name} {_fmt(node.resources)} x{node.max_nodes}" + (f" ({why})" if why else "")


def gib(value: float | None) -> str:
    """Bytes as GiB with one decimal (MiB below 0.1 GiB, so a small dataset does not read as 0)."""
    if value is None:
        return "?"
    return f"{value / GIB:.1f} GiB" if value >= 0.1 * GIB or value == 0 else f"{value / 2**20:.0f} MiB"


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {gib(v) if k == 'memory' else f'{v:g}'}" for k, v in resources.items()) + "}"


# ---------------------------------------------------------------- table


def _plan_label(shape: TrialShape) -> str:
    """A row's first cell: the bundles, and the largest dataset version a node maps for this plan."""
    data = f", largest data version {gib(shape.shared_bytes(1))}" if shape.memory else ""
    return f"{shape.plan} ({shape.workers} x {_fmt(shape.bundle)}{data})"


def table(shapes: list[TrialShape], nodes: list[NodeType]) -> str:
    """A Markdown table: a row per plan, a column per node type."""
    head = ["plan (workers x bundle, data)"] + [n.label + (" (head)" if n.head else "") for n in nodes]
    offers = ["node offers (max nodes)"] + [f"{_fmt(n.resources)} x{n.max_nodes}" for n in nodes]
    ram = ["node RAM (reserve)"] + [f"{gib(n.ram_bytes)} ({gib(n.reserve_bytes)})" for n in nodes]
    rows = [[_plan_label(s)] + [cell(s, n) for n in nodes] for s in shapes]
    lines = ["| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), offers, ram] + rows]
    return "\n".join(lines)
