"""A damaged dataset version is found before any trial starts: ``spectra.verify_version`` reads every Parquet
footer (no data pages) and compares the rows with the card's; a sweep on a damaged version exits 2 with one
``error:`` line naming the file and how to rebuild it."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from versions import write_version

from orchestrator import spectra
from orchestrator.errors import DatasetError, RethinkError
from s3_fixture import s3  # noqa: F401  (the moto S3 fixture)
from sweep_helpers import write_plan

REPO = Path(__file__).resolve().parent.parent


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_footer(path: Path) -> None:
    """Same length, same magic bytes, but the footer's Thrift metadata overwritten with garbage."""
    raw = path.read_bytes()
    length = struct.unpack("<i", raw[-8:-4])[0]
    path.write_bytes(raw[: -8 - length] + b"\xff" * length + raw[-8:])


def test_an_intact_version_passes_and_the_error_is_a_rethink_error(tmp_path):
    spectra.verify_version(write_version(tmp_path / "v"))
    assert issubclass(DatasetError, RethinkError)  # the CLI prints it as one line, exit 2


@pytest.mark.parametrize("damage", [truncate, corrupt_footer, lambda p: p.write_bytes(b"")],
                         ids=["truncated", "corrupt-footer", "empty"])
def test_an_unreadable_parquet_file_is_named_with_how_to_rebuild(tmp_path, damage):
    uri = write_version(tmp_path / "v")
    bad = tmp_path / "v" / "data" / "fold=3" / "part-1.parquet"
    damage(bad)
    with pytest.raises(DatasetError) as caught:
        spectra.verify_version(uri)
    message = str(caught.value)
    assert "\n" not in message and f"{bad} cannot be read" in message
    assert f"delete {uri} and rerun the sweep" in message and "rethink-audio preprocess" in message


def test_a_missing_file_names_its_fold_and_the_counts(tmp_path):
    uri = write_version(tmp_path / "v")  # 5 folds x 4 clips x 3 rows (2 augmented copies), 2 files per fold
    (tmp_path / "v" / "data" / "fold=3" / "part-0.parquet").unlink()
    with pytest.raises(DatasetError, match=r"hold 54 rows, its dataset.json says 60: a file is missing, added or "
                                           rf"replaced under {tmp_path / 'v' / 'data' / 'fold=3'}/ \(it holds 2 of"):
        spectra.verify_version(uri)


def test_a_preprocessed_version_is_checked_and_named_with_its_own_preprocess_command(tiny_fsdd, tmp_path):
    spectra.verify_version(tiny_fsdd)  # what Ray Data writes passes (footers with statistics, hive folders)
    copy = Path(shutil.copytree(tiny_fsdd, tmp_path / Path(tiny_fsdd).name))
    bad = sorted((copy / "data").rglob("*.parquet"))[0]
    truncate(bad)
    with pytest.raises(DatasetError) as caught:
        spectra.verify_version(str(copy))
    message = str(caught.value)
    assert f"{bad} cannot be read (Parquet magic bytes not found in footer" in message
    assert (f"`rethink-audio preprocess --dataset fsdd --root {REPO / 'data' / 'fsdd-mini'} --out {tmp_path} "
            "--height 32 --width 32 --sample-rate 8000`") in message
    bad.unlink()
    fold = bad.parent.name
    with pytest.raises(DatasetError, match=rf"under {copy / 'data' / fold}/ \(it holds \d+ of the fold's 100 original"):
        spectra.verify_version(str(copy))


def test_a_version_on_s3_names_the_damaged_object(tmp_path, s3):  # noqa: F811
    write_version(tmp_path / "v")
    truncate(tmp_path / "v" / "data" / "fold=2" / "part-0.parquet")
    s3.upload(tmp_path / "v", "versions", "fsdd/v")
    with pytest.raises(DatasetError, match=r"s3://versions/fsdd/v/data/fold=2/part-0.parquet cannot be read"):
        spectra.verify_version("s3://versions/fsdd/v")


def test_a_sweep_on_a_damaged_version_exits_2_with_one_line_and_starts_no_trial(tiny_fsdd, tmp_path):
    plan_file = write_plan(tmp_path, inits=["pretrained"], optim={"epochs": 1, "lr": 0.001, "batch_size": 16},
                           dataset=tiny_fsdd)
    root = tmp_path / "store" / "t"
    bad = sorted((root / "datasets").rglob("*.parquet"))[0]
    truncate(bad)
    env = os.environ | {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(plan_file)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, start_new_session=True)
    output = done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, output
    assert len(errors) == 1 and f"{bad} cannot be read" in errors[0] and "rerun the sweep" in errors[0], output
    assert "Traceback" not in output
    assert not (root / "trials").exists() and not (root / "grid").exists()
