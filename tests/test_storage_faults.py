"""Storage writes under faults: a full disk, a failed rename, a Ctrl-C mid-write.

Every write (``write_bytes``, ``write_json``, ``write_parquet``) is atomic on local disk: a temporary file in
the same folder renamed into place, deleted on any failure, so an existing file survives a failed overwrite
and no ``*.tmp-*`` file is left. A full disk is a ``StorageFullError`` saying the URI, the bytes needed and
the bytes free, and the fix. The faults are real: a 1 MiB tmpfs mounted in a private user+mount namespace
(``unshare -rm``; skipped where the kernel refuses it), and a filesystem whose output streams write part of
the data to the real file and then raise ENOSPC / KeyboardInterrupt.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from orchestrator import storage
from orchestrator.errors import StorageError
from orchestrator.storage import StorageFullError

REPO = Path(__file__).resolve().parents[1]
OLD = b"old checkpoint " * 100


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# --- a filesystem that fails part-way through a write ---------------------------------------------------------

class _FailingFile:
    """A real file that accepts ``after`` bytes, writes them to disk, then raises ``exc``."""

    def __init__(self, path: str, after: int, exc: BaseException):
        self.file, self.left, self.exc, self.closed = open(path, "wb"), after, exc, False

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.left:
            self.file.write(data[:self.left])
            self.file.flush()
            self.left = 0
            raise self.exc
        self.left -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.closed = True
        self.file.close()


class FaultyHandler(pafs.FileSystemHandler):
    """The local filesystem, except that output streams raise ``write_error`` after ``after`` bytes and
    ``move`` raises ``move_error`` (each when set). ``opened`` lists the paths of the output streams."""

    def __init__(self, write_error: BaseException | None = None, move_error: BaseException | None = None,
                 after: int = 64):
        self.fs, self.write_error, self.move_error, self.after = pafs.LocalFileSystem(), write_error, move_error, after
        self.opened: list[str] = []

    def __eq__(self, other): return self is other
    def __ne__(self, other): return self is not other
    def get_type_name(self): return "faulty-local"
    def normalize_path(self, path): return path
    def get_file_info(self, paths): return self.fs.get_file_info(paths)
    def get_file_info_selector(self, selector): return self.fs.get_file_info(selector)
    def create_dir(self, path, recursive): self.fs.create_dir(path, recursive=recursive)
    def delete_dir(self, path): self.fs.delete_dir(path)
    def delete_dir_contents(self, path, missing_dir_ok=False): self.fs.delete_dir_contents(path, missing_dir_ok)
    def delete_root_dir_contents(self): raise NotImplementedError
    def delete_file(self, path): self.fs.delete_file(path)
    def copy_file(self, src, dest): self.fs.copy_file(src, dest)
    def open_input_stream(self, path): return self.fs.open_input_stream(path)
    def open_input_file(self, path): return self.fs.open_input_file(path)
    def open_append_stream(self, path, metadata): raise NotImplementedError

    def move(self, src, dest):
        if self.move_error is not None:
            raise self.move_error
        self.fs.move(src, dest)

    def open_output_stream(self, path, metadata):
        self.opened.append(path)
        if self.write_error is None:
            return self.fs.open_output_stream(path)
        return pa.PythonFile(_FailingFile(path, self.after, self.write_error), mode="w")


def faulty(loc: storage.Location, handler: FaultyHandler) -> storage.Location:
    return storage.Location(pafs.PyFileSystem(handler), loc.path, loc.uri)


def _table(rows: int = 2000) -> pa.Table:
    return pa.table({"trial": [f"t{i}" for i in range(rows)], "acc": [i / rows for i in range(rows)]})


def _parquet_size(table: pa.Table) -> int:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().size


# (writer, payload, bytes it needs)
WRITES = {
    "write_bytes": (storage.write_bytes, b"new checkpoint " * 2000, len(b"new checkpoint " * 2000)),
    "write_json": (storage.write_json, {"acc": [0.5] * 500},
                   len(json.dumps({"acc": [0.5] * 500}, indent=2, sort_keys=True).encode())),
    "write_parquet": (storage.write_parquet, _table(), _parquet_size(_table())),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_enospc_mid_write_is_storage_full_and_keeps_the_old_file(tmp_path, name):
    writer, payload, needed = WRITES[name]
    loc = storage.resolve(tmp_path / "trial" / "file.bin")
    storage.write_bytes(loc, OLD)
    handler = FaultyHandler(write_error=OSError(errno.ENOSPC, "No space left on device"))

    with pytest.raises(StorageFullError) as error:
        writer(faulty(loc, handler), payload)

    exc = error.value
    message = str(exc)
    assert isinstance(exc, StorageError)
    assert exc.uri == loc.uri and exc.needed == needed
    assert isinstance(exc.free, int) and exc.free > 0
    assert abs(exc.free - shutil.disk_usage(tmp_path).free) < 1 << 30
    assert "\n" not in message
    assert message.startswith(f"no space left on device writing {loc.uri}: ")
    assert f"({needed} bytes) needed" in message or f"{needed} bytes needed" in message
    assert f"({exc.free} bytes) free on /" in message
    assert "--storage" in message and "s3://" in message and "rerun with --resume" in message
    # the partial temporary file really was on disk, in the same folder, and is gone; the old file is intact
    (temp,) = handler.opened
    assert Path(temp).parent == tmp_path / "trial" and ".tmp-" in Path(temp).name
    assert not Path(temp).exists()
    assert leftovers(tmp_path / "trial") == []
    assert (tmp_path / "trial" / "file.bin").read_bytes() == OLD


@pytest.mark.parametrize("name", sorted(WRITES))
def test_writes_are_atomic_and_leave_no_temp_file(tmp_path, name):
    writer, payload, needed = WRITES[name]
    loc = storage.resolve(tmp_path / "a" / "b" / "file")
    handler = FaultyHandler()
    writer(faulty(loc, handler), payload)  # creates the parent folders
    (temp,) = handler.opened
    assert temp != loc.path and ".tmp-" in temp  # not written in place
    assert os.listdir(tmp_path / "a" / "b") == ["file"]
    assert (tmp_path / "a" / "b" / "file").stat().st_size == needed
    if name == "write_parquet":
        assert pq.read_table(loc.path).equals(payload)
    elif name == "write_json":
        assert storage.read_json(loc) == payload


@pytest.mark.parametrize("where", ["write", "move"])
@pytest.mark.parametrize("name", sorted(WRITES))
def test_keyboard_interrupt_leaves_no_temp_file(tmp_path, name, where):
    writer, payload, _ = WRITES[name]
    loc = storage.resolve(tmp_path / "checkpoint.pt")
    storage.write_bytes(loc, OLD)
    handler = (FaultyHandler(write_error=KeyboardInterrupt()) if where == "write"
               else FaultyHandler(move_error=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # not turned into a StorageError: the interrupt goes on
        writer(faulty(loc, handler), payload)
    assert len(handler.opened) == 1 and not Path(handler.opened[0]).exists()
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == OLD


def test_failed_rename_removes_the_temp_file(tmp_path):
    loc = storage.resolve(tmp_path / "summary.json")
    storage.write_json(loc, {"old": True})
    handler = FaultyHandler(move_error=OSError(errno.EIO, "Input/output error"))
    with pytest.raises(StorageError) as error:
        storage.write_json(faulty(loc, handler), {"new": True})
    assert not isinstance(error.value, StorageFullError)
    assert loc.uri in str(error.value)
    assert os.listdir(tmp_path) == ["summary.json"]
    assert storage.read_json(loc) == {"old": True}


@pytest.mark.parametrize("exc", [OSError(errno.EDQUOT, "Disk quota exceeded"),
                                 OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")])
def test_quota_and_errno_less_messages_are_storage_full(tmp_path, exc):
    loc = storage.resolve(tmp_path / "x" / "records.json")  # parent missing: free space of the nearest parent

    def fail():
        raise exc
    with pytest.raises(StorageFullError) as error:
        storage.guarded(loc, fail)
    assert error.value.needed is None and "size needed unknown" in str(error.value)
    assert isinstance(error.value.free, int) and error.value.free > 0
    assert error.value.uri == loc.uri and loc.uri in str(error.value)


def test_free_bytes(tmp_path):
    assert isinstance(storage.free_bytes(storage.resolve(tmp_path / "not" / "yet")), int)
    assert storage.free_bytes(storage.Location(pafs.LocalFileSystem(), "bucket/runs", "s3://bucket/runs")) is None


# --- a real full disk: a 1 MiB tmpfs in a private user+mount namespace -----------------------------------------

def _can_mount_tmpfs(folder: Path) -> str | None:
    """None when ``unshare -rm`` can mount a tmpfs here, else why not."""
    if not shutil.which("unshare"):
        return "no unshare(1) on this machine"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{folder}'"],
                           capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs without privileges: {probe.stderr.strip()}"


FULL_DISK = textwrap.dedent("""
    import json, os, sys
    import pyarrow as pa
    from orchestrator import storage
    from orchestrator.storage import StorageFullError

    root = sys.argv[1]
    out = {}
    old = os.urandom(600_000)
    ckpt = storage.resolve(f"{root}/trial_0/checkpoint.pt")
    storage.write_bytes(ckpt, old)  # fits: 600 kB of 1 MiB
    table = pa.table({"x": [os.urandom(64).hex() for _ in range(10_000)]})  # ~1.3 MB of Parquet
    writes = {
        "write_bytes": lambda: storage.write_bytes(ckpt, os.urandom(700_000)),
        "write_json": lambda: storage.write_json(storage.resolve(f"{root}/trial_0/summary.json"),
                                                 {"blob": os.urandom(350_000).hex()}),
        "write_parquet": lambda: storage.write_parquet(storage.resolve(f"{root}/trial_0/epochs.parquet"), table),
    }
    for name, write in writes.items():
        try:
            write()
            out[name] = {"raised": None}
        except StorageFullError as exc:
            out[name] = {"raised": type(exc).__name__, "message": str(exc), "uri": exc.uri,
                         "needed": exc.needed, "free": exc.free}
    out["files"] = sorted(os.listdir(f"{root}/trial_0"))
    out["intact"] = open(f"{root}/trial_0/checkpoint.pt", "rb").read() == old
    out["free_after"] = storage.free_bytes(storage.resolve(root))
    print(json.dumps(out))
""")


def test_real_full_tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    why = _can_mount_tmpfs(mount)
    if why:
        pytest.skip(why)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(["unshare", "-rm", "sh", "-c",
                           f"mount -t tmpfs -o size=1m tmpfs '{mount}' && exec \"$0\" -c \"$1\" '{mount}'",
                           sys.executable, FULL_DISK], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["files"] == ["checkpoint.pt"]  # no temp files, no half-written records
    assert out["intact"]  # the failed overwrite kept the previous checkpoint
    for name in ("write_bytes", "write_json", "write_parquet"):
        result = out[name]
        assert result["raised"] == "StorageFullError", (name, result)
        assert result["needed"] > result["free"] > 0
        assert result["free"] == out["free_after"]  # measured once the temporary file was removed
        assert result["message"].startswith(f"no space left on device writing {result['uri']}: ")
        assert f"({result['needed']} bytes) needed, " in result["message"]
        assert f"({result['free']} bytes) free on {mount}; " in result["message"]
    assert out["write_bytes"]["needed"] == 700_000
