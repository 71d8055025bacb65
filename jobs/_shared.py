"""What every job entrypoint shares: the ``rethink-audio`` command line with the job's defaults.

Jobs are thin: each is one CLI command (``sweep``, ``run``, ``tables``, ``preprocess``) with the arguments it
was submitted with, plus ``--yes`` (submitting the job was the confirmation of its cost preview, and a job
has no terminal to ask on) and ``--json`` (the last line of the job log is the summary). The CLI reads
``RAY_ADDRESS``, set by the job supervisor, to join the job's cluster; it never prints the environment, so
credentials from the AWS chain stay out of job logs. Exit status: 0 done, 1 some trial failed (submit again
with --resume), 2 a user-fixable error (one ``error: ...`` line).
"""

from __future__ import annotations

JOB_DEFAULTS = ("--yes", "--json")


def run_cli(arguments: list[str]) -> int:
    """``rethink-audio ARGUMENTS``; returns its exit status."""
    from orchestrator.cli import main

    return main(arguments)
