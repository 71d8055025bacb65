"""Free Spoken Digit Dataset: ``recordings/{digit}_{speaker}_{take}.wav``; 10 digits, 6 speakers, 8 kHz.

Folds are the speakers (sorted by name: fold 1 = george ... fold 6 = yweweler), so no voice appears in both
training and test; ``split`` is FSDD's official split (takes 0-4 test, the rest train).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pandas as pd

from orchestrator.datasets.common import finish_manifest
from orchestrator.datasets.source import DatasetRoot
from orchestrator.errors import ManifestError

NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")
OFFICIAL_TEST_TAKES = range(0, 5)


def fsdd_manifest(root: str | Path | DatasetRoot) -> pd.DataFrame:
    """Manifest of FSDD (or a subset of it): speaker folds, official split, label = the digit."""
    root = DatasetRoot.open(root)
    folder = ("recordings",) if root.is_dir("recordings") else ()
    if not root.is_dir(*folder):
        raise ManifestError(f"{root} is not a folder; expected {root}/recordings/{{digit}}_{{speaker}}_{{take}}.wav")
    parsed = []
    for path in root.audio_files(*folder):
        match = NAME.match(PurePosixPath(path).stem)
        if not match:
            raise ManifestError(
                f"{path}: file name does not follow FSDD's {{digit}}_{{speaker}}_{{take}}.wav pattern; "
                "move or rename it"
            )
        digit, speaker, take = match.groups()
        parsed.append((path, int(digit), speaker, int(take)))
    speakers = sorted({p[2] for p in parsed})
    rows = [
        {
            "clip_id": PurePosixPath(path).stem,
            "path": path,
            "label": digit,
            "label_name": str(digit),
            "fold": speakers.index(speaker) + 1,
            "split": "test" if take in OFFICIAL_TEST_TAKES else "train",
            "group": speaker,
        }
        for path, digit, speaker, take in parsed
    ]
    return finish_manifest(rows, root)
