"""Storage URIs (local paths or ``s3://bucket/prefix``) as pyarrow filesystems, plus pre-flight checks.

The only module that reads the environment for storage: S3 credentials come from the standard AWS chain
(env vars, profile, instance role, resolved by the AWS SDK inside pyarrow); the endpoint can be overridden
with ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g. MinIO, or moto on loopback in tests). The node's
data cache (``orchestrator.data_cache``) lives in ``RETHINK_AUDIO_DATA_CACHE`` (default
``~/.cache/rethink-audio/datasets``), capped at ``RETHINK_AUDIO_DATA_CACHE_GB`` when set.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from orchestrator.errors import StorageError

_COMPONENT = re.compile(r"[A-Za-z0-9_@+=][A-Za-z0-9._@+=-]{0,199}")


@dataclass(frozen=True)
class Location:
    """A resolved storage URI: the filesystem, the path inside it, and the URI as the user wrote it."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def join(self, *parts: str) -> "Location":
        """A location below this one: ``..`` and ``.`` segments are refused, so a join never leaves it."""
        segments = [s for p in parts if p for s in str(p).split("/") if s]
        bad = [s for s in segments if s in (".", "..") or "\0" in s]
        if bad:
            raise StorageError(f"path {'/'.join(str(p) for p in parts)!r} would leave {self.uri}: "
                               f"'{bad[0]}' is not allowed in a name; use a plain folder or file name")
        suffix = "/".join(segments)
        return Location(self.fs, f"{self.path.rstrip('/')}/{suffix}", f"{self.uri.rstrip('/')}/{suffix}")


def check_component(name: str, what: str) -> str:
    """``name`` if it is one safe path component (a folder name under a storage root), else StorageError.

    Allowed: letters, digits, ``.``, ``_``, ``-``, ``=``, ``+``, ``@``, 1-200 characters, not starting with
    ``.`` or ``-``; so ``..``, ``a/b``, absolute paths and hidden names are refused before anything is written.
    """
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        raise StorageError(f"{what} {name!r} must be a single folder name (letters, digits, . _ - = + @; not "
                           "starting with . or -; at most 200 characters): it names a folder under the storage "
                           "root and may not contain '/', '..' or an absolute path")
    return name


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 filesystem using the AWS credential chain and the endpoint override from the environment."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    # fail fast instead of retrying for minutes when the endpoint is down
    kwargs["connect_timeout"] = 5
    kwargs["request_timeout"] = 30
    kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=3)
    return pafs.S3FileSystem(**kwargs)


def data_cache_location() -> tuple[Path, float]:
    """(folder, cap in GB or 0.0) of this node's data cache, from ``RETHINK_AUDIO_DATA_CACHE`` and
    ``RETHINK_AUDIO_DATA_CACHE_GB``. The folder must be on a local disk: every trial on the node maps its files."""
    root = Path(os.environ.get("RETHINK_AUDIO_DATA_CACHE") or "~/.cache/rethink-audio/datasets").expanduser()
    text = os.environ.get("RETHINK_AUDIO_DATA_CACHE_GB", "").strip()
    try:
        cap = float(text) if text else 0.0
    except ValueError:
        raise StorageError(f"RETHINK_AUDIO_DATA_CACHE_GB={text!r} is not a number: set it to the cache's size "
                           "cap in GB (e.g. 50), or unset it for half of the cache folder's disk") from None
    if cap < 0:
        raise StorageError(f"RETHINK_AUDIO_DATA_CACHE_GB={text!r} must be >= 0 (0: half of the cache's disk)")
    return root, cap


def resolve(uri: str | Path) -> Location:
    """Resolve a local path or ``s3://`` URI. Other schemes are errors that list the supported ones."""
    text = str(uri)
    if text.startswith("s3://"):
        path = text[len("s3://"):].rstrip("/")
        if not path:
            raise StorageError(f"{text}: an S3 URI needs a bucket, e.g. s3://my-bucket/runs")
        return Location(s3_filesystem(), path, text.rstrip("/"))
    if "://" in text and not text.startswith("file://"):
        raise StorageError(f"unsupported storage URI {text!r}: use a local path or s3://bucket/prefix")
    local = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser().resolve()
    return Location(pafs.LocalFileSystem(), str(local), str(local))


def exists(loc: Location) -> bool:
    """Whether a file or folder exists at ``loc``."""
    return guarded(loc, lambda: loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound)


class RecordError(StorageError):
    """A record file cannot be used; ``kind`` says why: missing, permission denied, not valid JSON, unreadable."""

    def __init__(self, loc: Location, kind: str, detail: str, hint: str):
        super().__init__(f"{loc.uri}: {kind}{f' ({detail})' if detail else ''}; {hint}")
        self.uri, self.kind, self.detail = loc.uri, kind, detail
        self._args = (loc, kind, detail, hint)

    def __reduce__(self):  # Ray copies and pickles a worker's exception: rebuild it from its own arguments
        return type(self), self._args


def read_json(loc: Location) -> Any:
    """Parse the JSON file at ``loc``; a RecordError says whether it is missing, forbidden or not JSON."""
    def read():
        with loc.fs.open_input_stream(loc.path) as stream:
            return stream.read()
    raw = guarded(loc, read)
    try:
        return json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = (f"{exc.msg}: line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError)
                  else "not UTF-8 text")
        raise RecordError(loc, "not valid JSON", detail, "the file is truncated or corrupt: rerun the step that "
                          "wrote it, or remove it") from None


def write_json(loc: Location, payload: Any) -> None:
    """Write ``payload`` as indented JSON at ``loc``, atomically (see ``write_bytes``)."""
    write_bytes(loc, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def write_parquet(loc: Location, table) -> str:
    """Write an Arrow table as one Parquet file at ``loc``, atomically (see ``write_bytes``); returns the URI
    written. The file is built in memory first (record tables are small), so a full disk can say how many
    bytes it needed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return write_bytes(loc, sink.getvalue())


def read_parquet(loc: Location):
    """The Parquet file at ``loc`` as an Arrow table."""
    import pyarrow.parquet as pq

    return guarded(loc, lambda: pq.read_table(loc.path, filesystem=loc.fs))


def write_text(loc: Location, text: str) -> str:
    """Write UTF-8 text at ``loc``, atomically (see ``write_bytes``); returns the URI written."""
    return write_bytes(loc, text.encode())


def list_dirs(loc: Location) -> list[str]:
    """Names of the sub-folders of the folder at ``loc``, sorted (empty when it does not exist)."""
    if not exists(loc):
        return []
    selector = pafs.FileSelector(loc.path, recursive=False, allow_not_found=True)
    infos = guarded(loc, lambda: loc.fs.get_file_info(selector))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def write_bytes(loc: Location, data) -> str:
    """Write ``data`` (bytes or an Arrow buffer) at ``loc`` so a reader never sees half a file and a failed
    write leaves nothing behind; returns the URI written.

    On local disk the data goes to a temporary file in the same folder (``<name>.tmp-<hex>``), renamed over the
    target only once complete: a failed overwrite keeps the previous file intact, and the temporary file is
    removed on any failure, a KeyboardInterrupt included. An S3 PUT is atomic by itself. Parent folders are
    created. A full disk raises ``StorageFullError`` with the bytes needed and free.
    """
    def write():
        loc.fs.create_dir(loc.path.rsplit("/", 1)[0], recursive=True)
        if loc.is_s3:
            with loc.fs.open_output_stream(loc.path) as stream:
                stream.write(data)
            return
        temp = f"{loc.path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with loc.fs.open_output_stream(temp) as stream:
                stream.write(data)
            loc.fs.move(temp, loc.path)
        except BaseException:
            _remove_quietly(loc.fs, temp)
            raise
    guarded(loc, write, needed=len(data))
    return loc.uri


def _remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    """Delete ``path`` if it is there; cleanup after a failure must not hide the failure itself."""
    try:
        fs.delete_file(path)
    except BaseException:  # noqa: BLE001 - already missing, or the disk is gone: the original error matters
        pass


def read_bytes(loc: Location) -> bytes:
    """The whole file at ``loc``."""
    def read():
        with loc.fs.open_input_stream(loc.path) as stream:
            return stream.read()
    return guarded(loc, read)


def download(loc: Location, local_path: str) -> None:
    """Copy the file at ``loc`` to ``local_path`` on this machine, streamed (weight files are hundreds of MB)."""
    guarded(loc, lambda: pafs.copy_files(loc.path, local_path, source_filesystem=loc.fs,
                                         destination_filesystem=pafs.LocalFileSystem()))


def delete_dir(loc: Location) -> None:
    """Remove a folder and everything below it, if it exists."""
    if exists(loc):
        guarded(loc, lambda: loc.fs.delete_dir(loc.path))


def check_writable(loc: Location) -> None:
    """Pre-flight: the bucket/folder exists (or can be created locally) and accepts a write.

    Run this before spending compute, so a typo in a bucket name fails in seconds, not hours later.
    """
    if loc.is_s3:
        bucket = loc.path.split("/", 1)[0]
        info = guarded(loc, lambda: loc.fs.get_file_info(bucket))
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{loc.uri}: bucket {bucket!r} does not exist; create it first "
                               f"(aws s3 mb s3://{bucket}) or fix the URI")
    probe = loc.join(f".write-probe-{uuid.uuid4().hex[:8]}")
    def write_and_delete():
        loc.fs.create_dir(loc.path, recursive=True)
        with loc.fs.open_output_stream(probe.path) as stream:
            stream.write(b"ok")
        loc.fs.delete_file(probe.path)
    guarded(loc, write_and_delete)


def _denied(exc: BaseException) -> bool:
    """Whether an I/O error is an access refusal (local permissions, or S3 AccessDenied)."""
    text = str(exc).lower()
    return (isinstance(exc, PermissionError) or getattr(exc, "errno", None) == 13
            or "permission denied" in text or "access_denied" in text or "accessdenied" in text)


def free_bytes(loc: Location) -> int | None:
    """Bytes free on the local filesystem that holds ``loc`` (measured at its nearest existing parent folder);
    None for S3 or when it cannot be measured."""
    if loc.is_s3:
        return None
    path = Path(loc.path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _mount_point(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (its nearest existing parent, walked up)."""
    here = Path(path)
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return str(here)


def _size(n: int) -> str:
    """``n`` bytes as ``20.0 MB (20000000 bytes)``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


class StorageFullError(StorageError):
    """The disk (or quota) under a storage URI is full. ``uri``, ``needed`` (bytes the write needed, None when
    unknown) and ``free`` (bytes free there after the failed write was cleaned up, None on S3) are attributes."""

    def __init__(self, loc: Location, needed: int | None, free: int | None):
        what = f"{_size(needed)} needed" if needed is not None else "size needed unknown"
        where = (f"{_size(free)} free on {_mount_point(loc.path)}" if free is not None
                 else "free space unknown")
        super().__init__(f"no space left on device writing {loc.uri}: {what}, {where}; free space there or point "
                         "--storage at a larger disk or s3://bucket/prefix; finished trials are kept, rerun with "
                         "--resume")
        self.uri, self.needed, self.free = loc.uri, needed, free
        self._loc = loc

    def __reduce__(self):
        # rebuilt from its own arguments (Ray copies and pickles a worker's exception on the way to the driver)
        return type(self), (self._loc, self.needed, self.free)


def _full(exc: BaseException) -> bool:
    """Whether an I/O error means the disk or the user's quota is full."""
    text = str(exc).lower()
    return (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "no space left on device" in text or "disk quota exceeded" in text)


def guarded(loc: Location, action, needed: int | None = None):
    """Run a filesystem action, turning I/O failures into a StorageError that names the URI and a fix; a full
    disk becomes a StorageFullError saying ``needed`` bytes (when the caller knows them) and the bytes free."""
    try:
        return action()
    except StorageError:
        raise
    except FileNotFoundError:
        raise RecordError(loc, "missing", "no such file or folder", "check the path") from None
    except (OSError, ValueError) as exc:
        if _full(exc):
            raise StorageFullError(loc, needed, free_bytes(loc)) from None
        if _denied(exc):
            raise RecordError(loc, "permission denied", "", "grant read access to this file or its bucket, or "
                              "run as a user who has it") from None
        hint = ("check the bucket name, AWS credentials (env vars, profile or instance role) and "
                "AWS_ENDPOINT_URL" if loc.is_s3 else "check the path and its permissions")
        raise StorageError(f"storage error at {loc.uri}: {str(exc).splitlines()[0][:300]}; {hint}") from None
