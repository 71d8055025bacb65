"""A trial's recipe: everything in its config that two trials must share to be averaged together.

The recipe is the trial config (``config.json["trial"]``) minus what varies *within* one pool of trials:
the seed and folds (what a table averages over), the columns every table already groups by (model, init,
loss name, mask on/off), the dataset URI (the ``dataset`` column: name and version) and how a trial was run
rather than what it computed (workers, GPUs, resources, checkpoint period, where the weights came from).
Everything else is recipe (optimiser, schedule, split mode, augmentation use, loss parameters, training clip
cap, ...), so a config field added later joins the recipe without touching this module.

Records written before a field existed lack its key; it is filled with the value that reproduces the old
behaviour (``orchestrator.study.ID_DEFAULTS``: the value that keeps a trial's id as before the field existed),
else with the field's current default, so old and new records of one recipe pool together.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import TrialConfig, stable_hash, to_dict
from orchestrator.study import HOW_IT_RAN, ID_DEFAULTS

# Varies within a pool, or is a column of its own (flattened "section.key" names), or says how a trial ran.
NOT_RECIPE = frozenset({"seed", "fold", "valid_fold", "data", "model", "init", "loss.name", *HOW_IT_RAN})
# Short names for the label; other keys show as their name without the "optim." prefix.
_NAMES = {"optim.lr": "lr", "optim.weight_decay": "wd", "optim.batch_size": "bs", "max_train_clips": "train clips ≤"}
_ORDER = ["optim.lr", "optim.batch_size", "optim.weight_decay", "optim.epochs"]


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-4}}`` -> ``{"optim.lr": 1e-4}``; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


_DEFAULTS = flatten(to_dict(TrialConfig(data="")))


def recipe_of(trial: dict[str, Any]) -> dict[str, Any]:
    """The recipe of a record's ``trial`` config: flattened, missing keys filled, pool-free keys dropped.

    A trial without masks has ``mask: None`` (the ``mask`` column says so); with masks, their settings
    (``mask.freq_masks``, ...) are recipe."""
    own = flatten(trial)
    flat = _DEFAULTS | own
    for path, old in ID_DEFAULTS.items():  # only inside sections the record has (no mask.* without masks)
        section = path.rpartition(".")[0]
        if path not in own and (not section or any(k.startswith(f"{section}.") for k in own)):
            flat[path] = old
    if flat.get("mask") is None:
        flat.pop("mask", None)
    return {k: v for k, v in sorted(flat.items()) if not _pool_free(k)}


def _pool_free(key: str) -> bool:
    """``key`` or a section holding it (``custom_resources`` for ``custom_resources.x``) is not recipe."""
    parts = key.split(".")
    return any(".".join(parts[:n]) in NOT_RECIPE for n in range(1, len(parts) + 1))


def recipe_id(recipe: dict[str, Any]) -> str:
    """A short stable id of a recipe (8 hex digits)."""
    return stable_hash(recipe, length=8)


def recipe_labels(recipes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Recipe id -> a short readable label naming what differs between the recipes given, e.g.
    ``lr 1e-4 · bs 32 · 70 ep``; "" for every recipe when there is only one. The split mode is left out: the
    tables show it in a column of its own. A key only some recipes have (a field newer than some records)
    differs too, shown as ``—`` where missing; mask settings exist only with masks, a column of their own."""
    keys: set[str] = set()
    for recipe in recipes.values():
        keys |= recipe.keys()

    def values(key: str) -> set[str]:
        return {repr(r.get(key, _ABSENT)) for r in recipes.values() if key in r or not key.startswith("mask.")}

    differing = [k for k in keys - {"split"} if len(values(k)) > 1]
    differing.sort(key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
    return {rid: " · ".join(_label(k, recipe.get(k, _ABSENT)) for k in differing
                            if k in recipe or not k.startswith("mask."))
            for rid, recipe in recipes.items()}


_ABSENT = "—"  # a key the record lacks and this code has no default for


def _label(key: str, value: Any) -> str:
    if key == "optim.epochs":
        return f"{value} ep"
    return f"{_NAMES.get(key, key.removeprefix('optim.'))} {_value(value)}"


def _value(value: Any) -> str:
    """Compact numbers: 0.0001 -> 1e-4, 0.001 -> 1e-3, 2.5e-05 -> 2.5e-5, 32 -> 32; tuples joined by ','
    (empty: none)."""
    if isinstance(value, tuple):
        return ",".join(_value(v) for v in value) or "none"
    if isinstance(value, float) and value != 0 and abs(value) < 1e-2:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)
