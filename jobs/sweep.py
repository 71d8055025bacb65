"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python -m jobs.sweep PLAN [--smoke] [--storage URI] [--resume]`

``rethink-audio sweep PLAN --yes --json`` on the job's cluster (datasets -> phase 1 search -> phase 2 grid,
see orchestrator.sweep): the storage is checked before anything else, the cost preview is logged, and the log
ends with a one-line JSON summary. Every ``rethink-audio sweep`` option applies (``--help``).
"""

import sys

from jobs._shared import JOB_DEFAULTS, run_cli


def arguments(argv: list[str]) -> list[str]:
    """The CLI command this job runs."""
    return ["sweep", *argv, *JOB_DEFAULTS]


if __name__ == "__main__":
    sys.exit(run_cli(arguments(sys.argv[1:])))
