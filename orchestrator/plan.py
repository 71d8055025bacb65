"""Experiment plans: one YAML file declares a whole study; it becomes typed config and a list of trials.

A plan names datasets (a preprocessed version, or how to preprocess one), models, init/ablation modes,
losses, seeds and folds, the training recipe, resources per trial and where results go. ``expand_grid``
turns it into the exact list of ``TrialConfig`` the sweep runs (phase 2); ``SearchConfig`` describes the
optional Bayesian search that runs first (phase 1). Unknown keys anywhere are errors naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orchestrator.config import (CHECKPOINT_EVERY, LOSSES, SCHEDULE_PRESETS, STRICT, SUPCON_REMOVED, AugmentConfig,
                                 FeatureConfig, LossConfig, MaskConfig, OptimConfig, TrialConfig, config_problems,
                                 from_dict, gpu_share_problems, raise_problems, run_setting_problems)
from orchestrator.errors import ConfigError
from orchestrator.plan_check import PlanError, load_yaml, plan_problems
from orchestrator.study import parse_init
from orchestrator.tracking import check_uri, local_uri


@dataclass(frozen=True)
class PreprocessSpec:
    """How to build a dataset version when the plan does not name one."""

    __pydantic_config__ = STRICT

    dataset: str  # catalog name: esc50, esc10, us8k, gtzan, fsdd, folder
    root: str  # dataset folder (relative paths are relative to the plan file)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    options: dict[str, Any] = field(default_factory=dict)  # GTZAN/folder: folds, seed


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset of the study: a version URI, or preprocess settings (then STORAGE/datasets is used)."""

    __pydantic_config__ = STRICT

    data: str | None = None  # a finished dataset version (folder holding dataset.json)
    preprocess: PreprocessSpec | None = None
    folds: tuple[int, ...] = ()  # test folds to run; empty: every fold of the dataset

    def __post_init__(self) -> None:
        problems: list[str] = []
        if (self.data is None) == (self.preprocess is None):
            problems.append("each dataset needs exactly one of 'data' (a version URI) or 'preprocess'")
        raise_problems(problems, "")


@dataclass(frozen=True)
class AblationPlan:
    """Extra init modes for some (dataset, model) pairs: the paper's fusion/freeze/cutoff studies."""

    __pydantic_config__ = STRICT

    dataset: str
    model: str
    inits: tuple[str, ...]
    seeds: tuple[int, ...] = ()  # empty: the plan's seeds
    folds: tuple[int, ...] = ()  # empty: the dataset's folds


@dataclass(frozen=True)
class SearchConfig:
    """Phase 1: HyperOpt TPE over lr, weight decay and batch size, scored on a validation fold, never on a
    fold that phase 2 tests with the recipe found (``orchestrator.sweep.plan_searches``).

    Default (one recipe): a search on test fold ``fold`` scores on the fold after it (v); its recipe feeds
    every phase-2 test fold but v, and a second search (test fold v, scored on the fold after v) feeds v.
    ``per_fold``: one search per phase-2 test fold f of ``dataset``, scored on the fold after f; f's trials
    get f's recipe (nested cross-validation; k x num_samples trials). Searches always use split "nested".
    Other datasets of the plan are never searched: they get the default mode's recipe (as before), and the
    plan's own optim with ``per_fold`` (there is no single recipe to transfer).
    """

    __pydantic_config__ = STRICT

    enabled: bool = False
    num_samples: int = 16  # configurations tried per search
    max_concurrent: int = 2  # trials in flight at once per search (TPE learns from finished ones)
    dataset: str | None = None  # default: the plan's first dataset
    model: str | None = None  # default: the plan's first model
    init: str = "pretrained"
    fold: int | None = None  # the default search's test fold; default: the dataset's last fold. Its test split
    # is evaluated by the trial but never read by the search: only valid accuracy is scored.
    per_fold: bool = False  # one search per phase-2 test fold (see above)
    epochs: int | None = None  # default: the plan's epochs
    seed: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.per_fold and self.fold is not None:
            problems.append(f"plan.search.fold {self.fold} and plan.search.per_fold: per_fold searches every "
                            "phase-2 test fold on its own; remove plan.search.fold (or set per_fold: false)")
        raise_problems(problems, "plan.search")


@dataclass(frozen=True)
class TrackingConfig:
    """Opt-in experiment tracking (``orchestrator.tracking``): every trial of the sweep as an MLflow run."""

    __pydantic_config__ = STRICT

    mlflow: str | None = None  # tracking URI: sqlite:///path.db, file:/path, http(s)://host, databricks
    experiment: str | None = None  # MLflow experiment; default: the plan's name

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.mlflow is not None:
            try:
                check_uri(self.mlflow)
            except ConfigError as exc:  # reported with the plan's other problems
                problems.append(str(exc))
        elif self.experiment is not None:
            problems.append("plan.tracking.experiment without plan.tracking.mlflow: add the tracking URI "
                            "(e.g. mlflow: sqlite:///mlflow.db) or remove plan.tracking")
        raise_problems(problems, "plan.tracking")


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for. A single-worker trial reserves one bundle (CPUs, GPU share, custom) in
    its Tune trial; a multi-worker trial reserves it once per Ray Train worker."""

    __pydantic_config__ = STRICT

    num_workers: int = 1  # DDP processes per trial; 1 runs the loop in the Tune trial itself (no Ray Train)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # > 0 turns on use_gpu; single-worker trials may take a fraction (0.25,
    # 0.5): several trials then share one GPU, with no memory isolation (README: "GPU memory per trial")
    custom: dict[str, float] = field(default_factory=dict)  # extra Ray resources per worker, e.g. a node
    # label such as {"g5.xlarge": 1}, or a fake per-trial resource for tests of the autoscaler

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.num_workers < 1:
            problems.append(f"plan.resources.num_workers must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker < 0:
            problems.append(f"plan.resources.cpus_per_worker must be >= 0, got {self.cpus_per_worker:g}")
        problems += gpu_share_problems(self.gpus_per_worker, self.num_workers, "plan.resources.gpus_per_worker")
        for name, amount in self.custom.items():
            if amount < 0 or name in ("CPU", "GPU", "memory"):
                problems.append(f"plan.resources.custom.{name}: a custom resource needs an amount >= 0 and "
                                "a name other than CPU, GPU, memory")
        raise_problems(problems, "plan.resources")


@dataclass(frozen=True)
class Plan:
    """A whole study."""

    __pydantic_config__ = STRICT

    name: str
    storage: str  # local path or s3:// URI; results go to STORAGE/<name>/
    datasets: dict[str, DatasetPlan]
    models: tuple[str, ...] = ("efficientnet_lite0",)
    inits: tuple[str, ...] = ("pretrained", "random")
    losses: tuple[str, ...] = ("ce",)
    seeds: tuple[int, ...] = (0,)
    optim: OptimConfig = field(default_factory=OptimConfig)  # the paper's recipe unless overridden
    random_optim: OptimConfig | None = None  # recipe for init 'random' (e.g. the paper-random preset)
    loss: LossConfig = field(default_factory=LossConfig)  # temperature / alpha / projection for SupCon
    mask: MaskConfig | None = None  # SoundCLR masks for every trial
    split: str = "nested"  # nested: a validation fold picks the epoch; paper: train on every fold but the test
    # fold, no validation fold (the paper's protocol). README "Protocols".
    augmented: str = "draw"  # how trials use the datasets' augmented copies: draw (the paper) | all | every | none
    standardize: bool | str = False  # none (the paper) | channel | band: config.STANDARDIZE_MODES (true: channel)
    weights: dict[str, str] = field(default_factory=dict)  # model -> weights file or s3:// URI
    download_weights: bool = False  # torchvision weights enum may download (clusters with internet)
    ablations: tuple[AblationPlan, ...] = ()
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: Resources = field(default_factory=Resources)
    max_concurrent_trials: int = 0  # 0: as many as the cluster's resources allow
    max_failures: int = 2  # restarts of a crashed trial (one budget per trial, owned by Tune)
    max_train_clips: int | None = None  # cap on training rows per trial (smoke runs)
    checkpoint_every: int = CHECKPOINT_EVERY  # epochs between a trial's checkpoints (and after its last)
    data_cache_gb: float = 0.0  # cap of each node's data cache in GB (orchestrator.data_cache: one mapped copy of
    # each dataset version per node, least recently used evicted); 0: RETHINK_AUDIO_DATA_CACHE_GB, else half the disk
    max_folds: int = 0  # use only the first N test folds of each dataset (0: all; smoke runs use 1)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow runs of every trial (opt-in)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.datasets:
            problems.append("plan.datasets must name at least one dataset (a mapping name -> {data: ...} or "
                            "{preprocess: ...})")
        for key in ("models", "inits", "losses", "seeds"):
            if not getattr(self, key):
                problems.append(f"plan.{key} must be a non-empty list, got [] (a sweep needs at least one; "
                                "remove the key to use the default)")
        problems += run_setting_problems(self, "plan.")
        problems += _loss_problems(self.losses)
        problems += _init_problems({f"plan.inits[{i}]": mode for i, mode in enumerate(self.inits)})
        for i, a in enumerate(self.ablations):
            where = f"plan.ablations[{i}]"
            if a.dataset not in self.datasets:
                problems.append(f"{where}: ablation dataset {a.dataset!r} is not in plan.datasets "
                                f"{list(self.datasets)}")
            if not a.inits:
                problems.append(f"{where}.inits must be a non-empty list of init modes")
            problems += _init_problems({f"{where}.inits[{j}]": mode for j, mode in enumerate(a.inits)})
        if self.search.enabled:
            if self.search.dataset is not None and self.search.dataset not in self.datasets:
                problems.append(f"plan.search.dataset {self.search.dataset!r} is not in plan.datasets "
                                f"{list(self.datasets)}")
            problems += _init_problems({"plan.search.init": self.search.init})
        for key in ("max_concurrent_trials", "max_failures", "max_folds", "max_train_clips"):
            value = getattr(self, key)
            if value is not None and value < 0:
                problems.append(f"plan.{key} must be an integer >= 0, got {value!r}")
        raise_problems(problems, "plan")


def _loss_problems(losses: tuple[str, ...]) -> list[str]:
    """Each loss of the grid a known one (``supcon`` with the reason it is gone)."""
    return [f"plan.losses[{i}]: {SUPCON_REMOVED}" if loss == "supcon" else
            f"plan.losses[{i}]: unknown loss {loss!r}; valid: {', '.join(LOSSES)}"
            for i, loss in enumerate(losses) if loss not in LOSSES]


def _init_problems(modes: dict[str, str]) -> list[str]:
    """``key: what is wrong`` for each init mode (key path -> mode) :func:`orchestrator.study.parse_init` refuses."""
    problems = []
    for where, mode in modes.items():
        try:
            parse_init(mode)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def load_plan(path: str | Path, storage: str | None = None) -> Plan:
    """Read and validate a plan file; ``storage`` overrides the plan's storage URI. Every problem of the plan
    (repeated YAML keys, unknown keys, bad values, models, folds, weights, tracking) comes in one PlanError."""
    path = Path(path)
    raw = _read_plan(path, storage)
    problems = check_plan(raw, path.parent)
    if problems:
        raise PlanError(str(path), problems)
    return plan_from_mapping(raw, path.parent)


def check_plan(raw: dict[str, Any], base: Path) -> list[str]:
    """Every problem of a plan file's mapping: the config classes' own (types, keys, values) and the plan
    check's look at the registries, the catalog and this machine (:func:`orchestrator.plan_check.plan_problems`)."""
    expanded, problems = _with_presets(raw)
    return problems + config_problems(Plan, expanded, "plan") + plan_problems(raw, base)


def _read_plan(path: Path, storage: str | None) -> dict[str, Any]:
    """The mapping of the plan file at ``path`` (a repeated key is a PlanError), with ``storage`` if given."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"plan file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"plan file {path} cannot be read: {exc.strerror or exc}") from None
    raw = load_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a plan is a YAML mapping (name, storage, datasets, ...)")
    return raw | {"storage": storage} if storage else raw


def plan_from_mapping(raw: dict[str, Any], base: Path) -> Plan:
    """The ``Plan`` of a plan file's mapping: presets expanded, typed and validated by the schema, relative
    paths resolved against ``base``. Unlike :func:`load_plan` it skips the plan check's look at this machine
    (default weights, local dataset cards), so a plan meant for a cluster can be sized anywhere
    (``cluster/fit.py``); a schema problem is still a ``ConfigError`` naming its key."""
    expanded, problems = _with_presets(raw)
    if problems:
        raise ConfigError("; ".join(problems))
    return _resolve_relative(from_dict(Plan, expanded, where="plan"), base)


def _with_presets(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``optim: {preset: paper-random, epochs: ...}`` expands the named schedule, then applies overrides; an
    unknown preset is a problem (and is left out)."""
    raw, problems = dict(raw), []
    for key in ("optim", "random_optim"):
        section = raw.get(key)
        if isinstance(section, dict) and "preset" in section:
            section = dict(section)
            name = section.pop("preset")
            if name in SCHEDULE_PRESETS:
                section = {**SCHEDULE_PRESETS[name], **section}
            else:
                problems.append(f"plan.{key}.preset: unknown schedule preset {name!r}; valid: "
                                f"{', '.join(SCHEDULE_PRESETS)}")
            raw[key] = section
    return raw, problems


def _resolve_relative(plan: Plan, base: Path) -> Plan:
    """Relative local paths in the plan are relative to the plan file, not to the working directory."""
    def local(uri: str) -> str:
        return uri if "://" in uri or Path(uri).is_absolute() else str((base / uri).resolve())

    datasets = {}
    for name, ds in plan.datasets.items():
        pre = ds.preprocess and dataclasses.replace(ds.preprocess, root=local(ds.preprocess.root))
        datasets[name] = dataclasses.replace(ds, data=ds.data and local(ds.data), preprocess=pre)
    tracking = dataclasses.replace(plan.tracking, mlflow=local_uri(plan.tracking.mlflow, base))
    return dataclasses.replace(plan, datasets=datasets, storage=local(plan.storage),
                               weights={m: local(w) for m, w in plan.weights.items()}, tracking=tracking)


# Smallest input side each architecture accepts (Inception-v3's stem needs 75 px); others work at 32.
SMOKE_MIN_SIDE = {"inception_v3": 80}


def smoke(plan: Plan) -> Plan:
    """The one meaning of ``--smoke`` (``sweep``, ``run``, ``demo``, ``plan``, ``tables``, ``preprocess`` and the
    jobs): the same stages as a full run, each on a plan shrunk to check the whole path cheaply. One seed, one
    test fold, one epoch (batch at most 16), 64 training clips, search off, results under ``<name>-smoke``;
    features at 32 x 32 (larger when a model needs it) with at most one augmented copy per clip
    (:func:`smoke_features`), so the augmentation path is checked too. Nothing else is left out: the report
    still has every table and figure (SVCCA and Integrated Gradients are cheap on such trials; ``--no-svcca``
    and ``--no-ig`` turn them off in any run)."""
    side = max([32, *(SMOKE_MIN_SIDE.get(m, 32) for m in plan.models)])
    datasets = {}
    for name, ds in plan.datasets.items():
        pre = ds.preprocess and dataclasses.replace(
            ds.preprocess, **smoke_features(ds.preprocess.features, ds.preprocess.augment, side))
        datasets[name] = dataclasses.replace(ds, preprocess=pre)
    one_epoch = dataclasses.replace(plan.optim, epochs=1, batch_size=min(plan.optim.batch_size, 16))
    return dataclasses.replace(
        plan, name=f"{plan.name}-smoke", datasets=datasets, seeds=plan.seeds[:1], optim=one_epoch,
        random_optim=None, search=dataclasses.replace(plan.search, enabled=False), max_train_clips=64,
        max_folds=1, ablations=tuple(dataclasses.replace(a, seeds=a.seeds[:1]) for a in plan.ablations))


def smoke_features(features: FeatureConfig, augment: AugmentConfig, side: int = 32) -> dict[str, Any]:
    """The preprocessing part of :func:`smoke`: ``features`` at ``side`` x ``side``, at most one augmented copy."""
    return {"features": dataclasses.replace(features, height=side, width=side),
            "augment": dataclasses.replace(augment, copies=min(augment.copies, 1))}


# The recipe of one phase-2 trial: (dataset name, test fold) -> OptimConfig (orchestrator.search.Recipes).
RecipeOf = Callable[[str, int], OptimConfig]


def expand_grid(plan: Plan, data_uris: dict[str, str], folds_of: dict[str, list[int]],
                optim: OptimConfig | RecipeOf | None = None) -> list[TrialConfig]:
    """Every trial of phase 2, in a stable order, without duplicates.

    ``data_uris``: dataset name -> version URI; ``folds_of``: dataset name -> its folds (from the card);
    ``optim``: the recipe chosen by phase 1 (default: the plan's): one for every trial, or a function of
    (dataset name, test fold) when phase 1 found one per fold. ``plan.random_optim``, when set, still wins
    for init 'random'.
    """
    recipe_of = optim if callable(optim) else (lambda name, fold, one=optim or plan.optim: one)

    def test_folds(dataset: str, chosen: tuple[int, ...] = ()) -> list[int]:
        folds = list(chosen or plan.datasets[dataset].folds or folds_of[dataset])
        return folds[: plan.max_folds] if plan.max_folds else folds

    points: list[tuple[str, str, str, str, int, int]] = []
    for name in plan.datasets:
        for fold in test_folds(name):
            for model in plan.models:
                for init in plan.inits:
                    for loss in plan.losses:
                        points += [(name, model, init, loss, seed, fold) for seed in plan.seeds]
    for a in plan.ablations:
        for fold in test_folds(a.dataset, a.folds):
            for init in a.inits:
                points += [(a.dataset, a.model, init, plan.losses[0], seed, fold) for seed in a.seeds or plan.seeds]
    trials, seen = [], set()
    for name, model, init, loss, seed, fold in points:
        if (name, model, init, loss, seed, fold) in seen:
            continue
        seen.add((name, model, init, loss, seed, fold))
        trials.append(TrialConfig(
            data=data_uris[name], model=model, init=init, weights=plan.weights.get(model),
            download_weights=plan.download_weights, fold=fold, seed=seed,
            optim=(plan.random_optim or recipe_of(name, fold)) if init == "random" else recipe_of(name, fold),
            loss=dataclasses.replace(plan.loss, name=loss), mask=plan.mask, split=plan.split,
            augmented=plan.augmented, standardize=plan.standardize,
            num_workers=plan.resources.num_workers, use_gpu=plan.resources.gpus_per_worker > 0,
            cpus_per_worker=plan.resources.cpus_per_worker, gpus_per_worker=plan.resources.gpus_per_worker or 1.0,
            custom_resources=dict(plan.resources.custom), max_train_clips=plan.max_train_clips,
            checkpoint_every=plan.checkpoint_every, data_cache_gb=plan.data_cache_gb,
        ))
    return trials
