"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python -m jobs.preprocess --dataset esc50 --root DIR --out s3://...`

Thin entrypoint: the same arguments as `rethink-audio preprocess` (``--smoke``: the dataset a plan's
``--smoke`` uses, see orchestrator.plan.smoke). Checks the output location before any compute, connects
to the cluster the job runs on (``RAY_ADDRESS``, set by the job supervisor; a private local Ray otherwise)
and prints where the dataset version went. ``--root`` must be readable on every node (a shared mount, or a
folder inside the job's working dir such as data/fsdd-mini).
"""

import sys

from jobs._shared import run_cli


def arguments(argv: list[str]) -> list[str]:
    """The CLI command this job runs."""
    return ["preprocess", *argv]


if __name__ == "__main__":
    sys.exit(run_cli(arguments(sys.argv[1:])))
