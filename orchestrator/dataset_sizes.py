"""How big a plan's datasets are before anything is preprocessed: clips per fold, augmented copies, input size.

The cost preview (``orchestrator.cost``) and the memory estimate (``orchestrator.memory``) both start here. No Ray,
no dataset reads beyond cheap ones: a ``data:`` dataset's ``dataset.json`` card, a local FSDD/folder root's
file listing; every other dataset's size comes from ``OFFICIAL_CLIPS`` and its declared folds
(``orchestrator.study``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import RethinkError
from orchestrator.study import declared_folds

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".au")

# Published clip counts. GTZAN has 1,000 clips of which 999 decode (jazz.00054 is corrupt); FSDD 3,000
# recordings of 6 speakers. Fold lists come from orchestrator.study.declared_folds (GTZAN / folder:
# options.folds, default 5), the same ones the plan check uses.
OFFICIAL_CLIPS = {"esc50": 2000, "esc10": 400, "us8k": 8732, "gtzan": 999, "fsdd": 3000}


@dataclass(frozen=True)
class DatasetSize:
    """What the estimate needs to know about one dataset of a plan."""

    clips_per_fold: dict[int, float]  # original clips per fold
    copies: int  # augmented copies per clip (0: none)
    pixels: int  # height x width of one input
    source: str  # where the counts come from (shown in the preview)

    @property
    def folds(self) -> list[int]:
        return sorted(self.clips_per_fold)


def dataset_size(dataset) -> DatasetSize | None:
    """Size of one ``DatasetPlan``: its card when it names a finished version, else the official sizes;
    None when neither is known (a ``folder`` dataset whose root cannot be listed)."""
    if dataset.data is not None:
        return _card_size(dataset.data)
    from orchestrator.datasets import get_dataset

    pre = dataset.preprocess
    name = get_dataset(pre.dataset).name
    spec = get_dataset(name)
    pixels = pre.features.height * pre.features.image_width(pre.features.sample_rate or spec.sample_rate, spec.width)
    folds = declared_folds(name, pre.options.get("folds"))
    listed = _listed_clips(name, Path(pre.root)) if "://" not in pre.root else None
    if listed:
        count, speakers, source = listed
        folds = list(range(1, speakers + 1)) if speakers else folds  # FSDD: a subset may have fewer speakers
    elif name in OFFICIAL_CLIPS:
        count, source = OFFICIAL_CLIPS[name], "official size"
    else:
        return None
    return DatasetSize({f: count / len(folds) for f in folds}, pre.augment.copies, pixels, source)


def _listed_clips(name: str, root: Path) -> tuple[int, int, str] | None:
    """(clips, speakers or 0, source) from a local directory listing, for datasets whose size varies by
    copy: FSDD (the bundled subset has 600 recordings) and generic folders."""
    if name == "fsdd" and (root / "recordings").is_dir():
        files = [p.name for p in (root / "recordings").glob("*.wav")]
        speakers = {f.split("_")[1] for f in files if f.count("_") == 2}
        return (len(files), len(speakers), f"{len(files)} files listed") if files else None
    if name == "folder" and root.is_dir():
        count = sum(1 for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        return (count, 0, f"{count} files listed") if count else None
    return None


def _card_size(uri: str) -> DatasetSize | None:
    """Counts from a dataset version's card; None (size unknown) when the card cannot be read here."""
    from orchestrator import spectra

    try:
        card = spectra.read_card(uri)
        per_fold = {int(f): float(n) for f, n in card["counts"]["per_fold"].items()}
        _, height, width = card["spec"]["shape"]
        copies = int((card.get("augment") or {}).get("copies", 0))
    except (RethinkError, OSError, KeyError, TypeError, ValueError):
        return None
    return DatasetSize(per_fold, copies, int(height) * int(width), f"card {uri}")
