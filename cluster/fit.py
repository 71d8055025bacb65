"""Which node types of the shipped clusters can host one trial of each plan, by resources and by memory
(offline, no cloud call): a table, and exit 1 when a GPU plan fits no GPU node type of a cluster or Ray would
over-commit a GPU node type's RAM. The rule and the numbers live in :mod:`orchestrator.cluster_fit`.

    python cluster/fit.py                       # every plan under plans/ x every node type of both clusters
    python cluster/fit.py plans/paper.yaml cluster/rayjob.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # orchestrator/ when run as `python cluster/fit.py` from anywhere

from orchestrator.cluster_fit import (FitError, node_types, overcommitted_gpu_nodes, table, trial_shape,  # noqa: E402
                                      unplaceable_gpu_plans)

CLUSTERS = (REPO / "cluster" / "aws-gpu.yaml", REPO / "cluster" / "rayjob.yaml")


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
    problems = unplaceable_gpu_plans(shapes, nodes) + overcommitted_gpu_nodes(shapes, nodes)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
