"""The sweep's dataset stage: a plan's ``preprocess.root`` given as an s3:// URI reaches preprocessing as
written, and the sweep prints each dataset's rejected count and the path of its card."""

from __future__ import annotations

from pathlib import Path

import orchestrator.preprocess as pre
from orchestrator import spectra, storage
from orchestrator.plan import load_plan
from orchestrator.sweep import prepare_datasets

PLAN = """
name: raw-s3
storage: {storage}
datasets:
  esc50:
    preprocess: {{dataset: esc50, root: s3://raw-audio/ESC-50-master}}
    folds: [1]
models: [efficientnet_lite0]
"""


def test_s3_root_is_kept_and_the_sweep_prints_rejections_and_card(tmp_path: Path, monkeypatch, capsys):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(PLAN.format(storage=tmp_path / "runs"))
    plan = load_plan(plan_file)
    seen = []

    def preprocess(request, **options):  # the pipeline is tested elsewhere; here: what the sweep passes and prints
        seen.append(request)
        uri = f"{request.out}/esc50-paper3ch-0123456789abcdef"
        card = {"folds": [1, 2, 3, 4, 5], "rejected": [{"path": "p", "clip_id": "c", "reason": "empty"}]}
        storage.write_json(storage.resolve(uri).join(spectra.CARD), card)
        return pre.PreprocessResult(uri, False, card, 1.0)

    monkeypatch.setattr(pre, "preprocess", preprocess)
    uris, folds = prepare_datasets(plan, storage.resolve(plan.storage).join(plan.name))
    assert [r.root for r in seen] == ["s3://raw-audio/ESC-50-master"]
    assert folds == {"esc50": [1, 2, 3, 4, 5]}
    assert capsys.readouterr().out == (f"[sweep] dataset esc50: {uris['esc50']} (built, 1 file(s) rejected; "
                                       f"card: {uris['esc50']}/dataset.json)\n")
