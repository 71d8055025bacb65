"""Published accuracies that Table III sets beside ours, stored as data with their source and protocol.

Numbers are test accuracy in %, keyed by the dataset catalog name (``esc10``, ``esc50``, ``us8k``, ``gtzan``:
the ``name`` of a dataset card). ``source`` is the short citation shown in the table, ``reference`` the work's
title (listed in the table note), ``protocol`` how the number was measured, as far as the source says.

* Palanisamy et al. (2020), Table III: its own DenseNet-ensemble rows and the rows it cites.
* Nasiri & Hu (2021), SoundCLR: the hybrid-loss ResNet-50 numbers of its abstract. Its code
  (alireza-nasiri/SoundCLR, ``config.py``) holds out fold 1 only (``test_fold = [1]``, the other folds train)
  and reports the best epoch on it, so the number is one fold's, not a cross-validation mean.

Not stored, because no offline copy of their text was available when this module was written: the paper's
Table I/II single-model rows (pretrained and random init per architecture) and SoundCLR's ensemble numbers.
Add them here, with their table and protocol, to have every comparison print them.
"""

from __future__ import annotations

PAPER = "Palanisamy et al. 2020, Table III"
SOUNDCLR = "Nasiri & Hu 2021"
# How the paper measured its own rows (its code, kamalesh0406/Audio-Classification: train on every fold but
# the test fold, read the test curve's best epoch; our split "paper", protocol best_epoch).
PAPER_PROTOCOL = "cross-validation over test folds (ESC-50 5, US8K 10), best epoch of the test curve"
SOUNDCLR_PROTOCOL = "ResNet-50, hybrid loss; fold 1 held out (the rest train), best epoch on fold 1"
CITED_PROTOCOL = "the cited work's own protocol, as listed in the paper"

_WORKS = {
    "Li et al. 2019": "Multi-stream network with temporal attention for environmental sound classification",
    "Zhang et al. 2019": "Attention based convolutional recurrent neural network for environmental sound "
                         "classification",
    "Guzhov et al. 2020": "ESResNet: environmental sound classification based on visual domain models",
    "Choi et al. 2017": "Transfer learning for music classification and regression tasks",
    "Sturm 2013": "The GTZAN dataset: its contents, its faults, their effects on evaluation, and its future use",
    PAPER: "Rethinking CNN models for audio classification",
    SOUNDCLR: "SoundCLR: contrastive learning of representations for improved environmental sound "
              "classification (arXiv 2103.01929)",
}


def _ref(dataset: str, method: str, accuracy: float, source: str) -> dict:
    via = "" if source in (PAPER, SOUNDCLR) else f" (as cited in {PAPER})"
    protocol = {PAPER: PAPER_PROTOCOL, SOUNDCLR: SOUNDCLR_PROTOCOL}.get(source, CITED_PROTOCOL)
    return {"dataset": dataset, "method": method, "accuracy": accuracy, "source": source,
            "reference": f"{source}: {_WORKS[source]}{via}", "protocol": protocol}


REFERENCES: list[dict] = [
    _ref("esc50", "Multi-Stream CNN with temporal attention", 84.90, "Li et al. 2019"),
    _ref("esc50", "Attention CRNN", 86.10, "Zhang et al. 2019"),
    _ref("esc50", "ES-ResNet", 91.50, "Guzhov et al. 2020"),
    _ref("esc50", "DenseNet ensemble (the paper's 'Ours')", 92.89, PAPER),
    _ref("us8k", "Choi et al. (transfer learning, convnet features)", 69.10, "Choi et al. 2017"),
    _ref("us8k", "ES-ResNet", 85.42, "Guzhov et al. 2020"),
    _ref("us8k", "DenseNet ensemble (the paper's 'Ours')", 87.42, PAPER),
    _ref("gtzan", "Choi et al. (transfer learning, convnet features)", 89.80, "Choi et al. 2017"),
    _ref("gtzan", "Sturm's bound (best possible given GTZAN's faults)", 94.50, "Sturm 2013"),
    _ref("gtzan", "DenseNet ensemble (the paper's 'Ours')", 90.50, PAPER),
    _ref("esc10", "SoundCLR (hybrid loss)", 99.75, SOUNDCLR),
    _ref("esc50", "SoundCLR (hybrid loss)", 93.40, SOUNDCLR),
    _ref("us8k", "SoundCLR (hybrid loss)", 86.49, SOUNDCLR),
]


def references_for(dataset_name: str) -> list[dict]:
    """Published rows for one dataset catalog name (none for datasets the paper did not use)."""
    return [r for r in REFERENCES if r["dataset"] == dataset_name]
