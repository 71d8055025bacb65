"""Published accuracies that Table III sets beside ours, stored as data with their source.

Numbers are test accuracy in %, keyed by the dataset catalog name (``esc50``, ``us8k``, ``gtzan``: the
``name`` of a dataset card). They are the rows of Palanisamy et al. (2020), Table III; ``source`` is the
short citation shown in the table, ``reference`` the work's title (listed in the table note). Add a row
here to compare against another method.
"""

from __future__ import annotations

PAPER = "Palanisamy et al. 2020, Table III"

_WORKS = {
    "Li et al. 2019": "Multi-stream network with temporal attention for environmental sound classification",
    "Zhang et al. 2019": "Attention based convolutional recurrent neural network for environmental sound "
                         "classification",
    "Guzhov et al. 2020": "ESResNet: environmental sound classification based on visual domain models",
    "Choi et al. 2017": "Transfer learning for music classification and regression tasks",
    "Sturm 2013": "The GTZAN dataset: its contents, its faults, their effects on evaluation, and its future use",
    PAPER: "Rethinking CNN models for audio classification",
}


def _ref(dataset: str, method: str, accuracy: float, source: str) -> dict:
    via = "" if source == PAPER else f" (as cited in {PAPER})"
    return {"dataset": dataset, "method": method, "accuracy": accuracy, "source": source,
            "reference": f"{source}: {_WORKS[source]}{via}"}


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
]


def references_for(dataset_name: str) -> list[dict]:
    """Published rows for one dataset catalog name (none for datasets the paper did not use)."""
    return [r for r in REFERENCES if r["dataset"] == dataset_name]
