"""`ray job submit --working-dir . -- python jobs/preprocess.py --dataset esc50 --root DIR --out s3://...`

Thin entrypoint: the same arguments as `rethink-audio preprocess`; connects to the cluster the job runs on
(``RAY_ADDRESS``, set by the job supervisor) and prints where the dataset version went.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working dir, when not pip-installed

from orchestrator.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
