"""A whole plan, start to finish: **preprocess** -> **phase 1 search** -> **phase 2 grid** -> **records** ->
**report**. ``rethink-audio sweep`` runs the first four stages (:func:`orchestrator.sweep.run_sweep`);
``run``, ``demo`` and ``jobs/paper.py`` (under ``ray job submit``) run all five through :func:`run_stages`,
which calls that same sweep once and then builds the report.

Each stage is skipped when its outputs already exist, so running the same command again after an
interruption, or after a finished run, redoes only what is missing:

* preprocess: a dataset version is reused when its ``dataset.json`` exists (same inputs, same hash);
* search: ``search/best.json`` exists (or the plan has search off: the plan's recipe is used);
* grid: every trial of the plan has its ``summary.json``; otherwise the sweep runs, reusing finished
  trials and resuming started ones from their own last checkpoint;
* report: ``report/report.md`` exists and no trial finished in this run.

Each stage says what it did in one line (``[run] stage ...``); :func:`run_stages` returns the stages and counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator import storage

REPORT_DIR = "report"


def log(message: str) -> None:
    """One ``[run]`` line, flushed at once (job logs are streamed)."""
    print(f"[run] {message}", flush=True)


@dataclass(frozen=True)
class ReportOptions:
    """What the report stage builds: where (None: ``<results>/report``) and whether SVCCA (Fig. 2a) and
    Integrated Gradients (Fig. 3), which rebuild networks, are included."""

    out: str | None = None
    svcca: bool = True
    attribution: bool = True


def run_stages(plan, report: ReportOptions = ReportOptions(), *, resume: bool = False, quiet: bool = False,
               say: Callable[[str], None] = log) -> dict[str, Any]:
    """The five stages of ``plan`` on the Ray this process is connected to (``ensure_ray`` starts one if
    none); ``say`` prints each stage's line. Returns the JSON summary: results and report URIs, what each
    stage did, trial counts, minutes."""
    from orchestrator.sweep import plan_root, run_sweep

    start = time.time()
    root = plan_root(plan)
    out = report.out or root.join(REPORT_DIR).uri
    say(f"plan {plan.name}: results -> {root.uri}, report -> {out}")
    sweep = run_sweep(plan, resume=resume, quiet=quiet, stage_log=say)
    stages = dict(sweep.stages)
    if stages["grid"] == "skipped" and storage.exists(storage.resolve(out).join("report.md")):
        say(f"stage tables skipped: {out}/report.md exists and no trial finished in this run")
        stages["tables"] = "skipped"
    else:
        written = make_report(root.uri, out, svcca=report.svcca, attribution=report.attribution, say=say)
        stages["tables"] = "ran" if written else "unavailable"
    return {"results": root.uri, "report": out, "stages": stages, "trials": sweep.trials,
            "finished": sweep.finished, "failed": sweep.failed, "minutes": round((time.time() - start) / 60, 1)}


def make_report(results_uri: str, out_uri: str, *, svcca: bool, attribution: bool,
                say: Callable[[str], None] = log) -> dict | None:
    """Every table and figure of ``results_uri`` into ``out_uri``, one line per step; None (with the reason
    said) when the analysis package is not installed: the trial records are complete and the tables can be
    built later."""
    try:
        from analysis.report import build_report
    except ImportError as exc:
        say(f"tables stage unavailable: cannot import analysis.report.build_report ({exc}); the trial records "
            f"are complete, build the tables later with `rethink-audio tables --results {results_uri}`")
        return None
    say(f"tables: {results_uri} -> {out_uri} (SVCCA {'on' if svcca else 'off'}, "
        f"Integrated Gradients {'on' if attribution else 'off'})")
    written = build_report(results_uri, out_uri, svcca=svcca, attribution=attribution,
                           progress=lambda line: print(line, flush=True))
    say(f"report: {written['report_html']} ({written['trials']} finished trials, {len(written['tables'])} "
        f"tables, {len(written['figures'])} figures, {len(written['skipped'])} items skipped)")
    return written
