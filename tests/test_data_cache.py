"""The node's data cache: one read-only copy of a dataset version per node, shared, verified, evicted by age."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from orchestrator import data_cache, spectra
from orchestrator.errors import StorageError
from orchestrator.training import DataFeed, batched, shuffled
from orchestrator.trial_data import load_trial_data
from s3_fixture import s3  # noqa: F401  (the moto S3 fixture)
from versions import version_bytes, write_version

SHAPE = (3, 16, 16)
SIZE = version_bytes(5, 4, 2, SHAPE)  # the default synthetic version: 60 rows


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own (no cap from the environment); released afterwards."""
    monkeypatch.setenv("RETHINK_AUDIO_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RETHINK_AUDIO_DATA_CACHE_GB", raising=False)
    data_cache.release()
    yield tmp_path / "cache"
    data_cache.release()


def parquet_rows(uri: str) -> dict[tuple[str, int], bytes]:
    """(clip id, aug copy) -> spectrogram bytes, read from the version's Parquet files (the source of truth)."""
    table = spectra.read_table(uri, columns=["clip_id", "aug_copy", "spec"])
    specs = spectra.spec_array(table)
    copies = [-1 if c is None else c for c in table["aug_copy"].to_pylist()]
    return {(c, a): s.tobytes() for c, a, s in zip(table["clip_id"].to_pylist(), copies, specs)}


def mapped_rows(mapped: data_cache.MappedVersion) -> dict[tuple[str, int], bytes]:
    return {(c, int(a)): mapped.specs[i].tobytes()
            for i, (c, a) in enumerate(zip(mapped.rows["clip_id"], mapped.rows["aug_copy"]))}


def test_a_version_is_built_once_and_every_process_maps_the_same_read_only_file(cache, tmp_path, capfd):
    uri = write_version(tmp_path / "v1")
    mapped = data_cache.open_version(uri)
    assert isinstance(mapped.specs, np.memmap) and not mapped.specs.flags.writeable
    assert mapped.specs.shape == (60, *SHAPE) and mapped_rows(mapped) == parquet_rows(uri)
    assert mapped.rows["fold"].tolist() == sorted(mapped.rows["fold"])  # fold from the hive partition
    assert "cached in" in capfd.readouterr().err
    assert data_cache.open_version(uri) is mapped  # the process keeps it: no second verification
    # another process maps the same entry without building anything, and holds it while it maps it
    child = subprocess.run([sys.executable, "-c", f"from orchestrator import data_cache; m = data_cache.open_version("
                            f"{uri!r}); print(m.path, float(m.specs[7].sum()))"],
                           capture_output=True, text=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.returncode == 0, child.stderr
    assert "cached in" not in child.stderr and child.stdout.split()[0] == str(mapped.path)
    assert float(child.stdout.split()[1]) == float(mapped.specs[7].sum())
    assert [e[0].name for e in data_cache.entries(cache)] == ["synth-0123456789ab"] and not list(cache.glob(".tmp-*"))
    assert data_cache.in_use(mapped.path)
    data_cache.release()
    assert not data_cache.in_use(mapped.path)


def _truncate(entry):
    with open(entry / data_cache.SPECS, "r+b") as handle:
        handle.truncate(entry.joinpath(data_cache.SPECS).stat().st_size - 100)


def _flip(entry):
    with open(entry / data_cache.SPECS, "r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "the manifest says"),
    (_flip, "CRC32 differs"),
    (lambda entry: (entry / data_cache.MANIFEST).unlink(), "a build that did not finish"),
    (lambda entry: (entry / data_cache.MANIFEST).write_text("{"), "unreadable manifest"),
], ids=["truncated", "bit-flip", "no-manifest", "bad-manifest"])
def test_a_damaged_entry_is_detected_and_rebuilt(cache, tmp_path, capfd, damage, reason):
    uri = write_version(tmp_path / "v1")
    entry = data_cache.open_version(uri).path
    data_cache.release()
    damage(entry)
    capfd.readouterr()
    mapped = data_cache.open_version(uri)
    err = capfd.readouterr().err
    assert f"{entry}: " in err and reason in err and "rebuilding it from" in err
    assert mapped_rows(mapped) == parquet_rows(uri) and data_cache.verify(entry) is None


def test_leftovers_of_a_crashed_build_are_cleared(cache, tmp_path):
    uri = write_version(tmp_path / "v1")
    (cache / ".tmp-synth-0123456789ab-dead").mkdir(parents=True)
    (cache / ".tmp-synth-0123456789ab-dead" / data_cache.SPECS).write_bytes(b"half")
    assert data_cache.open_version(uri).specs.shape[0] == 60
    assert not list(cache.glob(".tmp-*"))


def test_least_recently_used_versions_are_evicted_but_never_one_in_use(cache, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RETHINK_AUDIO_DATA_CACHE_GB", str(2.5 * SIZE / 2**30))  # two versions fit
    uris = [write_version(tmp_path / f"v{i}", version=f"{i:012d}", seed=i) for i in range(3)]
    for uri in uris[:2]:
        data_cache.open_version(uri)
    data_cache.release()
    names = [e[0].name for e in data_cache.entries(cache)]
    assert names == ["synth-000000000000", "synth-000000000001"]  # least recently used first
    other_trial = data_cache._hold_shared(cache / names[0])  # another process still maps version 0
    data_cache.open_version(uris[2])
    assert [e[0].name for e in data_cache.entries(cache)] == [names[0], "synth-000000000002"]  # 1 went, 0 stays
    assert f"evicting {names[1]}" in capfd.readouterr().err
    data_cache.release()
    other_trial.close()
    monkeypatch.setenv("RETHINK_AUDIO_DATA_CACHE_GB", str(1.5 * SIZE / 2**30))  # one fits; both others in use
    holds = [data_cache._hold_shared(e[0]) for e in data_cache.entries(cache)]
    data_cache.open_version(uris[1])
    assert "goes over the cap" in capfd.readouterr().err and len(data_cache.entries(cache)) == 3
    for hold in holds:
        hold.close()


def test_sizes_beyond_the_cap_or_the_setting_are_clear_errors(cache, tmp_path, monkeypatch):
    uri = write_version(tmp_path / "v1")
    monkeypatch.setenv("RETHINK_AUDIO_DATA_CACHE_GB", str(0.5 * SIZE / 2**30))
    with pytest.raises(StorageError, match="does not fit the node's data cache cap .* RETHINK_AUDIO_DATA_CACHE_GB"):
        data_cache.open_version(uri)
    assert load_trial_data(uri, 1, None, cache_gb=2 * SIZE / 2**30).specs.shape[0] == 60  # the plan's cap wins
    monkeypatch.setenv("RETHINK_AUDIO_DATA_CACHE_GB", "lots")
    with pytest.raises(StorageError, match="RETHINK_AUDIO_DATA_CACHE_GB='lots' is not a number"):
        data_cache.cache_settings()


def test_a_damaged_parquet_file_is_named_with_the_fix_and_nothing_is_left(cache, tmp_path):
    uri = write_version(tmp_path / "v1")
    bad = tmp_path / "v1" / "data" / "fold=3" / "part-1.parquet"
    bad.write_bytes(bad.read_bytes()[:-200])
    with pytest.raises(StorageError, match=rf"{bad}.*rethink-audio preprocess"):
        data_cache.open_version(uri)
    assert not [p for p in cache.iterdir() if p.name != data_cache.ROOT_LOCK]


def test_a_version_on_s3_is_cached_from_s3(cache, tmp_path, s3):
    uri = write_version(tmp_path / "v1")
    s3.upload(tmp_path / "v1", "cached", "versions/v1")
    mapped = data_cache.open_version("s3://cached/versions/v1")
    assert mapped_rows(mapped) == parquet_rows(uri)
    assert json.loads((mapped.path / data_cache.MANIFEST).read_text())["uri"] == "s3://cached/versions/v1"


def test_batches_from_the_mapping_equal_the_in_memory_batches(cache, tmp_path):
    """The feed gathers from the mapping exactly the batches a private in-memory copy of the rows gives."""
    data = load_trial_data(write_version(tmp_path / "v1"), 1, None, seed=5)
    private = (np.array(data.specs[data.train_rows]), data.train_labels)  # a private in-memory copy
    rows = data.epoch_rows("draw", seed=5, epoch=2)
    feed = DataFeed(data.specs, data.rows_used(), torch.device("cpu"))
    order = shuffled(rows, 17)
    fed = list(feed.batches(data.train_rows[order], data.train_labels[order], 8))
    before = list(batched(private, 8, shuffle_seed=17, rows=rows))
    assert feed.mode == "host" and len(fed) == len(before) == 3
    for (x, y), (x0, y0) in zip(fed, before):
        assert torch.equal(x, x0) and torch.equal(y, y0) and x.dtype == torch.float16
