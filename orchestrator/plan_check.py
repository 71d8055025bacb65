"""The plan checks that look beyond the plan's own values: registries, the dataset catalog, this machine's
files, MLflow and the Ray cluster. The values themselves (types, unknown keys, ranges, allowed names, init
modes, losses) are the config classes' own checks (``orchestrator.config``, ``orchestrator.plan``);
:func:`orchestrator.plan.load_plan` reports both kinds together, every problem at once.

:func:`load_yaml` reads a plan with a loader that refuses repeated keys (PyYAML's default keeps the last one
silently). :func:`plan_problems` checks the raw mapping:

* ``name``: one folder name (it becomes ``STORAGE/<name>/``);
* model names against :func:`orchestrator.models.list_models`; dataset catalog names and their options;
* test folds against each dataset's declared layout (``orchestrator.study.declared_folds``: ESC-50 1-5,
  UrbanSound8K 1-10, FSDD speakers 1-6, GTZAN / folder 1..options.folds) or, for a finished local dataset
  version, its ``dataset.json``;
* weight sources (a local file must exist, an URI must be ``s3://bucket/key``; without ``download_weights``
  the default weights must already be on this machine); MLflow installed when tracking is on.

:func:`check_cluster` compares one trial's resource request with the Ray cluster the sweep runs on.
:class:`PlanError` lists every problem as ``key.path: what is wrong``; the CLI prints it on one line.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError
from orchestrator.study import OFFICIAL_FOLDS, SEEDED_FOLDS_DEFAULT, declared_folds, resource_bundle


class PlanError(ConfigError):
    """A plan has one or more problems; ``problems`` holds them as ``key.path: what is wrong``."""

    def __init__(self, source: str, problems: list[str]):
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__(f"{source}: {count}: " + "; ".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- YAML without silent duplicates


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records repeated mapping keys (with their line) instead of keeping the last."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                self.duplicates.append(f"key {key!r} repeated at line {line} (first at line {seen[key]})")
            elif isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely; a repeated key anywhere is a PlanError naming each repetition and its lines."""
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise PlanError(source, [f"{d}: a YAML mapping keeps only the last value; merge the entries"
                                 for d in loader.duplicates])
    return data


# ---------------------------------------------------------------- the plan file


def plan_problems(raw: dict, base: Path) -> list[str]:
    """Every problem of a raw plan mapping that its config classes cannot see on their own: the storage name,
    model names, dataset catalog and folds, weight files and MLflow; relative paths are relative to ``base``."""
    problems: list[str] = []
    _check_name(raw.get("name"), problems)
    _check_models(raw.get("models", ["efficientnet_lite0"]), "plan.models", problems)
    layouts = _check_datasets(raw.get("datasets"), base, problems)
    _check_ablations(raw.get("ablations") or [], layouts, problems)
    _check_search(raw.get("search") or {}, layouts, problems)
    _check_weights(raw, base, problems)
    _check_tracking(raw.get("tracking"), problems)
    return problems


# ---------------------------------------------------------------- sections


def _check_name(name: Any, problems: list[str]) -> None:
    from orchestrator.errors import StorageError
    from orchestrator.storage import check_component

    try:
        check_component(name, "plan.name")
    except StorageError as exc:
        problems.append(str(exc))


def _check_models(models: Any, where: str, problems: list[str]) -> None:
    from orchestrator.models import list_models

    for i, model in enumerate(models if isinstance(models, list) else [models]):
        if model not in list_models():
            problems.append(f"{_at(where, models, i)}: unknown model {model!r}; "
                            f"valid models: {', '.join(list_models())}")


def _at(where: str, values: Any, i: int) -> str:
    """``where[i]`` for an item of a list, ``where`` for a single value."""
    return f"{where}[{i}]" if isinstance(values, list) else where


def _check_ints(values: Any, where: str, problems: list[str], allowed: list[int] | None = None) -> None:
    """With ``allowed``: folds that the dataset has (values of another type are the schema's problem)."""
    for i, value in enumerate(values if isinstance(values, list) else [values]):
        if isinstance(value, bool) or not isinstance(value, int):
            continue  # a type error: reported by the schema
        if allowed is not None and value not in allowed:
            shown = (f"{allowed[0]}-{allowed[-1]}" if allowed == list(range(allowed[0], allowed[-1] + 1))
                     else str(allowed))
            problems.append(f"{_at(where, values, i)}: fold {value} is not in the dataset's folds {shown}")


def _check_datasets(datasets: Any, base: Path, problems: list[str]) -> dict[str, list[int] | None]:
    """Each dataset entry's folds against the catalog or its card; returns dataset name -> its declared folds
    (None where not knowable). The entries' shape is the config classes' to check (``DatasetPlan``)."""
    layouts: dict[str, list[int] | None] = {}
    for name, entry in (datasets.items() if isinstance(datasets, dict) else []):
        where = f"plan.datasets.{name}"
        if not isinstance(entry, dict) or ("data" in entry) == ("preprocess" in entry):
            layouts[name] = None
            continue
        layouts[name] = (_preprocess_folds(entry["preprocess"], where, problems) if "preprocess" in entry
                         else _card_folds(entry["data"], base, where, problems))
        _check_ints(entry.get("folds") or [], f"{where}.folds", problems, layouts[name])
    return layouts


def _preprocess_folds(pre: Any, where: str, problems: list[str]) -> list[int] | None:
    """The folds a preprocess entry will produce, from the catalog (None when unknown or invalid)."""
    from orchestrator.datasets import get_dataset

    if not isinstance(pre, dict):
        return None  # a type error: reported by the schema
    try:
        spec = get_dataset(str(pre.get("dataset")))
    except ConfigError as exc:
        problems.append(f"{where}.preprocess.dataset: {exc}")
        return None
    options = pre.get("options") or {}
    unknown = sorted(set(options) - set(spec.options)) if isinstance(options, dict) else ["(not a mapping)"]
    if unknown:
        problems.append(f"{where}.preprocess.options: dataset {spec.name} has no option(s) {unknown}; valid: "
                        f"{list(spec.options) or 'none'}")
    k = options.get("folds", SEEDED_FOLDS_DEFAULT) if isinstance(options, dict) else SEEDED_FOLDS_DEFAULT
    if spec.name not in OFFICIAL_FOLDS and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        problems.append(f"{where}.preprocess.options.folds must be an integer >= 2, got {k!r}")
        return None
    return declared_folds(spec.name, k)


def _card_folds(data: Any, base: Path, where: str, problems: list[str]) -> list[int] | None:
    """Folds of a finished local dataset version (its dataset.json); None for s3:// (not read here)."""
    import json

    if not isinstance(data, str) or "://" in data:
        return None
    card = (base / data).expanduser() / "dataset.json"
    try:
        folds = sorted(int(f) for f in json.loads(card.read_text())["folds"])
    except FileNotFoundError:
        problems.append(f"{where}.data: {card.parent} holds no dataset.json (not a finished dataset version; "
                        "run `rethink-audio preprocess` and use the folder it prints)")
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{where}.data: {card} is unreadable ({type(exc).__name__}: {exc})")
        return None
    return folds


def _check_ablations(ablations: Any, layouts: dict, problems: list[str]) -> None:
    """Each ablation's model in the registry and its folds in its dataset's."""
    for i, item in enumerate(ablations if isinstance(ablations, list) else []):
        if isinstance(item, dict):
            where = f"plan.ablations[{i}]"
            _check_models(item.get("model"), f"{where}.model", problems)
            _check_ints(item.get("folds") or [], f"{where}.folds", problems, layouts.get(item.get("dataset")))


def _check_tracking(tracking: Any, problems: list[str]) -> None:
    """A tracking URI MLflow accepts, and MLflow installed when one is given (orchestrator.tracking)."""
    from orchestrator.tracking import check_uri, require_mlflow

    if not isinstance(tracking, dict) or tracking.get("mlflow") is None:
        return
    try:
        uri = check_uri(tracking["mlflow"])
    except ConfigError:
        return  # reported by TrackingConfig
    try:
        require_mlflow(uri)
    except ConfigError as exc:
        problems.append(str(exc))


def _check_search(search: Any, layouts: dict, problems: list[str]) -> None:
    """The searched model in the registry and the searched fold in its dataset's."""
    if not isinstance(search, dict) or not search.get("enabled"):
        return
    if search.get("model") is not None:
        _check_models(search["model"], "plan.search.model", problems)
    dataset = search.get("dataset") or next(iter(layouts), None)
    if search.get("fold") is not None:
        _check_ints(search["fold"], "plan.search.fold", problems, layouts.get(dataset))


def _check_weights(raw: dict, base: Path, problems: list[str]) -> None:
    """Weight overrides name known models and existing files / s3 URIs; defaults must be on this machine
    unless downloads are on (then they are fetched once, at the first trial)."""
    from orchestrator.models import list_models

    weights = raw.get("weights") or {}
    if not isinstance(weights, dict):
        return  # a type error: reported by the schema
    for model, source in weights.items():
        where = f"plan.weights.{model}"
        if model not in list_models():
            problems.append(f"{where}: unknown model {model!r}; valid models: {', '.join(list_models())}")
        elif not isinstance(source, str) or not source:
            problems.append(f"{where} must be a weights file or s3://bucket/key, got {source!r}")
        elif source.startswith("s3://"):
            if "/" not in source[len("s3://"):].strip("/"):
                problems.append(f"{where}: {source!r} must look like s3://bucket/key")
        elif "://" in source:
            problems.append(f"{where}: {source!r}: only local files and s3:// URIs are supported")
        elif not (base / source).expanduser().is_file():
            problems.append(f"{where}: weights file {(base / source).expanduser()} does not exist")
    if not raw.get("download_weights"):
        _check_default_weights(raw, weights, problems)


def _check_default_weights(raw: dict, weights: dict, problems: list[str]) -> None:
    """Models trained from ImageNet weights without an override need them locally (no download here)."""
    from orchestrator.models import list_models, resolve_weights_file
    from orchestrator.study import parse_init

    inits = list(raw.get("inits") or ["pretrained", "random"])
    wanted = {m for m in (raw.get("models") or ["efficientnet_lite0"]) if isinstance(m, str)}
    for ablation in raw.get("ablations") or []:
        if isinstance(ablation, dict) and isinstance(ablation.get("model"), str):
            wanted.add(ablation["model"])
            inits += list(ablation.get("inits") or [])
    try:
        pretrained = any(parse_init(i)[0] != "random" for i in inits)
    except ConfigError:
        pretrained = True  # the bad init is reported on its own
    for model in sorted(wanted - set(weights)):
        if pretrained and model in list_models():
            try:
                resolve_weights_file(model, True, allow_download=False)
            except ConfigError as exc:
                problems.append(f"plan.models: {model}: {exc} (or set download_weights: true)")


# ---------------------------------------------------------------- against the cluster


def trial_request(plan) -> dict[str, float]:
    """What one trial asks Ray for: CPUs and GPUs over its workers, plus custom resources if the plan has any."""
    res = plan.resources
    bundle = resource_bundle(res.cpus_per_worker, res.gpus_per_worker, res.custom)
    return {name: res.num_workers * float(amount) for name, amount in bundle.items() if amount > 0}


def cluster_shortfalls(request: dict[str, float], cluster: dict[str, float]) -> list[str]:
    """``resource: a trial needs N, the cluster has M`` for each resource one trial cannot get."""
    return [f"plan.resources: a trial needs {amount:g} {name}, the cluster has {cluster.get(name, 0):g}"
            for name, amount in sorted(request.items()) if amount > cluster.get(name, 0) + 1e-9]


def check_cluster(plan, *, attached: bool) -> str | None:
    """Compare one trial's request with the running Ray cluster (call after ``ensure_ray``).

    A local Ray that cannot fit one trial raises PlanError (Tune would wait forever). An attached cluster may
    autoscale, so there the shortfall is returned as a warning line instead (None when it fits).
    """
    import ray

    short = cluster_shortfalls(trial_request(plan), ray.cluster_resources())
    if not short:
        return None
    if not attached:
        raise PlanError(f"plan {plan.name!r} on this machine's Ray", short)
    return ("; ".join(short) + ": the sweep waits until the cluster's autoscaler adds such nodes (if it has "
            "none, stop it and fix plan.resources)")
