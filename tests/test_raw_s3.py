"""Raw datasets in object storage (moto on loopback): a generated ESC-50 layout uploaded to a bucket reads
like its local copy; a missing object, a key outside the root or an unreachable endpoint is a clear error
(or, outside the root, a rejection) and never a silently smaller dataset.

The end-to-end test runs ``rethink-audio preprocess`` in subprocesses (each with a private local Ray whose
workers inherit the endpoint and fake credentials); the others build manifests in this process, no Ray.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from s3_fixture import REPO, fake_credentials, ray_tmpdir, run_isolated, s3, subprocess_env  # noqa: F401

from cluster.local_head import free_port
from layouts import make_esc50
from orchestrator import spectra
from orchestrator.cli import main
from orchestrator.datasets import common, load_manifest
from orchestrator.errors import StorageError
from orchestrator.config import FeatureConfig
from orchestrator.preprocess import PreprocessRequest, preprocess, version_of


BUCKET = "raw-audio"
ROOT = f"s3://{BUCKET}/ESC-50-master"
SAME = ["clip_id", "label", "label_name", "fold", "split", "group", "duration", "sample_rate", "error"]


def upload(s3, folder: Path, prefix: str = "ESC-50-master") -> None:
    """Every file below ``folder`` as an object under ``prefix`` in the test bucket."""
    s3.upload(folder, BUCKET, prefix)


@pytest.fixture
def esc50(tmp_path) -> Path:
    """A small local ESC-50 copy (10 clips of 0.5 s, plus a corrupt and an empty file)."""
    return make_esc50(tmp_path / "ESC-50-master", clips_per_fold=2, seconds=0.5, bad_files=True)


def test_s3_manifest_and_version_equal_the_local_copy(s3, esc50):
    upload(s3, esc50)
    local, remote = load_manifest("esc50", esc50), load_manifest("esc50", ROOT)
    pd.testing.assert_frame_equal(local[SAME], remote[SAME])
    assert remote["path"].str.startswith(f"{ROOT}/audio/").all()
    assert set(remote.loc[remote["error"] != "", "clip_id"]) == {"1-91-A-0", "2-92-A-0"}  # content: rejected
    request = PreprocessRequest("esc50", str(esc50), "unused")
    assert version_of(request, local) == version_of(request, remote)  # paths are not part of the version


def test_a_missing_object_fails_with_the_uri_and_the_fix(s3, esc50, tmp_path, capsys):
    upload(s3, esc50)
    s3.client().delete_object(Bucket=BUCKET, Key="ESC-50-master/audio/3-1030-A-0.wav")
    expected = (f"1 audio file(s) listed in {ROOT}/meta/esc50.csv do not exist: {ROOT}/audio/3-1030-A-0.wav "
                f"(line 6); the copy at {ROOT} is incomplete or --root points at the wrong copy: restore the "
                "files (re-download or re-sync), or remove their rows from the metadata")
    with pytest.raises(StorageError) as error:
        load_manifest("esc50", ROOT)
    assert str(error.value) == expected
    # the CLI fails before Ray starts (the manifest is built first): one line, exit status 2, no version
    code = main(["preprocess", "--dataset", "esc50", "--root", ROOT, "--out", str(tmp_path / "out")])
    assert code == 2 and capsys.readouterr().err == f"error: {expected}\n"
    assert not (tmp_path / "out").exists()


def test_a_wrong_prefix_or_bucket_names_the_uri(s3, esc50):
    upload(s3, esc50)
    for root, bucket in ((f"s3://{BUCKET}/ESC-50", BUCKET), ("s3://no-such-bucket/ESC-50-master", "no-such-bucket")):
        with pytest.raises(StorageError) as error:
            load_manifest("esc50", root)
        assert str(error.value) == (f"dataset root {root} not found: no object under that prefix (or no bucket "
                                    f"{bucket!r}); check the URI with `aws s3 ls {root}/`")


def test_keys_outside_the_root_are_rejected_unread(s3, esc50, monkeypatch):
    csv = esc50 / "meta" / "esc50.csv"
    frame = pd.read_csv(csv)
    names = ["../../other/secret.wav", "../audio/../../x.wav", "/etc/passwd.wav", "s3://other-bucket/y.wav",
             "./dot.wav"]
    extra = [{"filename": n, "fold": 1, "target": 0, "category": "dog", "esc10": True, "src_file": f"x{i}",
              "take": "A"} for i, n in enumerate(names)]
    pd.concat([frame, pd.DataFrame(extra)], ignore_index=True).to_csv(csv, index=False)
    upload(s3, esc50)
    probed = []
    real = common.probe_audio
    monkeypatch.setattr(common, "probe_audio", lambda loc: probed.append(loc.uri) or real(loc))
    m = load_manifest("esc50", ROOT).set_index("clip_id")
    for clip in ("secret", "x", "passwd", "y", "dot"):
        assert m.loc[clip, "error"] == f"outside the dataset root {ROOT}: not read", clip
    assert len(probed) == 12 and all(uri.startswith(f"{ROOT}/audio/") and ".." not in uri for uri in probed)


def test_an_unreachable_endpoint_fails_fast(monkeypatch, capsys, tmp_path):
    access, secret = fake_credentials()
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    start = time.time()
    code = main(["preprocess", "--dataset", "esc50", "--root", ROOT, "--out", str(tmp_path / "out")])
    seconds = time.time() - start
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: storage error at {ROOT}: ") and err.count("\n") == 1
    assert "AWS_ENDPOINT_URL" in err and "credentials" in err and "Traceback" not in err
    assert seconds < 15, f"took {seconds:.0f} s"  # bounded connect timeout and retries


def preprocess_cli(s3, root: str, out: Path) -> tuple[dict, float]:
    """``rethink-audio preprocess --json`` in a subprocess with a private Ray: (summary, wall seconds)."""
    with ray_tmpdir() as ray_tmp:
        start = time.time()
        done = run_isolated([sys.executable, "-m", "orchestrator.cli", "preprocess", "--dataset", "esc50",
                             "--root", root, "--out", str(out), "--height", "32", "--width", "40", "--json"],
                            subprocess_env(s3.env(), ray_tmp), timeout=300)
        seconds = time.time() - start
    assert done.returncode == 0 and done.leftovers == set(), done.output[-3000:]
    summary = [line for line in done.output.splitlines() if line.startswith("{")][-1]
    return json.loads(summary), seconds


def test_preprocess_from_s3_gives_the_rows_of_the_local_copy(ray_local, s3, esc50, tmp_path):
    upload(s3, esc50)
    remote, remote_s = preprocess_cli(s3, ROOT, tmp_path / "from-s3")
    # the local copy needs no S3 environment in Ray's workers: the session's Ray preprocesses it in-process
    local = preprocess(PreprocessRequest("esc50", str(esc50), str(tmp_path / "from-local"),
                                         features=FeatureConfig(height=32, width=40))).summary()  # as --json
    print(f"preprocess wall time (subprocess, Ray start included): s3 {remote_s:.1f} s "
          f"(pipeline {remote['seconds']} s), local pipeline {local['seconds']} s")
    assert remote["version"] == local["version"] and remote["clips"] == local["clips"] == 10
    assert remote["rejected"] == local["rejected"] == 2
    tables = [spectra.read_table(s["uri"]).to_pandas().sort_values("clip_id").reset_index(drop=True)
              for s in (remote, local)]
    columns = [c for c in tables[0].columns if c != "spec"]
    pd.testing.assert_frame_equal(tables[0][columns], tables[1][columns])
    assert np.array_equal(np.stack(tables[0]["spec"]), np.stack(tables[1]["spec"]))
    card = spectra.read_card(remote["uri"])
    assert card["source"]["root"] == ROOT and {r["clip_id"] for r in card["rejected"]} == {"1-91-A-0", "2-92-A-0"}


def test_a_sweep_reads_its_raw_audio_from_an_s3_root(s3, esc50, tmp_path):
    """The whole path: a plan whose dataset root is s3://, preprocessed and trained by `rethink-audio sweep`."""
    import yaml

    upload(s3, esc50)
    plan = {"name": "raw-s3", "storage": str(tmp_path / "runs"),
            "datasets": {"esc50": {"preprocess": {"dataset": "esc50", "root": ROOT,
                                                  "features": {"height": 32, "width": 32}}, "folds": [1]}},
            "models": ["efficientnet_lite0"], "inits": ["pretrained"], "seeds": [0],
            "optim": {"epochs": 1, "lr": 0.001, "batch_size": 4}, "max_concurrent_trials": 1, "max_failures": 0}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    with ray_tmpdir() as ray_tmp:
        done = run_isolated([sys.executable, "-m", "orchestrator.cli", "sweep", str(tmp_path / "plan.yaml"),
                             "--json"], subprocess_env(s3.env(), ray_tmp), timeout=400)
    assert done.returncode == 0 and done.leftovers == set(), done.output[-3000:]
    summary = json.loads([line for line in done.output.splitlines() if line.startswith("{")][-1])
    assert summary["trials"] == summary["finished"] == 1 and summary["failed"] == []
    assert "file(s) rejected; card: " in done.output  # the sweep names the card and the rejected count
    (card_file,) = (tmp_path / "runs" / "raw-s3" / "datasets").glob("*/dataset.json")
    card = json.loads(card_file.read_text())
    assert card["source"]["root"] == ROOT and card["counts"]["total"] == 10 and len(card["rejected"]) == 2
