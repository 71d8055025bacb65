"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python -m jobs.analyze TARGET [--smoke] [--out URI]`

The tables/figures/report of finished trials: ``rethink-audio tables --results TARGET --json``. TARGET is a
plan YAML (results = STORAGE/<plan name>, ``--storage``/``--smoke`` as for jobs.sweep) or a results URI
(local path or s3://); the report goes to ``--out`` (default ``<results>/report``). ``--no-svcca`` and
``--no-ig`` turn off SVCCA and Integrated Gradients, which rebuild networks on CPU. Analysis reads trial
records only, in this job's driver process: it starts no Ray.
"""

import sys

from jobs._shared import run_cli


def arguments(argv: list[str]) -> list[str]:
    """The CLI command this job runs (TARGET, the first argument, is the results to tabulate)."""
    if argv and not argv[0].startswith("-"):
        argv = ["--results", *argv]
    return ["tables", *argv, "--json"]


if __name__ == "__main__":
    sys.exit(run_cli(arguments(sys.argv[1:])))
