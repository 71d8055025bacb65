"""Dataset catalog: one pure function per dataset from a root folder to a manifest DataFrame.

Facts each dataset needs downstream (native sample rate, default feature width) are data in ``DATASETS``;
its official folds are ``orchestrator.study.OFFICIAL_FOLDS`` (torch- and pandas-free, so the plan check and the
cost preview read them without this catalog). ``load_manifest(name, root)`` is the one entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from orchestrator.datasets.common import MANIFEST_COLUMNS
from orchestrator.datasets.esc50 import esc10_manifest, esc50_manifest
from orchestrator.datasets.folder import folder_manifest
from orchestrator.datasets.fsdd import fsdd_manifest
from orchestrator.datasets.gtzan import gtzan_manifest
from orchestrator.datasets.source import DatasetRoot
from orchestrator.datasets.urbansound8k import urbansound8k_manifest
from orchestrator.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """What the pipeline needs to know about a dataset."""

    name: str
    build: Callable[..., pd.DataFrame]  # root -> manifest
    sample_rate: int  # features are computed at this rate (clips are resampled to it)
    width: int  # default time-axis width of the feature images
    description: str
    options: tuple[str, ...] = ()  # extra keyword options of ``build`` (e.g. GTZAN's folds, seed)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("esc50", esc50_manifest, 44100, 250, "ESC-50: 2,000 x 5 s clips, 50 classes, 5 folds"),
        DatasetSpec("esc10", esc10_manifest, 44100, 250, "ESC-10: the 400-clip, 10-class subset of ESC-50"),
        DatasetSpec("us8k", urbansound8k_manifest, 22050, 250, "UrbanSound8K: 8,732 clips <= 4 s, 10 classes, 10 folds"),
        DatasetSpec("gtzan", gtzan_manifest, 22050, 1500, "GTZAN: 1,000 x 30 s clips, 10 genres, seeded 80/20",
                    ("folds", "seed")),
        DatasetSpec("fsdd", fsdd_manifest, 8000, 250, "Free Spoken Digit Dataset: 10 digits, speaker folds"),
        DatasetSpec("folder", folder_manifest, 22050, 250, "generic ROOT/<class>/*.wav, seeded stratified folds",
                    ("folds", "seed")),
    )
}
ALIASES = {"esc-50": "esc50", "esc-10": "esc10", "urbansound8k": "us8k", "urbansound": "us8k"}


def get_dataset(name: str) -> DatasetSpec:
    """The catalog entry for ``name`` (case-insensitive, common aliases accepted)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[key]


def load_manifest(name: str, root: str | Path | DatasetRoot, **options) -> pd.DataFrame:
    """Manifest DataFrame (``MANIFEST_COLUMNS``) of dataset ``name`` stored under ``root`` (a local folder,
    an ``s3://bucket/prefix`` or an opened :class:`DatasetRoot`)."""
    spec = get_dataset(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ConfigError(f"dataset {spec.name} has no option(s) {unknown}; valid: {list(spec.options) or 'none'}")
    return spec.build(DatasetRoot.open(root), **options)


__all__ = ["DATASETS", "DatasetRoot", "DatasetSpec", "MANIFEST_COLUMNS", "get_dataset", "load_manifest"]
