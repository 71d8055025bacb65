"""Reading one trial folder's records, and saying exactly why a folder is not counted.

A trial folder is counted once its ``config.json`` and ``summary.json`` both read as JSON and hold what a
results row needs. Every other folder becomes a *skipped* entry ``{"trial_id", "path", "kind", "reason"}``
whose ``kind`` is one of :data:`KINDS`; ``query`` and ``tables`` print them the same way
(:func:`describe_skipped`), so a truncated or unreadable record is never dropped silently. Records may come
from a shared bucket, so their content is checked (types, and a ``trial_id`` that is one folder name)
before it is used to build paths or rows, and every number in ``summary.json`` must be finite (``NaN`` and
``Infinity``, which Python's ``json`` writes and reads, make the record invalid).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from orchestrator import storage
from orchestrator.errors import StorageError

UNFINISHED = "unfinished"
KINDS = (UNFINISHED, "missing", "not valid JSON", "permission denied", "unreadable", "invalid record")
# summary.json values every results row needs, as numbers; split "nested" trials also have VALID_NUMBERS
# (split "paper" trials have no validation fold, so no valid_selected)
SUMMARY_NUMBERS = ("best_epoch", "best_epoch_epoch", "last_epoch", "last_epoch_epoch", "epochs")
VALID_NUMBERS = ("valid_selected", "valid_selected_epoch")


def read_trial(loc: storage.Location, name: str) -> tuple[dict | None, dict | None, dict | None]:
    """(config, summary, None) for a finished trial, else (None, None, skipped entry)."""
    config_loc, summary_loc = loc.join("config.json"), loc.join("summary.json")
    if not storage.exists(config_loc):
        return None, None, _skip(name, config_loc, "missing", "config.json missing (not a trial folder, or the "
                                                             "trial never started)")
    if not storage.exists(summary_loc):
        return None, None, _skip(name, summary_loc, UNFINISHED, "unfinished: no summary.json yet")
    records = []
    for record in (config_loc, summary_loc):
        try:
            records.append(storage.read_json(record))
        except StorageError as exc:
            kind, detail = getattr(exc, "kind", "unreadable"), getattr(exc, "detail", str(exc))
            reason = f"{record.uri.rsplit('/', 1)[-1]} {kind}" + (f" ({detail})" if detail else "")
            return None, None, _skip(name, record, kind, reason)
    problem = record_problem(*records)
    if problem:
        return None, None, _skip(name, loc, "invalid record", problem)
    return records[0], records[1], None


def record_problem(config: Any, summary: Any) -> str | None:
    """Why these records cannot make a results row (None when they can)."""
    if not isinstance(config, dict) or not isinstance(summary, dict):
        return "config.json and summary.json must each hold a JSON object"
    trial, dataset, folds = config.get("trial"), config.get("dataset"), config.get("folds")
    if not (isinstance(trial, dict) and isinstance(trial.get("model"), str) and isinstance(trial.get("init"), str)):
        return "config.json lacks trial.model / trial.init"
    if not (isinstance(dataset, dict) and isinstance(dataset.get("uri"), str)):
        return "config.json lacks dataset.uri"
    paper = trial.get("split", "nested") == "paper"
    if not (isinstance(folds, dict) and isinstance(folds.get("valid"), list) and (folds["valid"] or paper)):
        return "config.json lacks folds.valid (only split 'paper' trials have none)"
    try:
        storage.check_component(config.get("trial_id"), "config.json trial_id")
    except StorageError:
        return f"config.json trial_id {config.get('trial_id')!r} is not a single folder name"
    bad = [k for k in SUMMARY_NUMBERS + (() if paper else VALID_NUMBERS) if isinstance(summary.get(k), bool)
           or not isinstance(summary.get(k), (int, float))]
    if bad:
        return f"summary.json lacks numeric {', '.join(bad)}"
    odd = non_finite(summary)
    if odd:
        return (f"summary.json holds non-finite {', '.join(f'{k} {json.dumps(v)}' for k, v in odd)}: every metric "
                "must be a finite number (a diverged or corrupt run: remove the trial folder and rerun the sweep to "
                "train it again)")
    return None


def non_finite(value: Any, key: str = "") -> list[tuple[str, float]]:
    """(key path, value) of every NaN, Infinity or -Infinity in a JSON value (Python's ``json`` reads and
    writes them, though JSON has none): such a metric would drop out of group counts (NaN) or turn a group's
    mean into inf, so the record is not counted at all."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(key or "value", value)]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in non_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in non_finite(v, f"{key}[{i}]")]
    return []


def _skip(name: str, loc: storage.Location, kind: str, reason: str) -> dict[str, str]:
    return {"trial_id": name, "path": loc.uri, "kind": kind, "reason": reason}


def problems(skipped: list[dict]) -> list[dict]:
    """Skipped entries that are not merely unfinished trials (what ``--strict`` refuses)."""
    return [s for s in skipped if s.get("kind") != UNFINISHED]


def describe_skipped(skipped: list[dict]) -> list[str]:
    """A count line, then one ``path: reason`` line per skipped folder (empty list when none)."""
    if not skipped:
        return []
    counts = Counter(s.get("kind", "unreadable") for s in skipped)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: KINDS.index(kv[0])
                                                             if kv[0] in KINDS else len(KINDS)))
    return [f"{len(skipped)} trial folder(s) not counted ({summary}):"] + [
        f"  {s.get('path', s['trial_id'])}: {s['reason']}" for s in skipped]
