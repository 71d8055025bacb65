"""Trial records -> one tidy table: one row per finished trial, plus per-epoch rows and per-clip predictions.

A results root is what a sweep leaves (``STORAGE/<plan name>/`` with ``trials/<trial id>/``); a bare trials
folder (``rethink-audio train --out runs/trials``) is accepted too. A trial counts once its ``summary.json``
exists (the trial writes it last) and its records read cleanly; every other folder is reported as skipped
with its path and why (:mod:`analysis.records`), never read half-written and never dropped silently. Reads go through :mod:`orchestrator.storage`, so ``s3://`` works the same as a local path.

Each row carries its trial's provenance (``summary.json["provenance"]``, :mod:`orchestrator.provenance`):
``code_version`` is a configuration key like ``recipe``, so trials run by different code are never averaged
together; records written before provenance existed read as code version "unknown" (and pool together).

This module needs neither torch nor Ray, so ``rethink-audio query`` starts fast.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pandas as pd
import pyarrow as pa

from analysis.recipes import recipe_id, recipe_labels, recipe_of
from analysis.records import read_trial
from orchestrator import spectra, storage
from orchestrator.config import standardize_mode
from orchestrator.errors import StorageError
from orchestrator.provenance import UNKNOWN
from orchestrator.study import PROTOCOLS, parse_init

RESULTS_FILE = "results.parquet"
TRIALS_DIR = "trials"
# What makes two trials the same configuration (they then differ only in seed and fold): recipe is the
# rest of the trial config (analysis.recipes), so trials trained differently are never averaged together;
# code_version, the code that trained them (orchestrator.provenance), so neither are trials computed differently.
CONFIG_KEYS = ["dataset", "model", "init", "loss", "mask", "split", "recipe", "code_version"]
SUMMARY_COLUMNS = ["best_epoch", "best_epoch_epoch", "last_epoch", "last_epoch_epoch", "valid_selected",
                   "valid_selected_epoch", "valid_selected_valid_acc", "epochs", "resumed_at_epoch",
                   "train_seconds", "samples_per_s"]
# summary.json's provenance fields a results row keeps beside code_version (what produced it, where, when)
PROVENANCE_COLUMNS = ["git_commit", "git_dirty", "python", "torch", "ray", "cuda", "device", "host",
                      "first_started_at", "started_at", "finished_at"]
COLUMNS = (["trial_id", *CONFIG_KEYS, "seed", "fold", "valid_fold", "init_kind", "init_k", "method",
            "recipe_label", "dataset_name", "features", "standardize", "input_recipe", "dataset_version", "data_uri",
            "num_classes", "planned_epochs", "lr", "weight_decay", "batch_size", "max_train_clips"]
           + SUMMARY_COLUMNS + PROVENANCE_COLUMNS)
_READERS = 16  # parallel reads: S3 latency, not bandwidth, dominates small JSON files


@dataclass
class Scan:
    """What :func:`scan_results` found: the results table, what was skipped and why, the dataset cards."""

    results: pd.DataFrame
    root_uri: str
    trials_uri: str
    skipped: list[dict[str, str]] = field(default_factory=list)  # analysis.records: trial_id, path, kind, reason
    warnings: list[str] = field(default_factory=list)
    cards: dict[str, dict] = field(default_factory=dict)  # data uri -> dataset card ({} if unreadable)


def locate(uri: str) -> tuple[storage.Location, storage.Location]:
    """(results root, trials folder) of ``uri``: ``uri/trials`` if it exists, else ``uri`` itself."""
    root = storage.resolve(uri)
    trials = root.join(TRIALS_DIR)
    return root, (trials if storage.exists(trials) else root)


def scan_results(uri: str, *, write: bool = True) -> Scan:
    """Read every trial folder under ``uri``; write ``results.parquet`` in the results root if ``write``.

    Raises StorageError when ``uri`` holds no trial folders at all (wrong URI is the usual cause).
    """
    root, trials = locate(uri)
    names = [n for n in storage.list_dirs(trials) if not n.startswith(".")]  # hidden: tool state, not trials
    if not names:
        raise StorageError(f"no trial folders under {trials.uri}: pass the results root a sweep wrote "
                           f"(STORAGE/<plan name>/, holding {TRIALS_DIR}/) or a trials folder written by "
                           "`rethink-audio train --out`")
    found = _parallel(lambda name: read_trial(trials.join(name), name), names)
    scan = Scan(pd.DataFrame(columns=COLUMNS), root.uri, trials.uri)
    configs = []
    for config, summary, skipped in found:
        if skipped:
            scan.skipped.append(skipped)
        else:
            configs.append((config, summary))
    scan.cards = _read_cards({c["dataset"]["uri"] for c, _ in configs}, scan.warnings)
    if configs:
        rows = [_row(config, summary, scan.cards.get(config["dataset"]["uri"], {})) for config, summary in configs]
        scan.results = _typed(_labelled(_disambiguate(pd.DataFrame(rows)), [c["trial"] for c, _ in configs]))
    if write:
        storage.write_parquet(root.join(RESULTS_FILE), pa.Table.from_pandas(scan.results, preserve_index=False))
    return scan


def load_results(uri: str, *, write: bool = True) -> pd.DataFrame:
    """One row per finished trial (columns :data:`COLUMNS`); writes ``results.parquet`` in the results root.

    ``DataFrame.attrs["skipped"]`` lists the folders not counted (``trial_id``, ``path``, ``kind``, ``reason``;
    see :mod:`analysis.records`).
    """
    scan = scan_results(uri, write=write)
    frame = scan.results
    frame.attrs["skipped"] = scan.skipped
    return frame


def load_predictions(uri: str, results: pd.DataFrame | None = None,
                     protocols: Iterable[str] = PROTOCOLS) -> pd.DataFrame:
    """Per-clip test-fold softmax of every finished trial, with the trial's configuration columns.

    Columns: trial_id, clip_id, fold, label, protocol, epoch, probs (float32 array) + CONFIG_KEYS + method,
    recipe_label, seed.
    """
    results = load_results(uri, write=False) if results is None else results
    wanted = set(protocols)
    frames = _read_per_trial(uri, results, "predictions.parquet")
    frames = [f[f["protocol"].isin(wanted)] for f in frames]
    return _with_config(frames, results, ["trial_id", "clip_id", "fold", "label", "protocol", "epoch", "probs"])


def load_epochs(uri: str, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-epoch curves of every finished trial (epochs.parquet rows) with the configuration columns
    (valid_loss / valid_acc are NaN for split "paper" trials: no validation fold)."""
    results = load_results(uri, write=False) if results is None else results
    frames = _read_per_trial(uri, results, "epochs.parquet")
    for frame, trial in zip(frames, results["trial_id"]):
        frame.insert(0, "trial_id", trial)
    epochs = _with_config(frames, results, ["trial_id", "epoch", "train_loss", "valid_loss", "valid_acc",
                                            "test_acc", "lr", "seconds", "samples_per_s"])
    for col in ("valid_loss", "valid_acc"):  # all-null columns of split "paper" trials read as objects
        epochs[col] = pd.to_numeric(epochs[col], errors="coerce")
    return epochs


def trial_uri(uri: str, trial_id: str) -> str:
    """URI of one trial folder under the results root ``uri``."""
    return locate(uri)[1].join(trial_id).uri


# ---------------------------------------------------------------- internals


def _parallel(fn: Callable[[Any], Any], items: list) -> list:
    with ThreadPoolExecutor(max_workers=min(_READERS, max(1, len(items)))) as pool:
        return list(pool.map(fn, items))


def _read_cards(uris: set[str], warnings: list[str]) -> dict[str, dict]:
    """Dataset cards by URI; a card that cannot be read becomes {} and a warning (names fall back)."""
    cards = {}
    for uri in sorted(uris):
        try:
            cards[uri] = spectra.read_card(uri)
        except (StorageError, ValueError) as exc:  # missing/unreachable, or not valid JSON
            cards[uri] = {}
            warnings.append(f"dataset card of {uri} unreadable ({exc}); dataset name taken from the folder name")
    return cards


def _dataset_name(config: dict, card: dict) -> str:
    """The card's name; else the version folder's prefix (``esc50-paper3ch-<hash>`` -> ``esc50``)."""
    if card.get("name"):
        return str(card["name"])
    return config["dataset"]["uri"].rstrip("/").rsplit("/", 1)[-1].split("-", 1)[0]


def features_label(card: dict) -> str | None:
    """``logmel 3ch``, ``mfcc 1ch``, ``logmel mono3x``, ...: the card's feature kind and channels, then for mel
    bands anything but the paper's HTK triangles: ``slaney`` (the Slaney scale, area-normalised) or
    ``area-norm`` (HTK, area-normalised). Cards written before these fields: log-mel, 3 channels, and (before
    ``mel_scale``) the Slaney scale, the only recipe then. None without a card."""
    if not card:
        return None
    features = card.get("features", {})
    kind = features.get("kind", "logmel")
    channels = features.get("num_channels", card.get("spec", {}).get("shape", [3])[0])
    label = f"{kind} {'mono3x' if features.get('variant') == 'mono3x' else f'{channels}ch'}"
    if kind in ("logmel", "mfcc") and features.get("mel_scale", "slaney") != "htk":
        label += f" {features.get('mel_scale', 'slaney')}"
    return label + (" area-norm" if kind in ("logmel", "mfcc") and features.get("mel_norm") else "")


def _row(config: dict, summary: dict, card: dict) -> dict[str, Any]:
    """One results row from a trial's config.json, summary.json and its dataset card."""
    trial, optim = config["trial"], config["trial"].get("optim", {})
    kind, k = parse_init(trial["init"])
    mask = trial.get("mask") is not None
    row = {
        "trial_id": config["trial_id"], "dataset_name": _dataset_name(config, card),
        "dataset_version": str(config["dataset"].get("version", "")), "data_uri": config["dataset"]["uri"],
        "model": trial["model"], "init": trial["init"], "init_kind": kind, "init_k": k,
        "loss": trial.get("loss", {}).get("name", "ce"), "mask": mask, "seed": trial.get("seed", 0),
        "fold": trial.get("fold", config["folds"]["test"][0]),
        "valid_fold": (config["folds"]["valid"] or [None])[0],  # split "paper": no validation fold
        "split": trial.get("split", "nested"), "recipe": recipe_id(recipe_of(trial)),
        "num_classes": config.get("num_classes"), "planned_epochs": optim.get("epochs"), "lr": optim.get("lr"),
        "weight_decay": optim.get("weight_decay"), "batch_size": optim.get("batch_size"),
        "max_train_clips": trial.get("max_train_clips"),
    }
    row["method"] = row["loss"] + ("+mask" if mask else "")
    row["features"] = features_label(card)
    # the input scaling, and the recipe apart from it: what the representation table compares and groups by
    row["standardize"] = standardize_mode(trial.get("standardize", False))
    row["input_recipe"] = recipe_id({k: v for k, v in recipe_of(trial).items() if k != "standardize"})
    return row | {c: summary.get(c) for c in SUMMARY_COLUMNS} | _provenance(summary.get("provenance"))


def _provenance(provenance: Any) -> dict[str, Any]:
    """code_version and :data:`PROVENANCE_COLUMNS` from a summary's provenance (``git_dirty`` a bool, the rest
    strings; any other value, or no provenance at all, reads as missing: code version "unknown")."""
    found = provenance if isinstance(provenance, dict) else {}
    version = found.get("code_version")
    row = {"code_version": version if isinstance(version, str) and version else UNKNOWN}
    for col in PROVENANCE_COLUMNS:
        value = found.get(col)
        row[col] = value if isinstance(value, bool if col == "git_dirty" else str) else None
    return row


def _disambiguate(frame: pd.DataFrame) -> pd.DataFrame:
    """``dataset`` is the card name, or ``name@version`` when one name has several versions in the results
    (e.g. a smoke run at 32 x 32 beside the real one): their numbers must never be averaged together."""
    versions = frame.groupby("dataset_name")["dataset_version"].transform("nunique")
    frame["dataset"] = frame["dataset_name"].where(
        versions <= 1, frame["dataset_name"] + "@" + frame["dataset_version"].str[:8])
    return frame


def _labelled(frame: pd.DataFrame, trials: list[dict]) -> pd.DataFrame:
    """``recipe_label``: what differs between the recipes of this results root ("" when it holds one)."""
    labels = recipe_labels({recipe_id(r): r for r in map(recipe_of, trials)})
    frame["recipe_label"] = frame["recipe"].map(labels)
    return frame


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in :data:`COLUMNS` order with stable dtypes (nullable ints where records may lack a value)."""
    frame = frame.reindex(columns=COLUMNS)
    for col in ["seed", "fold", "num_classes", "planned_epochs", "batch_size", "epochs",
                "best_epoch_epoch", "last_epoch_epoch"]:
        frame[col] = frame[col].astype("int64")
    for col in ["init_k", "resumed_at_epoch", "max_train_clips", "valid_fold", "valid_selected_epoch"]:
        frame[col] = pd.array(frame[col].tolist(), dtype="Int64")
    for col in ["best_epoch", "last_epoch", "valid_selected", "valid_selected_valid_acc", "train_seconds",
                "samples_per_s", "lr", "weight_decay"]:
        frame[col] = frame[col].astype("float64")
    frame["mask"] = frame["mask"].astype(bool)
    frame["git_dirty"] = pd.array(frame["git_dirty"].tolist(), dtype="boolean")
    return frame.sort_values([*CONFIG_KEYS, "seed", "fold"], ignore_index=True)


def _read_per_trial(uri: str, results: pd.DataFrame, filename: str) -> list[pd.DataFrame]:
    """``filename`` (Parquet) of every trial in ``results``, in the same order."""
    _, trials = locate(uri)
    return _parallel(lambda t: storage.read_parquet(trials.join(t, filename)).to_pandas(),
                     results["trial_id"].tolist())


def _with_config(frames: list[pd.DataFrame], results: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Concatenate per-trial frames and attach each trial's configuration columns and seed."""
    meta = results[["trial_id", *CONFIG_KEYS, "method", "recipe_label", "seed", "fold"]]
    columns = [c for c in columns if c != "fold"]  # the trial's test fold comes from the results row
    if not frames:
        return pd.DataFrame(columns=[*columns, *meta.columns[1:]])
    data = pd.concat([f[[c for c in columns if c in f.columns]] for f in frames], ignore_index=True)
    return data.merge(meta, on="trial_id", how="left")
