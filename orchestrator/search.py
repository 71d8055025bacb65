"""Phase 1 of a sweep: HyperOpt TPE searches for the training recipe, never scored on a fold they feed.

A search's trials train on k-2 folds, are scored on a whole validation fold v (their test fold is
evaluated by the trial but never read), and the best recipe goes to phase 2. The recipe must not be used
to test fold v: the search chose it for doing well on v. :func:`plan_searches` decides which searches run
and which phase-2 test folds each one feeds:

* default: one search on test fold t (``search.fold``, or the dataset's last fold), scored on v = the fold
  after t; its recipe feeds every phase-2 test fold but v. If phase 2 tests v, a second search (test fold
  v, scored on the fold after v) feeds v. So a single-recipe plan costs 2 x ``num_samples`` trials.
* ``search.per_fold``: one search per phase-2 test fold f (test fold f, scored on the fold after f), whose
  recipe feeds f only: nested cross-validation, k x ``num_samples`` trials.

All searches of a sweep run side by side in one Tuner (:class:`FoldSearchers`); each keeps its own seeded
TPE state. Layout under ``STORAGE/<plan name>/search/``::

    fold<t>/best.json       one search's result: its folds, the recipe, its valid accuracy, its trial ids
    fold<t>/trials.parquet  every configuration that search tried and its valid accuracy
    trials/<trial id>/      the search trials' records (split "nested", valid fold recorded in config.json)
    recipes.json            the recipe of every phase-2 (dataset, test fold) and the fold it was scored on
    best.json               the default recipe (the plan's other datasets); written last: phase 1 is done

A rerun reuses each search whose ``fold<t>/best.json`` matches, and search trials already finished (by
trial id), so an interrupted phase 1 redoes only what is missing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
from ray.tune.search import Searcher

from orchestrator import storage, tune_run
from orchestrator.config import SEARCH_BATCH_SIZES, OptimConfig, TrialConfig, from_dict, to_dict
from orchestrator.study import default_valid_fold
from orchestrator.errors import RethinkError
from orchestrator.interrupts import SweepInterrupted, SweepStorageError
from orchestrator.plan import Plan, expand_grid
from orchestrator.tune_run import MAX_ROUNDS, SEARCH, TRIALS

METRIC = "valid_acc"  # what tune_run.tune_trial reports: the best valid accuracy over the trial's epochs
RECIPES, BEST = "recipes.json", "best.json"
BATCH_SIZES = SEARCH_BATCH_SIZES
SEARCH_SPACE_DOC = "lr log-uniform 1e-5..1e-2, weight_decay log-uniform 1e-5..1e-1, batch_size {16, 32, 64}"


@dataclass(frozen=True)
class FoldSearch:
    """One search on ``dataset``: its trials test on ``test_fold`` (never read) and are scored on
    ``valid_fold``; its recipe feeds the phase-2 test folds ``feeds``."""

    dataset: str
    test_fold: int
    valid_fold: int
    feeds: tuple[int, ...]
    default: bool = False  # its recipe also goes to the plan's other datasets

    @property
    def name(self) -> str:
        return f"fold{self.test_fold}"


@dataclass(frozen=True)
class Recipes:
    """Phase 1's answer, callable as ``expand_grid``'s recipe: (dataset, test fold) -> OptimConfig."""

    default: OptimConfig  # for any (dataset, fold) not in by_fold: the plan's other datasets
    by_fold: dict[tuple[str, int], OptimConfig] = field(default_factory=dict)

    def __call__(self, dataset: str, fold: int) -> OptimConfig:
        return self.by_fold.get((dataset, fold), self.default)


def tested_folds(plan: Plan, uris: dict[str, str], folds: dict[str, list[int]]) -> dict[str, list[int]]:
    """The test folds phase 2 runs per dataset (plan folds, ablation folds, max_folds applied)."""
    grid = expand_grid(plan, uris, folds)
    return {name: sorted({t.fold for t in grid if t.data == uri}) for name, uri in uris.items()}


def plan_searches(plan: Plan, uris: dict[str, str], folds: dict[str, list[int]]) -> list[FoldSearch]:
    """The searches phase 1 runs and the test folds each feeds; no search feeds the fold it scored on."""
    s = plan.search
    dataset = s.dataset or next(iter(plan.datasets))
    every, tested = sorted(folds[dataset]), tested_folds(plan, uris, folds)[dataset]
    if s.per_fold:
        return [FoldSearch(dataset, f, default_valid_fold(every, f), (f,)) for f in tested]
    first = s.fold if s.fold is not None else every[-1]
    scored = default_valid_fold(every, first)
    searches = [FoldSearch(dataset, first, scored, tuple(f for f in tested if f != scored), default=True)]
    if scored in tested:  # the first search chose its recipe on this fold: another search picks fold's own
        searches.append(FoldSearch(dataset, scored, default_valid_fold(every, scored), (scored,)))
    return searches


# ---------------------------------------------------------------- the phase


def run_search(plan: Plan, uris: dict[str, str], folds: dict[str, list[int]], root: storage.Location, *,
               quiet: bool = False, stopping=lambda: None) -> Recipes:
    """Phase 1: run the searches not done yet, write ``recipes.json`` and ``best.json``, return the recipes.
    ``quiet``: one line per trial epoch and per finished trial instead of Tune's status tables; ``stopping``:
    when the driver began stopping (then no best.json is written: the searches rerun on ``--resume``, their
    finished trials reused)."""
    if not plan.search.enabled:
        recipes = Recipes(plan.optim)
        _save(root, plan, uris, folds, recipes, [], {}, "plan (search disabled)")
        return recipes
    searches = plan_searches(plan, uris, folds)
    found = {s.name: best for s in searches if (best := _saved(root, s, uris)) is not None}
    todo = [s for s in searches if s.name not in found]
    if todo:
        for _ in range(MAX_ROUNDS):  # again for the searches that lost a trial to preemption (see _run)
            done, todo = _run(plan, uris, folds, root, todo, quiet, stopping)
            found |= done
            if not todo:
                break
            print(f"[sweep] phase 1: {', '.join(s.name for s in todo)} lost a trial to preemption: searching again "
                  "(finished trials are reused, the preempted one resumes from its checkpoint)", flush=True)
    else:
        done = ", ".join(f"{name} (valid acc {best[METRIC]:.4f})" for name, best in found.items())
        print(f"[sweep] phase 1 already done: {done}", flush=True)
    by_fold = {(s.dataset, f): from_dict(OptimConfig, found[s.name]["optim"]) for s in searches for f in s.feeds}
    default = next((from_dict(OptimConfig, found[s.name]["optim"]) for s in searches if s.default), plan.optim)
    recipes = Recipes(default, by_fold)
    _save(root, plan, uris, folds, recipes, searches, found, "hyperopt TPE")
    return recipes


def _saved(root: storage.Location, search: FoldSearch, uris: dict[str, str]) -> dict | None:
    """A finished search's best.json, if it was this search (same data and folds); else None."""
    loc = root.join(SEARCH, search.name, BEST)
    if not storage.exists(loc):
        return None
    best = storage.read_json(loc)
    same = (best.get("data"), best.get("test_fold"), best.get("valid_fold")) == (
        uris[search.dataset], search.test_fold, search.valid_fold)
    if not same:
        print(f"[sweep] {loc.uri} is from another search (data or folds differ): searching again", flush=True)
    return best if same else None


def _run(plan: Plan, uris: dict[str, str], folds: dict[str, list[int]], root: storage.Location,
         searches: list[FoldSearch], quiet: bool = False,
         stopping=lambda: None) -> tuple[dict[str, dict], list[FoldSearch]]:
    """Run ``searches`` side by side in one Tuner; write each finished one's best.json; returns their payloads
    and the searches to run again (a trial of theirs was preempted)."""
    from ray import tune

    from orchestrator.interrupts import STOP_FILE
    from orchestrator.tune_watch import make_watch

    s = plan.search
    bases = {fs.name: _base_trial(plan, uris, folds, fs) for fs in searches}
    print(f"[sweep] phase 1: {len(searches)} search(es) of {s.num_samples} trials: " + "; ".join(
        f"{fs.name} scored on fold {fs.valid_fold}, feeds test folds {list(fs.feeds) or '-'}" for fs in searches),
        flush=True)
    searcher = FoldSearchers({n: to_dict(b) for n, b in bases.items()}, s.num_samples, s.max_concurrent,
                             s.seed, _first_point(plan.optim))
    watch = make_watch(s.num_samples * len(searches), quiet, stopping)
    space = {"trials_root": root.join(SEARCH, TRIALS).uri, "stop_uri": root.join(STOP_FILE).uri}
    tune_config = tune.TuneConfig(search_alg=searcher, num_samples=s.num_samples * len(searches), reuse_actors=True)
    tune_run.fit(tune_run.make_tuner(plan, root, SEARCH, space, tune_config, watch, quiet), watch)
    if watch.outcomes.storage_errors:
        raise SweepStorageError(watch.outcomes.storage_errors[0])
    if stopping() is not None:
        raise SweepInterrupted(0)  # run_sweep raises it again with the signal's number
    # a search that lost a trial to preemption runs again: its seeded TPE proposes the same recipes, so its
    # finished trials are reused from their records and the preempted one resumes from its checkpoint
    lost = {tune_run.decode(config).search for config, result in watch.outcomes.last.values()
            if result.get("stopped")}
    table = _search_table(watch.outcomes.last.values())
    done = {fs.name: _best_of(plan, root, fs, bases[fs.name], table[table["search"] == fs.name])
            for fs in searches if fs.name not in lost}
    return done, [fs for fs in searches if fs.name in lost]


def _base_trial(plan: Plan, uris: dict[str, str], folds: dict[str, list[int]], fs: FoldSearch) -> TrialConfig:
    """The trial a search samples recipes for: always split "nested" (it needs its validation fold)."""
    s, model = plan.search, plan.search.model or plan.models[0]
    template = expand_grid(dataclasses.replace(plan, ablations=()), uris, folds)[0]  # resources, clip cap
    return dataclasses.replace(template, data=uris[fs.dataset], model=model, init=s.init,
                               weights=plan.weights.get(model), seed=s.seed, fold=fs.test_fold,
                               valid_fold=fs.valid_fold, split="nested",
                               optim=dataclasses.replace(plan.optim, epochs=s.epochs or plan.optim.epochs))


def _first_point(optim: OptimConfig) -> dict[str, Any]:
    """The plan's own recipe, evaluated first by every search (batch size snapped into the space)."""
    batch = optim.batch_size if optim.batch_size in BATCH_SIZES else 32
    return {"lr": optim.lr, "weight_decay": optim.weight_decay, "batch_size": batch}


def _best_of(plan: Plan, root: storage.Location, fs: FoldSearch, base: TrialConfig, table: pd.DataFrame) -> dict:
    """Write one search's trials.parquet and best.json; returns the best.json payload."""
    folder = root.join(SEARCH, fs.name)
    storage.write_parquet(folder.join("trials.parquet"), pa.Table.from_pandas(table, preserve_index=False))
    if table.empty:
        raise RethinkError(f"phase 1 search {fs.name} produced no finished trial; see {root.join(SEARCH).uri}")
    best = table.sort_values(METRIC, ascending=False, kind="stable").iloc[0]
    optim = dataclasses.replace(plan.optim, lr=float(best["lr"]), weight_decay=float(best["weight_decay"]),
                                batch_size=int(best["batch_size"]))
    payload = {"source": "hyperopt TPE", "space": SEARCH_SPACE_DOC, "scored_on": METRIC, "dataset": fs.dataset,
               "data": base.data, "test_fold": fs.test_fold, "valid_fold": fs.valid_fold, "feeds": list(fs.feeds),
               "optim": to_dict(optim), METRIC: float(best[METRIC]), "trial_ids": table["trial_id"].tolist()}
    storage.write_json(folder.join(BEST), payload)
    print(f"[sweep] phase 1 {fs.name} best (valid acc on fold {fs.valid_fold} {best[METRIC]:.4f}): lr "
          f"{optim.lr:.2e}, weight decay {optim.weight_decay:.2e}, batch {optim.batch_size}", flush=True)
    return payload


def _search_table(results) -> pd.DataFrame:
    """Each finished search trial's search, sampled recipe and best valid accuracy (the test fold is never read),
    from its (config, final result); failed and stopped trials have no final result with ``record_id``."""
    rows = []
    for config, metrics in results:
        if "record_id" not in metrics or metrics.get("stopped") or "epochs" not in metrics:
            continue
        trial = tune_run.decode(config)
        optim = trial.cfg.optim
        rows.append({"search": trial.search, "lr": optim.lr, "weight_decay": optim.weight_decay,
                     "batch_size": optim.batch_size, METRIC: metrics.get("valid_selected_valid_acc", float("nan")),
                     "trial_id": metrics.get("record_id")})
    return pd.DataFrame(rows, columns=["search", "lr", "weight_decay", "batch_size", METRIC, "trial_id"])


def _save(root: storage.Location, plan: Plan, uris: dict[str, str], folds: dict[str, list[int]],
          recipes: Recipes, searches: list[FoldSearch], found: dict[str, dict], source: str) -> None:
    """``recipes.json`` (every phase-2 test fold's recipe and where it was scored), then ``best.json``."""
    feeding = {(fs.dataset, f): fs for fs in searches for f in fs.feeds}
    default = next((fs for fs in searches if fs.default), None)
    entries = []
    for name, tested in tested_folds(plan, uris, folds).items():
        for fold in tested:
            # the searched dataset's folds come from their own search; other datasets get the default's
            fs = feeding.get((name, fold)) or (default if default and name != default.dataset else None)
            entries.append({"dataset": name, "test_fold": fold, "optim": to_dict(recipes(name, fold)),
                            "search": fs.name if fs else None, "scored_on_dataset": fs.dataset if fs else None,
                            "scored_on_fold": fs.valid_fold if fs else None})
    payload = {"source": source, "per_fold": plan.search.per_fold if plan.search.enabled else None,
               # init 'random' trials train with plan.random_optim when the plan sets one (never searched)
               "random_init_optim": to_dict(plan.random_optim) if plan.random_optim else "the test fold's recipe",
               "searches": {fs.name: {"dataset": fs.dataset, "test_fold": fs.test_fold, "valid_fold": fs.valid_fold,
                                      "feeds": list(fs.feeds), "trial_ids": found[fs.name].get("trial_ids", [])}
                            for fs in searches},
               "recipes": entries}
    storage.write_json(root.join(SEARCH, RECIPES), payload)
    storage.write_json(root.join(SEARCH, BEST), {"source": source, "optim": to_dict(recipes.default),
                                                 "search": default.name if default else None,
                                                 "recipes": f"{RECIPES}: the recipe of each test fold"})


# ---------------------------------------------------------------- several searches in one Tuner


def search_space() -> dict[str, Any]:
    """What each search samples (SEARCH_SPACE_DOC in words)."""
    from ray import tune

    return {"lr": tune.loguniform(1e-5, 1e-2), "weight_decay": tune.loguniform(1e-5, 1e-1),
            "batch_size": tune.choice(list(BATCH_SIZES))}


class FoldSearchers(Searcher):
    """Independent HyperOpt TPE searches in one Tuner, so they run side by side on the cluster.

    Each search has its own TPE state (seeded with ``seed``, the plan's recipe tried first) and learns only
    from its own finished trials, as if it ran alone. A trial request goes to the search with the fewest
    trials in flight that still has samples left and is under its own ``max_concurrent`` (TPE learns from
    finished trials); results go back to the search that suggested the trial.
    """

    def __init__(self, bases: dict[str, dict], num_samples: int, max_concurrent: int, seed: int,
                 first_point: dict[str, Any]):
        from ray.tune.search.hyperopt import HyperOptSearch

        super().__init__(metric=METRIC, mode="max")
        self.bases, self.max_concurrent = bases, max(1, max_concurrent)
        self.searchers = {}
        # HyperOpt's default of 20 random start-up points is more than a whole 16-sample search: TPE would
        # never model anything. A quarter of the budget explores at random, the rest is TPE.
        startup = max(2, num_samples // 4)
        for name in bases:
            searcher = HyperOptSearch(points_to_evaluate=[dict(first_point)], random_state_seed=seed,
                                      n_initial_points=startup)
            searcher.set_search_properties(METRIC, "max", search_space())
            self.searchers[name] = searcher
        self.left = dict.fromkeys(bases, num_samples)
        self.running = dict.fromkeys(bases, 0)
        self.owner: dict[str, str] = {}  # Tune trial id -> search name
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each search has its space; the Tuner's param_space holds constants only

    def suggest(self, trial_id: str):
        ready = [n for n in self.bases if self.left[n] and self.running[n] < self.max_concurrent]
        if not ready:
            return Searcher.FINISHED if not any(self.left.values()) else None
        name = min(ready, key=lambda n: self.running[n])  # ties: the first search in plan order
        config = self.searchers[name].suggest(trial_id)
        self.left[name] -= 1
        self.running[name] += 1
        self.owner[trial_id] = name
        return tune_run.search_config(self.bases[name], name, config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name = self.owner.pop(trial_id, None)
        if name is not None:
            self.running[name] -= 1
            # a trial that stopped early (preempted, interrupted) has no score: the searcher must not learn from it
            error = error or not result or bool(result.get("stopped")) or result.get(METRIC) is None
            self.searchers[name].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: phase 1 resumes from each search's best.json and from the finished search trials'
        records (reused by trial id), never from Tune's searcher state."""
