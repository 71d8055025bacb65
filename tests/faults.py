"""Crashes on request for tests of retry and resume, through the trial's test seam (``orchestrator.trial``,
``FAULTS_ENV``): conftest points the variable at a file of this test process before Ray starts, so every
process a trial runs in (this one, a Tune actor, a Ray task) reads the same file; :func:`injected` fills it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from orchestrator.trial import FAULTS_ENV


@contextlib.contextmanager
def injected(faults: dict[str, dict]) -> Iterator[None]:
    """While the block runs, trial id -> ``{"after_epoch": k, "log": path, "times": n}``: that trial raises
    InjectedFault after epoch k while its log has fewer than n lines (default 1)."""
    path = Path(os.environ[FAULTS_ENV])
    path.write_text(json.dumps(faults))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
