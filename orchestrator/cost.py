"""Cost preview of a plan before anything runs: trials, samples, GPU-hours, wall time and dollars.

No Ray, no dataset reads beyond cheap ones: a ``data:`` dataset's ``dataset.json`` card (clip counts per
fold, augmented copies, input shape), a local FSDD/folder root's file listing; every other dataset's size
comes from published clip counts and the declared folds (``orchestrator.dataset_sizes``).

The arithmetic, per trial (the same as cluster/README.md "Costs of plans/paper.yaml"):

* train samples per epoch = training clips x (2 with ``augmented: draw`` and stored copies, 1 + K with
  ``all``, else 1); training clips = every fold but the test fold (``split: paper``) or every fold but the
  test and validation folds (``nested``), capped by ``max_train_clips`` (smoke runs);
* eval samples per epoch = the test fold (``paper``) or the validation + test folds (``nested``);
* GPU-seconds = epochs x (train / rate + eval / (rate x ``EVAL_SPEEDUP``)) x pixels / (128 x 250), where
  ``rate`` is the model's training samples/s on the chosen GPU (``data/throughput.csv``): GTZAN's 128 x 1500
  inputs cost 6x per sample.

Wall time per instance type of a cluster file = max(GPU-hours / GPUs the cluster can hold at once, the
longest trial): the ideal packing, a lower bound. Dollars = GPU-hours x instance price / GPUs per instance
(``data/prices.yaml``, dated, to be checked).

Memory (``orchestrator.memory``): the host memory private to each trial (what its Ray Train workers or Ray task ask Ray for as ``memory``),
its GPU memory, and each dataset version's bytes, mapped once per node and shared by the trials there. With a
cluster file, trials at once per node follow ``orchestrator.cluster_fit``'s rule: the fewest of what CPUs / GPUs allow,
Ray's ``memory`` resource / the private memory, and what the node's RAM holds next to the shared data.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import cluster_fit
from orchestrator.dataset_sizes import DatasetSize, dataset_size
from orchestrator.errors import ConfigError
from orchestrator.memory import PlanMemory, plan_memory
from orchestrator.study import fold_roles

DATA_DIR = Path(__file__).resolve().parent / "data"
THROUGHPUT_FILE = DATA_DIR / "throughput.csv"
PRICES_FILE = DATA_DIR / "prices.yaml"
PAPER_PIXELS = 128 * 250  # the input the throughput table is measured (or estimated) at
EVAL_SPEEDUP = 3.0  # forward only: evaluation runs ~3x faster than training (cluster/README.md)
DEFAULT_GPU = "a10g"

@dataclass
class Row:
    """Trials of one (dataset, model, init) of a plan, summed."""

    dataset: str
    model: str
    init: str
    trials: int = 0
    epochs: set[int] = field(default_factory=set)
    train_samples: float = 0.0  # over every epoch of every trial
    eval_samples: float = 0.0
    gpu_hours: float | None = 0.0  # None: no throughput row for (model, gpu)
    longest_trial_hours: float = 0.0  # wall hours of its longest trial


@dataclass(frozen=True)
class Deployment:
    """One GPU instance type of a cluster file running the whole plan."""

    instance: str
    node_types: tuple[str, ...]
    gpus_per_node: int
    nodes: int  # most nodes of this type the cluster can hold at once
    trial_slots: int  # trials at once
    wall_hours: float | None
    on_demand_usd: float | None
    spot_usd: float | None
    on_demand_per_h: float
    spot_per_h: float


@dataclass(frozen=True)
class NodeMemory:
    """Trials one node of an instance type of the cluster holds by resources and by memory
    (``orchestrator.cluster_fit``)."""

    instance: str
    node_types: tuple[str, ...]
    ram_bytes: int | None
    reserve_bytes: int  # the OS and Ray's own processes
    ray_memory: float  # Ray's `memory` resource of the node, bytes
    by_resources: int  # CPU, GPU, custom resources
    by_memory: int | None  # Ray's memory / the trial's private memory
    by_ram: int | None  # what RAM holds: reserve + k x private + the k largest dataset versions
    per_node: int
    shared_bytes: int | None  # dataset bytes the node maps with per_node trials (None: a size is unknown)
    ram_needed: int  # RAM those trials, their data and the reserve need


@dataclass
class Estimate:
    """The whole preview of one plan (see :func:`estimate`)."""

    plan: str
    gpu: str
    uses_gpu: bool
    rows: list[Row]
    sizes: dict[str, DatasetSize | None]
    deployments: list[Deployment] = field(default_factory=list)
    cluster: str | None = None
    notes: list[str] = field(default_factory=list)
    prices_as_of: str = ""
    gpus_per_trial: float = 1.0  # num_workers x gpus_per_worker
    memory: PlanMemory | None = None  # per trial and per dataset version (orchestrator/memory.py)
    node_memory: list[NodeMemory] = field(default_factory=list)  # per instance type of the cluster

    @property
    def trials(self) -> int:
        return sum(r.trials for r in self.rows)

    @property
    def gpu_hours(self) -> float | None:
        """Total GPU-hours; None when some trial's cost is unknown (a missing throughput row or size)."""
        if not self.uses_gpu:
            return 0.0
        if any(r.gpu_hours is None for r in self.rows) or any(s is None for s in self.sizes.values()):
            return None
        return sum(r.gpu_hours for r in self.rows)


# ---------------------------------------------------------------- data files


def load_throughput(path: Path = THROUGHPUT_FILE) -> dict[tuple[str, str], tuple[float, str]]:
    """(model, gpu) -> (training samples/s at 3x128x250, its source) from the shipped CSV."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {(r["model"], r["gpu"].lower()): (float(r["train_samples_per_s"]), r["source"]) for r in rows}
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the throughput table (columns model, gpu, "
                          f"train_samples_per_s, source): {exc}") from None


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    """The price file: ``as_of``, ``region`` and ``instances`` (type -> gpu, gpus, on_demand, spot)."""
    try:
        prices = yaml.safe_load(path.read_text())
        prices["instances"] = {k: dict(v) for k, v in prices["instances"].items()}
        return prices
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: cannot read the price file (as_of, region, instances: {{type: {{gpu, gpus, "
                          f"on_demand, spot}}}}): {exc}") from None


# ---------------------------------------------------------------- per trial


def samples_per_epoch(size: DatasetSize, trial) -> tuple[float, float]:
    """(train, eval) samples of one epoch of ``trial`` (a ``TrialConfig``) on a dataset of ``size``."""
    roles = fold_roles(size.folds, trial.fold, trial.valid_fold, trial.split)
    eval_folds = {roles.test, *roles.valid}
    train = sum(size.clips_per_fold[f] for f in roles.train)
    if trial.max_train_clips:
        train = min(train, trial.max_train_clips)
    factor = {"draw": 2, "all": 1 + size.copies}.get(trial.augmented, 1) if size.copies else 1
    return train * factor, sum(size.clips_per_fold.get(f, 0) for f in eval_folds)


def trial_gpu_hours(train: float, evaluate: float, epochs: int, pixels: int, rate: float) -> float:
    """GPU-hours of one trial: ``epochs`` x (train / rate + eval / (3 rate)), scaled by input pixels."""
    seconds = epochs * (train / rate + evaluate / (rate * EVAL_SPEEDUP)) * pixels / PAPER_PIXELS
    return seconds / 3600


# ---------------------------------------------------------------- the estimate


def estimate(plan, gpu: str | None = None, cluster: str | Path | None = None, *,
             rates: dict[tuple[str, str], tuple[float, str]] | None = None,
             prices: dict[str, Any] | None = None) -> Estimate:
    """The cost preview of ``plan`` (a loaded ``Plan``, already shrunk by ``smoke`` if wanted) on ``gpu``
    (default: the GPU of the cluster's first GPU node type, else a10g), with wall time and dollars per GPU
    instance type of ``cluster`` (a launcher YAML or KubeRay manifest) when given. ``rates`` and ``prices``
    replace the shipped tables (same shapes as :func:`load_throughput` / :func:`load_prices`)."""
    from orchestrator.plan import expand_grid

    prices = prices or load_prices()
    rates = rates or load_throughput()
    cluster_nodes = _cluster_nodes(Path(cluster), prices) if cluster else []
    gpu = (gpu or next((n["gpu"] for n in cluster_nodes if n["gpus"] > 0 and n["gpu"]), DEFAULT_GPU)).lower()
    sizes = {name: dataset_size(ds) for name, ds in plan.datasets.items()}
    folds_of = {name: (s.folds if s else list(ds.folds) or [1]) for (name, s), ds in
                zip(sizes.items(), plan.datasets.values())}
    trials = expand_grid(plan, {name: name for name in plan.datasets}, folds_of)
    uses_gpu = plan.resources.gpus_per_worker > 0
    result = Estimate(plan.name, gpu, uses_gpu, _rows(trials, sizes, gpu, uses_gpu, rates), sizes,
                      cluster=str(cluster) if cluster else None,
                      prices_as_of=f"{prices['as_of']} ({prices['region']})",
                      gpus_per_trial=plan.resources.num_workers * plan.resources.gpus_per_worker,
                      memory=plan_memory(plan))
    result.notes += _notes(result, plan, rates)
    shape = None  # orchestrator.cluster_fit's TrialShape: the bundle, private memory included, and the data per node
    if cluster_nodes:
        shape = cluster_fit.plan_shape(plan, result.memory)
        hosts = [n for n in cluster_nodes if n["gpus"] > 0 or not uses_gpu]
        result.node_memory = _node_memory(shape, hosts)
        # Ray's scheduler counts its memory resource, not RAM or the shared data: say where it would over-commit
        result.notes += [line for n in hosts if (line := cluster_fit.overcommit(shape, n["node"]))]
    if uses_gpu:
        result.deployments = _deployments(result, plan, cluster_nodes, prices, shape)
    return result


def _rows(trials, sizes: dict[str, DatasetSize | None], gpu: str, uses_gpu: bool, rates) -> list[Row]:
    """Sum trials into one row per (dataset, model, init), in the grid's order."""
    rows: dict[tuple[str, str, str], Row] = {}
    for trial in trials:
        key = (trial.data, trial.model, trial.init)
        row = rows.setdefault(key, Row(*key))
        row.trials += 1
        row.epochs.add(trial.optim.epochs)
        size = sizes[trial.data]
        if size is None:
            row.gpu_hours = None
            continue
        train, evaluate = samples_per_epoch(size, trial)
        row.train_samples += train * trial.optim.epochs
        row.eval_samples += evaluate * trial.optim.epochs
        rate = rates.get((trial.model, gpu))
        if not uses_gpu or rate is None or row.gpu_hours is None:
            row.gpu_hours = None if uses_gpu else 0.0
            continue
        hours = trial_gpu_hours(train, evaluate, trial.optim.epochs, size.pixels, rate[0])
        row.gpu_hours += hours
        row.longest_trial_hours = max(row.longest_trial_hours, hours / (trial.num_workers * trial.gpus_per_worker))
    return list(rows.values())


def _notes(result: Estimate, plan, rates) -> list[str]:
    """Why a figure is missing or approximate, and where every rate comes from."""
    notes = []
    for name, size in result.sizes.items():
        if size is None:
            notes.append(f"dataset {name}: size unknown (no readable dataset.json, no official size): its trials "
                         "have no samples or GPU-hours; point `data:` at a finished version to count them")
    missing = sorted({r.model for r in result.rows if (r.model, result.gpu) not in rates})
    if result.uses_gpu and missing:
        notes.append(f"no throughput row for {', '.join(missing)} on {result.gpu} in {THROUGHPUT_FILE}: "
                     "add one (model, gpu, train_samples_per_s, source) to price these trials")
    used = sorted({(r.model, result.gpu) for r in result.rows} & set(rates)) if result.uses_gpu else []
    notes += [f"throughput {m} on {g}: {rates[(m, g)][0]:g} samples/s ({rates[(m, g)][1]})" for m, g in used]
    if result.uses_gpu:
        notes.append("not counted: the CPU head node for the wall time, storage (checkpoints, S3), "
                     "preprocessing (cluster/README.md itemizes them)")
    if plan.search.enabled:
        notes.append(f"not counted: the phase-1 search ({plan.search.num_samples} trials per search)")
    return notes


# ---------------------------------------------------------------- clusters and prices


def _cluster_nodes(path: Path, prices: dict[str, Any]) -> list[dict[str, Any]]:
    """Worker node types of a cluster file with their instance type, GPU kind and the cluster's node cap."""
    nodes = []
    for node in (n for n in cluster_fit.node_types(path) if not n.head):
        cap = node.cluster_max_workers if node.cluster_max_workers is not None else 10**9
        priced = prices["instances"].get(node.instance, {})
        nodes.append({"name": node.name, "instance": node.instance, "resources": node.resources, "node": node,
                      "max_nodes": min(node.max_nodes, cap), "cap": cap, "gpu": priced.get("gpu"),
                      "gpus": int(node.resources.get("GPU", 0))})
    return nodes


def _by_instance(nodes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Node types of a cluster grouped by instance type, in the file's order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes:
        groups[node["instance"]].append(node)
    return groups


def _node_memory(shape: Any, nodes: list[dict[str, Any]]) -> list[NodeMemory]:
    """Per instance type (its first node type stands for the others, as in the wall time), how many trials of
    ``shape`` (``orchestrator.cluster_fit.TrialShape``) one node holds and what decides it."""
    out = []
    for instance, members in _by_instance(nodes).items():
        node = members[0]["node"]
        limits = cluster_fit.node_fit(shape, node)
        out.append(NodeMemory(
            str(instance or node.name), tuple(m["name"] for m in members), node.ram_bytes, node.reserve_bytes,
            node.resources.get("memory", 0.0), limits.by_resources, limits.by_memory, limits.by_ram,
            limits.per_node, shape.memory.shared_bytes(max(limits.per_node, 1)), limits.ram_bytes))
    return out


def _deployments(result: Estimate, plan, nodes: list[dict[str, Any]], prices: dict[str, Any],
                 shape: Any = None) -> list[Deployment]:
    """Wall time and dollars per GPU instance type of the cluster (or, without one, per priced instance
    type of the chosen GPU, with no wall time); trials at once follow ``orchestrator.cluster_fit``'s rule for ``shape``,
    memory included."""
    groups = _by_instance([n for n in nodes if n["gpus"] > 0 and n["gpu"] == result.gpu])
    if not nodes:
        groups = {k: [] for k, v in prices["instances"].items() if v["gpu"] == result.gpu}
    out = []
    for instance, members in groups.items():
        price = prices["instances"][instance]
        slots = nodes_count = 0
        if members:
            nodes_count = min(sum(m["max_nodes"] for m in members), members[0]["cap"])
            per_node = cluster_fit.node_fit(shape, members[0]["node"]).per_node
            slots = nodes_count * per_node // plan.resources.num_workers
            if plan.max_concurrent_trials:
                slots = min(slots, plan.max_concurrent_trials)
        out.append(_deployment(result, instance, members, price, nodes_count, slots))
    return out


def _deployment(result: Estimate, instance: str, members, price, nodes: int, slots: int) -> Deployment:
    """Wall time (ideal packing, never shorter than the longest trial) and dollars on one instance type."""
    hours = result.gpu_hours
    wall = None
    if hours is not None and slots:
        wall = max(hours / (slots * result.gpus_per_trial), max(r.longest_trial_hours for r in result.rows))
    per_gpu = 1 / price["gpus"]  # a node's price is shared by its GPUs
    return Deployment(
        instance, tuple(m["name"] for m in members), price["gpus"], nodes, slots, wall,
        None if hours is None else hours * price["on_demand"] * per_gpu,
        None if hours is None else hours * price["spot"] * per_gpu, price["on_demand"], price["spot"])


# ---------------------------------------------------------------- Markdown


def _num(value: float | None) -> str:
    """Hours: one decimal, or 3 significant digits below 0.1 (smoke runs) so they never read as 0."""
    if value is None:
        return "unknown"
    return f"{value:,.1f}" if value >= 0.1 or value == 0 else f"{value:.3g}"


def _dollars(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.0f}" if value >= 10 else f"${value:.2f}"


def _duration(hours: float | None) -> str:
    if hours is None:
        return "unknown"
    return f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def _size(value: float | None) -> str:
    """Bytes as GiB with one decimal (MiB below 0.1 GiB, so the bundled subset does not read as 0)."""
    if value is None:
        return "unknown"
    return f"{value / 2**30:.1f} GiB" if value >= 0.1 * 2**30 or value == 0 else f"{value / 2**20:.0f} MiB"


def _memory_lines(result: Estimate) -> list[str]:
    """Memory per trial (host private, GPU) and per dataset version (shared once per node)."""
    mem = result.memory
    gpu = (f"| GPU per trial | {_size(mem.trial_gpu_bytes)} | weights, gradients, Adam, bf16 activations, CUDA "
           "context; a trial's data go on the device too only when they fit beside them |") if result.uses_gpu else (
           "| GPU per trial | - | CPU trials |")
    lines = ["", f"Memory (orchestrator/memory.py; the largest trial: {mem.largest}):", "",
             "| memory | size | what |", "|---|---:|---|",
             f"| host, private, per trial | {_size(mem.trial_private_bytes)} | process, model, checkpoint, batch "
             "buffers; what each DDP rank or Ray task asks Ray for as `memory` (not yet a sweep's Tune trial) |", gpu]
    lines += [f"| data {name}, per node | {_size(size)} | the dataset version, mapped once per node |"
              for name, size in mem.datasets.items()]
    lines += ["", "A node maps each dataset version once, read-only, for every trial on it: page cache, so not part of "
                  "Ray's `memory`, but it must fit in the node's RAM next to the trials to stay resident."]
    return lines + (_node_memory_lines(result) if result.node_memory else [])


def _node_memory_lines(result: Estimate) -> list[str]:
    """Per instance type of the cluster: trials per node by CPU / GPU, by Ray's memory and by RAM."""
    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    lines = ["", f"Trials per node by memory ({result.cluster}; cluster/fit.py: the fewest of what CPUs / GPUs "
                 "allow, Ray's `memory` / private, and what RAM holds: reserve + k x private + the k largest "
                 "dataset versions):", "",
             "| instance | node types | RAM (reserve) | Ray `memory` | by CPU / GPU | by Ray `memory` | by RAM "
             "| trials / node | shared data / node | RAM needed |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n.instance} | {', '.join(n.node_types)} | {_size(n.ram_bytes)} ({_size(n.reserve_bytes)}) | "
              f"{_size(n.ray_memory)} | {n.by_resources} | {count(n.by_memory)} | {count(n.by_ram)} | "
              f"{n.per_node or '-'} | {_size(n.shared_bytes)} | {_size(n.ram_needed)} |" for n in result.node_memory]
    return lines


def render(result: Estimate) -> str:
    """The preview as Markdown: a row per (dataset, model, init), totals, memory per trial, dataset and (with a
    cluster) node, then wall time and dollars."""
    where = f"on {result.gpu}" if result.uses_gpu else "CPU only (gpus_per_worker 0): no GPU cost"
    lines = [f"## Cost preview: plan {result.plan}, {where}", "",
             "| dataset | model | init | trials | epochs | train samples | eval samples | GPU-hours |",
             "|---|---|---|---:|---|---:|---:|---:|"]
    for r in result.rows:
        epochs = "/".join(str(e) for e in sorted(r.epochs))
        lines.append(f"| {r.dataset} | {r.model} | {r.init} | {r.trials} | {epochs} | {r.train_samples:,.0f} | "
                     f"{r.eval_samples:,.0f} | {_num(r.gpu_hours) if result.uses_gpu else '-'} |")
    train = sum(r.train_samples for r in result.rows)
    evaluate = sum(r.eval_samples for r in result.rows)
    lines.append(f"| **all** | | | **{result.trials}** | | {train:,.0f} | {evaluate:,.0f} | "
                 f"**{_num(result.gpu_hours) if result.uses_gpu else '-'}** |")
    lines += ["", "Dataset sizes: " + "; ".join(
        f"{name}: {'unknown' if s is None else f'{sum(s.clips_per_fold.values()):,.0f} clips in {len(s.folds)} folds, {s.copies} copies, {s.pixels:,} px ({s.source})'}"
        for name, s in result.sizes.items())]
    lines += _memory_lines(result)
    if result.deployments:
        lines += ["", f"Wall time and dollars (prices as of {result.prices_as_of}: check them; spot prices are "
                      "estimates; wall time assumes ideal packing):", "",
                  "| instance | node types | GPUs / node | nodes | trials at once | wall time | on-demand | spot |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for d in result.deployments:
            wall = "needs --cluster" if not d.trial_slots else _duration(d.wall_hours)
            lines.append(f"| {d.instance} | {', '.join(d.node_types) or '-'} | {d.gpus_per_node} | {d.nodes or '-'} | "
                         f"{d.trial_slots or '-'} | {wall} | {_dollars(d.on_demand_usd)} (${d.on_demand_per_h:g}/h) | "
                         f"{_dollars(d.spot_usd)} (${d.spot_per_h:g}/h) |")
    elif result.uses_gpu:  # say why there are no dollars rather than print nothing
        where = f"No worker node type of {result.cluster} has" if result.cluster else "No instance type has"
        lines += ["", f"{where} a {result.gpu} GPU priced in {PRICES_FILE}: no wall time or dollars."]
    lines += [""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines)
