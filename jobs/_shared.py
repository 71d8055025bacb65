"""What every job entrypoint shares: logging, connecting to Ray, user-facing errors, the lazy analysis import.

Jobs print plain ``[job] ...`` lines: ``ray job logs`` shows them next to Ray's own output. They never print
the environment, so credentials from the AWS chain (env vars, instance role) stay out of job logs.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from orchestrator.errors import RethinkError, user_message


def log(message: str) -> None:
    """One ``[job]`` line on stdout, flushed at once (job logs are streamed)."""
    print(f"[job] {message}", flush=True)


def connect(address: str | None = None) -> None:
    """Join the cluster the job runs on (``RAY_ADDRESS``, set by the job supervisor) or start a private
    local Ray (laptop runs), and log what it offers."""
    import os

    import ray

    from orchestrator.ray_runtime import ensure_ray

    target = address or os.environ.get("RAY_ADDRESS")
    ensure_ray(address)
    resources = ray.cluster_resources()
    where = f"joined the Ray cluster at {target}" if target else "started a private local Ray"
    log(f"{where}: {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs now "
        "(an autoscaling cluster adds nodes as trials ask for them)")


def load(plan_file: str, storage_uri: str | None, smoke: bool):
    """The plan, with ``--storage`` applied and shrunk by ``--smoke``."""
    from orchestrator.plan import load_plan, smoke as shrink

    plan = load_plan(plan_file, storage=storage_uri)
    return shrink(plan) if smoke else plan


def log_cost(plan) -> None:
    """Log the plan's cost preview (``rethink-audio plan``). Jobs never ask for confirmation: submitting the
    job is the confirmation, and a job has no terminal; a preview that cannot be computed is only logged."""
    from orchestrator.cost import estimate, render

    try:
        text = render(estimate(plan))
    except RethinkError as exc:
        log(f"cost preview unavailable: {exc}")
        return
    for line in text.splitlines():
        log(line)


def preflight(uri: str) -> None:
    """Fail in seconds, before any compute, when the storage is unreachable or not writable; warn when a
    job writes to a local folder inside its working dir (Ray deletes that copy) or to a node's local disk."""
    import os
    from pathlib import Path

    from orchestrator import storage

    loc = storage.resolve(uri)
    storage.check_writable(loc)
    log(f"storage {loc.uri} is writable")
    if not loc.is_s3 and os.environ.get("RAY_ADDRESS"):
        inside = Path(loc.path).resolve().is_relative_to(Path.cwd().resolve())
        log(f"warning: results go to {loc.path} on the node running this job"
            + (", inside the job's working dir, which Ray deletes later" if inside else "")
            + "; multi-node clusters need shared storage: pass --storage s3://bucket/prefix")


def report_builder() -> Callable[..., dict[str, Any]] | None:
    """``analysis.report.build_report``, or None (with a logged reason) when the analysis package lacks it."""
    try:
        from analysis.report import build_report
    except ImportError as exc:
        log(f"tables stage unavailable: cannot import analysis.report.build_report ({exc}); "
            "the trial records are complete, build the tables later with jobs/analyze.py")
        return None
    return build_report


def make_report(results_uri: str, out_uri: str, *, smoke: bool, svcca: bool, attribution: bool) -> dict | None:
    """Build every table/figure of ``results_uri`` into ``out_uri``; ``smoke`` turns off SVCCA and IG
    (they rebuild networks on CPU). Returns what ``build_report`` wrote, or None if analysis is missing."""
    build_report = report_builder()
    if build_report is None:
        return None
    svcca, attribution = (False, False) if smoke else (svcca, attribution)
    log(f"tables: {results_uri} -> {out_uri} (SVCCA {'on' if svcca else 'off'}, "
        f"Integrated Gradients {'on' if attribution else 'off'})")
    written = build_report(results_uri, out_uri, svcca=svcca, attribution=attribution)
    log(f"report: {written['report_html']} ({written['trials']} finished trials, {len(written['tables'])} "
        f"tables, {len(written['figures'])} figures, {len(written['skipped'])} items skipped)")
    return written


def print_json(payload: dict[str, Any]) -> None:
    """The job's one-line machine-readable result (last line of the job log)."""
    print(json.dumps(payload, default=str), flush=True)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a job's ``main``; errors the user can fix become one ``error: ...`` line and exit status 2."""
    try:
        return main(argv)
    except RethinkError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # Ray wraps errors raised in workers; show ours plainly
        message = user_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2
