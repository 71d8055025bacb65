"""A node's one copy of each dataset version, mapped read-only by every trial on the node. No Ray, no torch.

A dataset version (Parquet, local or ``s3://``) is materialised once per node into a cache folder::

    <cache root>/<dataset>-<version>/
        specs.npy       every spectrogram, (N, C, H, W) float16, uncompressed: what trials map
        rows.parquet    clip_id, source_id, fold, label, aug_copy of row i of specs.npy
        manifest.json   written last: format, sizes, shape, CRC32 of sampled blocks (a finished entry)
        in-use.lock     every process mapping the entry holds a shared flock on it
        last-used       its mtime orders entries for eviction (least recently used first)
    <cache root>/.lock  held while an entry is verified, built or evicted

Why a memory-mapped file and not Ray's object store: the mapping works the same with and without Ray
(``rethink-audio train`` on a laptop, a Tune trial, each DDP rank), outlives a sweep (the next sweep on the
node maps it at once, reading nothing from S3), and its pages are clean page cache that the kernel may drop
and re-read under memory pressure instead of killing a trial; the object store lives in shared memory
(``/dev/shm``), counts against the node's memory until the object is freed, and spills to disk when full.
Every process mapping the file shares one copy of its pages (PSS splits them; they are not private memory).

The entry is built by a short-lived child process (``python -m orchestrator.data_cache``) that streams the
Parquet files batch by batch into the ``.npy`` file, so the Arrow buffers of a build never stay in a trial's
memory; the builder writes into a temporary folder that is renamed into place once complete. An entry that
fails verification (a missing or short file, a wrong header, a sampled block whose CRC differs: a partial
copy, a truncated disk, bit rot) is removed and rebuilt with one warning line. The cache holds at most
``max_bytes``; before a build it evicts least-recently-used entries that no process maps.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import pandas as pd

from orchestrator import spectra, storage
from orchestrator.errors import StorageError

CACHE_FORMAT = 1
SPECS, ROWS, MANIFEST, IN_USE, LAST_USED, ROOT_LOCK = (
    "specs.npy", "rows.parquet", "manifest.json", "in-use.lock", "last-used", ".lock")
ROW_COLUMNS = ["clip_id", "source_id", "fold", "label", "aug_copy"]
SAMPLED_BLOCKS = 16  # blocks of specs.npy whose CRC32 every open checks (first, last and evenly between)
BLOCK_BYTES = 1 << 20
BUILD_BATCH_ROWS = 256  # rows per Arrow batch the builder holds at once


@dataclass(frozen=True)
class CacheSettings:
    """Where the node's cache lives and how large it may grow."""

    root: Path
    max_bytes: int


def cache_settings(max_gb: float = 0.0) -> CacheSettings:
    """The cache folder and its cap: ``max_gb`` (the plan's ``data_cache_gb``) when > 0, else the environment's
    (``storage.data_cache_location``), else half of the disk the folder is on."""
    root, env_gb = storage.data_cache_location()
    gb = max_gb or env_gb
    if gb:
        return CacheSettings(root, int(gb * 2**30))
    root.mkdir(parents=True, exist_ok=True)
    return CacheSettings(root, shutil.disk_usage(root).total // 2)


@dataclass
class MappedVersion:
    """A dataset version as this process sees it: row metadata in memory, spectrograms mapped read-only."""

    key: str
    path: Path
    rows: pd.DataFrame  # clip_id, source_id, fold, label, aug_copy (-1: an original clip); index = row
    specs: np.ndarray  # (N, C, H, W) float16, a read-only np.memmap of specs.npy
    _hold: IO | None = field(default=None, repr=False)  # the shared flock that keeps the entry from eviction

    def close(self) -> None:
        """Release the entry (it may be evicted once no process maps it); arrays taken from it stay valid."""
        if self._hold is not None:
            self._hold.close()
            self._hold = None


_current: MappedVersion | None = None  # one version mapped per process: sweeps run dataset by dataset


def open_version(uri: str, version: str | None = None, max_gb: float = 0.0) -> MappedVersion:
    """The version at ``uri`` mapped from this node's cache, built there first if missing or corrupt.

    ``version`` is the card's, when the caller has read it (else the card is read here). The process keeps
    the last version it opened and returns it again; opening another releases it."""
    global _current
    card = spectra.read_card(uri) if version is None else None
    version = version or card.get("version", uri)
    key = entry_key(uri, version, card)
    if _current is not None and _current.key == key:
        return _current
    release()
    settings = cache_settings(max_gb)
    entry = settings.root / key
    with root_lock(settings.root):
        problem = verify(entry) if entry.exists() else None
        if problem:
            print(f"[data-cache] {entry}: {problem}; rebuilding it from {uri}", file=sys.stderr, flush=True)
            remove_entry(entry)
        if not entry.exists():
            _build(uri, entry, settings)
        hold = _hold_shared(entry)
        (entry / LAST_USED).touch()
    _current = _map(entry, key, hold)
    return _current


def release() -> None:
    """Stop holding this process's mapped version, so the cache may evict it (arrays taken from it stay valid
    while referenced). A later :func:`open_version` maps it again."""
    global _current
    if _current is not None:
        _current.close()
        _current = None


def entry_key(uri: str, version: str, card: dict | None = None) -> str:
    """The folder name of a version in the cache: its folder name when that ends with the version
    (``fsdd-paper3ch-1321fe8a11da``), else a name made from the version; always one safe path component."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    key = name if name.endswith(str(version)) else f"{(card or {}).get('name', 'data')}-{version}"
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", key).lstrip(".-")[:200] or "data"


def _map(entry: Path, key: str, hold: IO) -> MappedVersion:
    rows = pd.read_parquet(entry / ROWS)
    rows["clip_id"] = rows["clip_id"].astype(str)
    specs = np.load(entry / SPECS, mmap_mode="r")
    return MappedVersion(key, entry, rows, specs, hold)


# ---------------------------------------------------------------- locks


@contextlib.contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """The cache's exclusive lock: one process at a time verifies, builds or evicts entries on this node."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ROOT_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _hold_shared(entry: Path) -> IO:
    """A shared flock on the entry's in-use file, kept while this process maps it (released on close/exit)."""
    handle = open(entry / IN_USE, "a")
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def in_use(entry: Path) -> bool:
    """Whether some process (this one included) maps the entry: its in-use file cannot be locked exclusively."""
    try:
        handle = open(entry / IN_USE, "a")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


# ---------------------------------------------------------------- verification


def _sample_offsets(size: int) -> list[int]:
    if size <= BLOCK_BYTES:
        return [0]
    return sorted({int(x) for x in np.linspace(0, size - BLOCK_BYTES, SAMPLED_BLOCKS)})


def block_crcs(path: Path) -> list[list[int]]:
    """``[offset, crc32]`` of the sampled blocks of a file (what the manifest keeps and each open checks)."""
    size = path.stat().st_size
    found = []
    with open(path, "rb") as handle:
        for offset in _sample_offsets(size):
            handle.seek(offset)
            found.append([offset, zlib.crc32(handle.read(BLOCK_BYTES))])
    return found


def verify(entry: Path) -> str | None:
    """None when the entry is complete and intact, else what is wrong with it (for the warning line)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (a build that did not finish)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if manifest.get("format") != CACHE_FORMAT:
        return f"cache format {manifest.get('format')} (this code writes {CACHE_FORMAT})"
    specs = entry / SPECS
    try:
        size = specs.stat().st_size
        with open(specs, "rb") as handle:
            np.lib.format.read_magic(handle)
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    except (OSError, ValueError) as exc:
        return f"{SPECS} unreadable ({exc})"
    if size != manifest["specs_bytes"] or list(shape) != manifest["shape"] or str(dtype) != manifest["dtype"]:
        return f"{SPECS} is {size} bytes of {dtype} {list(shape)}, the manifest says {manifest['specs_bytes']}"
    if block_crcs(specs) != manifest["crc32"]:
        return f"{SPECS}: a sampled block's CRC32 differs from the manifest (corrupt)"
    if not (entry / ROWS).exists() or (entry / ROWS).stat().st_size != manifest["rows_bytes"]:
        return f"{ROWS} missing or of the wrong size"
    return None


def remove_entry(entry: Path) -> None:
    """Remove an entry: renamed aside first, so a half-deleted folder is never taken for an entry."""
    trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
    entry.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- eviction


def entries(root: Path) -> list[tuple[Path, int, float]]:
    """(folder, bytes, last used) of every finished entry, least recently used first."""
    found = []
    for entry in root.iterdir() if root.exists() else []:
        manifest = entry / MANIFEST
        if entry.is_dir() and not entry.name.startswith(".") and manifest.exists():
            try:
                size = json.loads(manifest.read_text())["specs_bytes"]
            except (OSError, ValueError, KeyError):
                size = sum(p.stat().st_size for p in entry.iterdir())
            used = (entry / LAST_USED).stat().st_mtime if (entry / LAST_USED).exists() else 0.0
            found.append((entry, int(size), used))
    return sorted(found, key=lambda item: item[2])


def make_room(settings: CacheSettings, needed: int) -> None:
    """Evict least-recently-used entries no process maps until ``needed`` more bytes fit under the cap.

    Entries in use are never evicted: when they alone keep the cache over its cap, one warning line says so
    and the build goes ahead (failing a trial would cost more than a cap overrun of the disk budget)."""
    if needed > settings.max_bytes:
        raise StorageError(f"a dataset version of {needed / 2**30:.1f} GiB does not fit the node's data cache cap of "
                           f"{settings.max_bytes / 2**30:.1f} GiB ({settings.root}): raise the plan's data_cache_gb "
                           "or RETHINK_AUDIO_DATA_CACHE_GB")
    held = entries(settings.root)
    total = sum(size for _, size, _ in held)
    for entry, size, _ in held:
        if total + needed <= settings.max_bytes:
            return
        if not in_use(entry):
            print(f"[data-cache] evicting {entry.name} ({size / 2**30:.2f} GiB, least recently used)",
                  file=sys.stderr, flush=True)
            remove_entry(entry)
            total -= size
    if total + needed > settings.max_bytes:
        print(f"[data-cache] {settings.root}: {total / 2**30:.1f} GiB in use by running trials; adding "
              f"{needed / 2**30:.1f} GiB goes over the cap of {settings.max_bytes / 2**30:.1f} GiB",
              file=sys.stderr, flush=True)


# ---------------------------------------------------------------- building


def _build(uri: str, entry: Path, settings: CacheSettings) -> None:
    """Build ``entry`` from the version at ``uri`` (caller holds the root lock): clear leftovers of crashed
    builds, make room, check the disk, stream the version in a child process, rename the result into place."""
    for stale in settings.root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # under the root lock no build is running: these are dead
    for stale in settings.root.glob(".trash-*"):
        shutil.rmtree(stale, ignore_errors=True)
    needed = _version_bytes(uri)
    make_room(settings, needed)
    free = shutil.disk_usage(settings.root).free
    if needed > free:
        raise StorageError(f"{settings.root}: {free / 2**30:.1f} GiB free, the version at {uri} needs "
                           f"{needed / 2**30:.1f} GiB in the node's data cache: free disk space or point "
                           "RETHINK_AUDIO_DATA_CACHE at a larger disk")
    tmp = settings.root / f".tmp-{entry.name}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "orchestrator.data_cache", uri, str(tmp)],
                           capture_output=True, text=True, env=_child_env())
    if child.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [line for line in child.stderr.strip().splitlines() if line.strip()]
        raise StorageError(lines[-1] if lines and lines[-1].startswith(uri) else
                           f"{uri}: building the node's cached copy failed: {' | '.join(lines[-3:])}")
    tmp.rename(entry)
    print(f"[data-cache] {entry.name}: {needed / 2**30:.2f} GiB cached in {time.perf_counter() - started:.1f} s "
          f"({settings.root})", file=sys.stderr, flush=True)


def _child_env() -> dict[str, str]:
    """The builder's environment: this process's, with its import path (a Ray worker's may not be the default)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
    return env


def _version_bytes(uri: str) -> int:
    """Bytes of the version's spectrograms, from the Parquet footers (rows) and the card (shape)."""
    shape = spectra.read_card(uri)["spec"]["shape"]
    return int(count_rows(uri, spectra.open_dataset(uri)) * np.prod(shape) * 2)


def count_rows(uri: str, dataset) -> int:
    """Rows of every Parquet file of the version (footers only); a file that cannot be read is named."""
    total = 0
    for fragment in dataset.get_fragments():
        with _naming(uri, fragment.path):
            total += fragment.count_rows()
    return total


@contextlib.contextmanager
def _naming(uri: str, path: str) -> Iterator[None]:
    """Turn an unreadable Parquet file into one error naming it and the fix."""
    import pyarrow as pa

    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"{uri}: dataset file {path} cannot be read ({str(exc).splitlines()[0]}): the version "
                           "is damaged; delete it and rebuild it with `rethink-audio preprocess`") from None


def build_entry(uri: str, out: Path) -> None:
    """Write a cache entry for the version at ``uri`` into folder ``out`` (the child process's work).

    Streams each Parquet file in batches of ``BUILD_BATCH_ROWS`` rows into a preallocated ``.npy`` file; a file
    that cannot be read is named in the error, with the fix."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    card = spectra.read_card(uri)
    dataset = spectra.open_dataset(uri)
    shape, count = tuple(card["spec"]["shape"]), count_rows(uri, dataset)
    out.mkdir(parents=True)
    specs = np.lib.format.open_memmap(out / SPECS, mode="w+", dtype=np.float16, shape=(count, *shape))
    columns, filled = {c: [] for c in ROW_COLUMNS}, 0
    for fragment in dataset.get_fragments():
        fold = pads.get_partition_keys(fragment.partition_expression)["fold"]
        with _naming(uri, fragment.path):
            for batch in fragment.to_batches(columns=["clip_id", "source_id", "label", "aug_copy", "spec"],
                                             batch_size=BUILD_BATCH_ROWS, batch_readahead=0,
                                             fragment_readahead=0):
                n = batch.num_rows
                specs[filled : filled + n] = batch.column("spec").to_numpy_ndarray()
                for name in ("clip_id", "source_id", "label", "aug_copy"):
                    columns[name].extend(batch.column(name).to_pylist())
                columns["fold"].extend([fold] * n)
                filled += n
    if filled != count:
        raise StorageError(f"{uri}: the Parquet footers count {count} rows but {filled} were read: rebuild it")
    specs.flush()
    del specs
    rows = pd.DataFrame(columns)
    rows["aug_copy"] = rows["aug_copy"].fillna(-1).astype(np.int64)  # null: the original clip
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), out / ROWS)
    _fsync(out / SPECS, out / ROWS)
    manifest = {"format": CACHE_FORMAT, "uri": uri, "version": card.get("version"), "shape": [count, *shape],
                "dtype": "float16", "specs_bytes": (out / SPECS).stat().st_size,
                "rows_bytes": (out / ROWS).stat().st_size, "crc32": block_crcs(out / SPECS)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    _fsync(out / MANIFEST)


def _fsync(*paths: Path) -> None:
    for path in paths:
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())


def main(argv: list[str]) -> int:
    """``python -m orchestrator.data_cache URI OUT``: build one entry (run by :func:`open_version`)."""
    uri, out = argv
    try:
        build_entry(uri, Path(out))
    except StorageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
