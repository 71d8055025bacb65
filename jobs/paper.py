"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python -m jobs.paper PLAN [--smoke] [--storage URI]`

A whole plan as one job: ``rethink-audio run PLAN --yes --json``, i.e. **preprocess** -> **search** ->
**grid** -> **tables**, each stage skipped when its outputs exist (orchestrator.pipeline), so submitting the
same command again after an interruption, or after a finished run, redoes only what is missing. Every
``rethink-audio run`` option applies (``--report``, ``--no-svcca``, ``--no-ig``, ``--resume``; ``--help``).
"""

import sys

from jobs._shared import JOB_DEFAULTS, run_cli


def arguments(argv: list[str]) -> list[str]:
    """The CLI command this job runs."""
    return ["run", *argv, *JOB_DEFAULTS]


if __name__ == "__main__":
    sys.exit(run_cli(arguments(sys.argv[1:])))
