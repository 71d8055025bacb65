"""Shared fixtures: the bundled FSDD subset, a local Ray instance, generated dataset layouts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # for tests/layouts.py

REPO = TESTS.parent
FSDD_MINI = REPO / "data" / "fsdd-mini"


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    return FSDD_MINI


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (2 CPUs, no dashboard), shut down at the end."""
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_fsdd(ray_local, fsdd_root, tmp_path_factory) -> str:
    """The bundled FSDD subset at 3 x 32 x 32, preprocessed once per test run: real audio, small enough for
    CPU trials in seconds. Tests only read it (a dataset version is immutable; trials never write into it)."""
    from orchestrator.config import FeatureConfig
    from orchestrator.preprocess import PreprocessRequest, preprocess

    out = tmp_path_factory.mktemp("datasets")
    return preprocess(PreprocessRequest("fsdd", str(fsdd_root), str(out),
                                        features=FeatureConfig(height=32, width=32))).uri

