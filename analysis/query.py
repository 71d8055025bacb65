"""Ad-hoc questions over the results table: filter, group, aggregate one metric.

``run_query(uri, "dataset == 'esc50' and init == 'pretrained'", ["model"], "valid_selected", "md")``
gives the same numbers as ``results.query(where).groupby(["model"])["valid_selected"].agg(["mean", "std",
"count"])`` on :func:`analysis.collect.load_results` (accuracies as fractions, std with ddof 1), rendered as
Markdown, CSV or JSON. Without ``group_by`` it lists the matching trials with the metric.

The filter is never given to ``DataFrame.query``: :mod:`analysis.safe_query` parses it into an allow-listed
tree (columns, literals, comparisons, in, and/or/not) and evaluates that, so a query string cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.collect import COLUMNS, CONFIG_KEYS, load_results
from analysis.records import problems
from analysis.render import markdown_table
from analysis.safe_query import parse_where, select_rows
from orchestrator.errors import ConfigError, StorageError

FORMATS = ("md", "csv", "json")
DEFAULT_METRIC = "valid_selected"


def select(results: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """Rows matching the filter ``where`` (all rows when None/empty); see :mod:`analysis.safe_query`."""
    return select_rows(results, where)


def aggregate(rows: pd.DataFrame, group_by: list[str] | None, metric: str) -> pd.DataFrame:
    """Mean, std (ddof 1) and count of ``metric`` per ``group_by`` group; or the rows with the metric."""
    _check_columns(rows, [metric, *(group_by or [])])
    if not pd.api.types.is_numeric_dtype(rows[metric]):
        raise ConfigError(f"--metric {metric!r} is not numeric; pick e.g. valid_selected, best_epoch, "
                          "last_epoch, train_seconds")
    if not group_by:
        return rows[["trial_id", *CONFIG_KEYS, "seed", "fold", metric]].reset_index(drop=True)
    stats = rows.groupby(group_by, sort=True, dropna=False)[metric].agg(["mean", "std", "count"])
    return stats.reset_index()


def _check_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ConfigError(f"unknown column(s) {', '.join(unknown)}; columns: {', '.join(frame.columns)}")


def render(frame: pd.DataFrame, fmt: str) -> str:
    """``frame`` as Markdown (floats to 4 decimals), CSV or JSON records (full precision)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", double_precision=15) + "\n"
    if fmt == "md":
        if frame.empty:
            return "_no trials match_\n"
        shown = frame.apply(lambda col: col.map(_cell) if pd.api.types.is_float_dtype(col) else col.astype(str))
        return markdown_table(shown) + "\n"
    raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")


def _cell(value) -> str:
    return "" if pd.isna(value) else f"{value:.4f}"


@dataclass
class QueryResult:
    """The rendered answer and the trial folders that could not be counted in it."""

    text: str
    skipped: list[dict] = field(default_factory=list)  # analysis.records entries: trial_id, path, kind, reason


def query_results(uri: str, where: str | None = None, group_by: list[str] | None = None,
                  metric: str | None = None, fmt: str = "md", *, strict: bool = False) -> QueryResult:
    """Filter, group and aggregate the results under ``uri``. ``strict``: a trial record that is missing or
    unreadable (not merely unfinished) is an error instead of a skipped entry."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if where:
        parse_where(where, COLUMNS)  # a bad filter fails before any record is read
    results = load_results(uri, write=False)
    skipped = results.attrs.get("skipped", [])
    bad = problems(skipped)
    if strict and bad:
        shown = "; ".join(f"{s['path']}: {s['reason']}" for s in bad[:5]) + ("; ..." if len(bad) > 5 else "")
        raise StorageError(f"--strict: {len(bad)} trial record(s) not counted: {shown}; fix or remove them, "
                           "or run without --strict to query the rest")
    return QueryResult(render(aggregate(select(results, where), group_by, metric or DEFAULT_METRIC), fmt), skipped)


def run_query(uri: str, where: str | None = None, group_by: list[str] | None = None,
              metric: str | None = None, fmt: str = "md", *, strict: bool = False) -> str:
    """Filter, group and aggregate the results under ``uri``; returns the rendered text (skipped trial
    folders are in :func:`query_results`' answer and on the CLI's stderr)."""
    return query_results(uri, where, group_by, metric, fmt, strict=strict).text
