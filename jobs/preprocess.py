"""`ray job submit --runtime-env jobs/runtime_env.yaml -- python -m jobs.preprocess --dataset esc50 --root DIR --out s3://...`

Thin entrypoint: the same arguments as `rethink-audio preprocess`, plus ``--smoke`` (32 x 32 features, no
augmented copies: the sizes a plan's --smoke uses). Checks the output location before any compute, connects
to the cluster the job runs on (``RAY_ADDRESS``, set by the job supervisor; a private local Ray otherwise)
and prints where the dataset version went. ``--root`` must be readable on every node (a shared mount, or a
folder inside the job's working dir such as data/fsdd-mini).
"""

import sys

from jobs._shared import run_cli

SMOKE = ["--height", "32", "--width", "32", "--augment-copies", "0"]  # later flags win in argparse


def arguments(argv: list[str]) -> list[str]:
    """CLI arguments for `rethink-audio preprocess`, with ``--smoke`` expanded."""
    args = [a for a in argv if a != "--smoke"]
    return ["preprocess", *args, *(SMOKE if "--smoke" in argv else [])]


if __name__ == "__main__":
    sys.exit(run_cli(arguments(sys.argv[1:])))
