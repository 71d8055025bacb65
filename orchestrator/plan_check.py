"""Whole-plan validation before any compute: every problem of a plan file, in one message, with key paths.

:func:`check_plan_file` reads the YAML with a loader that refuses repeated keys (PyYAML's default keeps the
last one silently), then checks the raw mapping against the plan schema and the registries:

* unknown keys in every section (not just the first one met);
* ``name``: one folder name (it becomes ``STORAGE/<name>/``);
* non-empty ``models``, ``inits``, ``losses``, ``seeds`` and ``datasets``;
* model names against :func:`orchestrator.models.list_models`, init modes with
  :func:`orchestrator.models.parse_init`, losses, dataset catalog names and their options;
* test folds against each dataset's declared layout (ESC-50 1-5, UrbanSound8K 1-10, FSDD speakers 1-6,
  GTZAN / folder 1..options.folds) or, for a finished local dataset version, its ``dataset.json``;
* weight sources (a local file must exist, an URI must be ``s3://bucket/key``; without ``download_weights``
  the default weights must already be on this machine), the training recipe and resource numbers.

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


def check_plan_file(path: str | Path, storage_override: str | None = None) -> None:
    """Raise PlanError listing every problem of the plan at ``path`` (nothing is started or written)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"plan file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"plan file {path} cannot be read: {exc.strerror or exc}") from None
    raw = load_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a plan is a YAML mapping (name, storage, datasets, ...)")
    if storage_override:
        raw = raw | {"storage": storage_override}
    problems = plan_problems(raw, path.parent)
    if problems:
        raise PlanError(str(path), problems)


def plan_problems(raw: dict, base: Path) -> list[str]:
    """Every problem of a raw plan mapping; relative local paths are relative to ``base``."""
    problems: list[str] = _schema(raw)
    _check_name(raw.get("name"), problems)
    for key in ("models", "inits", "losses", "seeds"):
        _non_empty_list(raw, key, problems)
    _check_models(raw.get("models", ["efficientnet_lite0"]), "plan.models", problems)
    _check_inits(raw.get("inits", []), "plan.inits", problems)
    _check_losses(raw.get("losses", []), problems)
    _check_ints(raw.get("seeds", []), "plan.seeds", problems)
    layouts = _check_datasets(raw.get("datasets"), base, problems)
    _check_ablations(raw.get("ablations") or [], raw, layouts, problems)
    _check_search(raw.get("search") or {}, raw, layouts, problems)
    for key in ("optim", "random_optim"):
        _check_optim(raw.get(key), f"plan.{key}", problems)
    _check_weights(raw, base, problems)
    _check_numbers(raw, problems)
    _check_tracking(raw.get("tracking"), problems)
    return problems


# ---------------------------------------------------------------- sections


def _schema(raw: dict) -> list[str]:
    """Unknown keys and wrongly typed values anywhere in the plan, with their key paths: the plan schema's own
    validation (:func:`orchestrator.config.schema_problems`, pydantic) on the raw mapping. ``optim.preset`` is a
    plan-file shorthand (expanded by ``load_plan``, checked in :func:`_check_optim`), not a field."""
    from orchestrator.config import schema_problems
    from orchestrator.plan import Plan

    raw = {k: ({n: v for n, v in s.items() if n != "preset"} if k in ("optim", "random_optim") and isinstance(s, dict)
               else s) for k, s in raw.items()}
    return schema_problems(Plan, raw, "plan")


def _check_name(name: Any, problems: list[str]) -> None:
    from orchestrator.errors import StorageError
    from orchestrator.storage import check_component

    try:
        check_component(name, "plan.name")
    except StorageError as exc:
        problems.append(str(exc))


def _non_empty_list(raw: dict, key: str, problems: list[str]) -> None:
    if key in raw and (not isinstance(raw[key], list) or not raw[key]):
        problems.append(f"plan.{key} must be a non-empty list, got {raw[key]!r} (a sweep needs at least one; "
                        "remove the key to use the default)")


def _check_models(models: Any, where: str, problems: list[str]) -> None:
    from orchestrator.models import list_models

    for i, model in enumerate(models if isinstance(models, list) else [models]):
        if model not in list_models():
            problems.append(f"{_at(where, models, i)}: unknown model {model!r}; "
                            f"valid models: {', '.join(list_models())}")


def _check_inits(inits: Any, where: str, problems: list[str]) -> None:
    from orchestrator.models import parse_init

    for i, mode in enumerate(inits if isinstance(inits, list) else [inits]):
        try:
            parse_init(mode)
        except ConfigError as exc:
            problems.append(f"{_at(where, inits, i)}: {exc}")


def _check_losses(losses: Any, problems: list[str]) -> None:
    from orchestrator.config import LOSSES, SUPCON_REMOVED

    for i, loss in enumerate(losses if isinstance(losses, list) else [losses]):
        if loss == "supcon":
            problems.append(f"plan.losses[{i}]: {SUPCON_REMOVED}")
        elif loss not in LOSSES:
            problems.append(f"plan.losses[{i}]: unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


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
    """Each dataset entry; returns dataset name -> its declared folds (None where not knowable)."""
    if not isinstance(datasets, dict) or not datasets:
        problems.append("plan.datasets must name at least one dataset (a mapping name -> {data: ...} or "
                        "{preprocess: ...})")
        return {}
    layouts = {}
    for name, entry in datasets.items():
        where = f"plan.datasets.{name}"
        if not isinstance(entry, dict) or ("data" in entry) == ("preprocess" in entry):
            problems.append(f"{where}: each dataset needs exactly one of 'data' (a version URI) or 'preprocess'")
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
        problems.append(f"{where}.preprocess must be a mapping (dataset, root, ...)")
        return None
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

    if not isinstance(data, str) or not data:
        problems.append(f"{where}.data must be a dataset version folder or s3:// URI, got {data!r}")
        return None
    if "://" in data:
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


def _check_ablations(ablations: Any, raw: dict, layouts: dict, problems: list[str]) -> None:
    if not isinstance(ablations, list):
        problems.append("plan.ablations must be a list of {dataset, model, inits, seeds, folds}")
        return
    for i, item in enumerate(ablations):
        where = f"plan.ablations[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be a mapping (dataset, model, inits)")
            continue
        if item.get("dataset") not in layouts:
            problems.append(f"{where}: ablation dataset {item.get('dataset')!r} is not in plan.datasets "
                            f"{list(layouts)}")
        _check_models(item.get("model"), f"{where}.model", problems)
        if not isinstance(item.get("inits"), list) or not item["inits"]:
            problems.append(f"{where}.inits must be a non-empty list of init modes")
        _check_inits(item.get("inits") or [], f"{where}.inits", problems)
        _check_ints(item.get("seeds") or [], f"{where}.seeds", problems)
        _check_ints(item.get("folds") or [], f"{where}.folds", problems, layouts.get(item.get("dataset")))


def _check_tracking(tracking: Any, problems: list[str]) -> None:
    """A tracking URI MLflow accepts, and MLflow installed when one is given (orchestrator.tracking)."""
    from orchestrator.tracking import check_uri, require_mlflow

    if not isinstance(tracking, dict) or tracking.get("mlflow") is None:
        return
    try:
        require_mlflow(check_uri(tracking["mlflow"]))
    except ConfigError as exc:
        problems.append(str(exc))


def _check_search(search: Any, raw: dict, layouts: dict, problems: list[str]) -> None:
    if not isinstance(search, dict) or not search.get("enabled"):
        return
    if search.get("dataset") is not None and search["dataset"] not in layouts:
        problems.append(f"plan.search.dataset {search['dataset']!r} is not in plan.datasets {list(layouts)}")
    if search.get("model") is not None:
        _check_models(search["model"], "plan.search.model", problems)
    if "init" in search:
        _check_inits(search["init"], "plan.search.init", problems)
    dataset = search.get("dataset") or next(iter(layouts), None)
    if search.get("fold") is not None:
        _check_ints(search["fold"], "plan.search.fold", problems, layouts.get(dataset))


def _check_optim(optim: Any, where: str, problems: list[str]) -> None:
    """Each recipe value on its own, so the message says which one is wrong."""
    from orchestrator.config import SCHEDULE_PRESETS

    if not isinstance(optim, dict):
        return
    if "preset" in optim and optim["preset"] not in SCHEDULE_PRESETS:
        problems.append(f"{where}.preset: unknown schedule preset {optim['preset']!r}; valid: "
                        f"{', '.join(SCHEDULE_PRESETS)}")
    for key, low, strict in (("epochs", 1, False), ("batch_size", 1, False), ("step_size", 0, False),
                             ("lr", 0, True), ("weight_decay", 0, False), ("gamma", 0, True)):
        value = optim.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # a type error: reported by the schema
        if value < low or (strict and value == low):
            problems.append(f"{where}.{key} must be {'>' if strict else '>='} {low}, got {value!r}")


def _check_weights(raw: dict, base: Path, problems: list[str]) -> None:
    """Weight overrides name known models and existing files / s3 URIs; defaults must be on this machine
    unless downloads are on (then they are fetched once, at the first trial)."""
    from orchestrator.models import list_models

    weights = raw.get("weights") or {}
    if not isinstance(weights, dict):
        problems.append("plan.weights must map model -> weights file or s3:// URI")
        return
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
    from orchestrator.models import list_models, parse_init, resolve_weights_file

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


def _check_numbers(raw: dict, problems: list[str]) -> None:
    """Counts and resource numbers: non-negative, and at least one worker per trial."""
    for key in ("max_concurrent_trials", "max_failures", "max_folds", "max_train_clips"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:  # other types: the schema's
            problems.append(f"plan.{key} must be an integer >= 0, got {value!r}")
    resources = raw.get("resources") or {}
    for key, value in (resources.items() if isinstance(resources, dict) else []):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            problems.append(f"plan.resources.{key} must be >= 0, got {value!r}")
    workers = resources.get("num_workers") if isinstance(resources, dict) else None
    if isinstance(workers, int) and not isinstance(workers, bool) and workers < 1:
        problems.append(f"plan.resources.num_workers must be >= 1, got {workers}")


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
