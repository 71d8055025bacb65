"""One driver per results root: a lease file ``<root>/lease.json`` with its holder and a heartbeat.

A ``sweep``/``run`` driver calls :func:`acquire` on its results root before any trial starts. The file holds
the owner token (a uuid), host, PID, command, start time, last heartbeat (UTC) and ``ttl_s``; a daemon thread
rewrites the heartbeat every ``heartbeat_s``. A second driver on the same root gets :class:`LeaseHeld`, naming
the holder and how to break a stale lease. A lease is stale, and taken over by the next driver, when its
heartbeat is older than its ``ttl_s``, or at once when its PID no longer exists on this same host (same
hostname, boot and PID namespace: a crashed or SIGKILLed driver does not block the rerun).

Every change is a compare-and-swap, so two drivers racing never both win. Local disk: each change holds an
exclusive ``flock`` on ``lease.json.lock`` (the kernel drops it if the process dies) for milliseconds, checks
that the file still holds what was last read, and writes a temporary file renamed into place; a new lease is
hard-linked into place (fails if one exists). S3: ``PutObject`` with ``If-None-Match: *`` to create,
``If-Match: <etag>`` to refresh or take over, ``DeleteObject`` with ``If-Match`` to release.

What it protects: two rethink-audio drivers writing the same results root, on any hosts sharing that storage.
What it does not: other tools (or a person) writing there; a driver paused or cut off from storage for longer
than ``ttl_s`` loses its lease to the next driver and is only warned (:attr:`Lease.lost`, one stderr line);
clocks that differ between hosts by more than ``ttl_s``; a local-disk lease coordinates the processes of one
host, and other hosts only where the shared file system honours ``flock`` across hosts (e.g. NFSv4; not NFS
mounted with ``nolock`` or ``local_lock``, nor many FUSE mounts).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from orchestrator import storage
from orchestrator.errors import RethinkError, StorageError

LEASE_FILE = "lease.json"
_THREADS = threading.Lock()  # local changes, within this process too


class LeaseHeld(RethinkError):
    """Another live driver holds the results root; ``holder`` is its lease dict (empty if unreadable)."""

    def __init__(self, message: str, uri: str, holder: dict):
        super().__init__(message)
        self.uri, self.holder = uri, holder


class _Found(NamedTuple):
    raw: bytes
    tag: object  # the version to compare against: local, the content itself; S3, the ETag
    mtime: float


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _age(stamp, fallback: float) -> float:
    """Seconds since the ISO time ``stamp`` (never negative), or ``fallback`` if it is not a time."""
    try:
        return max(0.0, (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds())
    except (TypeError, ValueError):
        return fallback


def _ago(seconds: float) -> str:
    return (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200
            else f"{seconds / 3600:.1f} h")


def _pid_space() -> str:
    """Boot id and PID namespace: processes with equal values (and hostname) see each other's PIDs."""
    try:
        return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return "?"  # not Linux: the hostname alone decides


def _alive(pid) -> bool:
    """Whether ``pid`` is a live process here; anything unsure counts as alive (never steal a live lease)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: another user's live process
    try:  # a killed process its parent has not reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _parse(raw: bytes) -> dict:
    try:
        info = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8
        return {}
    return info if isinstance(info, dict) else {}


def _encode(info: dict) -> bytes:
    return (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()


def _who(holder: dict) -> str:
    return f"host {holder.get('host', '?')} PID {holder.get('pid', '?')} ('{holder.get('command', '?')}')"


class _Local:
    """Compare-and-swap on a local (or shared) disk. The version is the file's content (it holds a unique owner
    token and heartbeat). Every change runs under an exclusive ``flock`` on ``lease.json.lock`` (released by the
    kernel when a process dies, so it never goes stale) and writes through a temporary file renamed into place,
    so a reader never sees half a file; a new lease is hard-linked into place, which fails if one exists."""

    def __init__(self, loc: storage.Location):
        self.path = loc.path.rstrip("/") + "/" + LEASE_FILE

    def read(self) -> _Found | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
                return _Found(raw, raw, os.fstat(f.fileno()).st_mtime)
        except FileNotFoundError:
            return None

    @contextmanager
    def _locked(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with _THREADS, open(f"{self.path}.lock", "a") as f:  # the lock file stays (deleting it would race)
            deadline = time.monotonic() + 10
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StorageError(f"{f.name} has been locked for over 10 s by a stuck process "
                                           f"('fuser {f.name}' names it); stop that process, then retry") from None
                    time.sleep(0.01)
            yield  # closing the file releases the lock

    def _put(self, raw: bytes, replace: bool) -> bool:
        tmp = f"{self.path}.new-{uuid.uuid4().hex[:12]}"
        try:
            with open(tmp, "xb") as f:
                f.write(raw)
            os.replace(tmp, self.path) if replace else os.link(tmp, self.path)  # link: only if absent
            return True
        except FileExistsError:
            return False
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)

    def _swap(self, expect: bytes, raw: bytes | None):
        """Replace the lease with ``raw`` (delete it for None) if it still holds ``expect``; the new tag or None."""
        with self._locked():
            found = self.read()
            if found is None or found.raw != expect:
                return None
            if raw is None:
                os.unlink(self.path)
                return None
            self._put(raw, replace=True)
            return raw

    def create(self, raw: bytes):
        with self._locked():
            return raw if self._put(raw, replace=False) else None

    def refresh(self, tag, raw: bytes):
        return self._swap(tag, raw)

    def remove(self, tag) -> None:
        self._swap(tag, None)


class _S3:
    """Compare-and-swap on S3 with conditional requests; the ETag is the version."""

    def __init__(self, loc: storage.Location):
        import boto3
        from botocore.config import Config

        self.uri = loc.uri
        self.bucket, _, prefix = loc.path.partition("/")
        self.key = f"{prefix.strip('/')}/{LEASE_FILE}".lstrip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=Config(
            connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}))

    def _call(self, op: str, **kwargs):
        """The response, or None when a condition failed or the key is absent; other errors: StorageError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.get("Code") != "NoSuchBucket" and status in (404, 409, 412):
                return None
            detail = f"{error.get('Code')}: {error.get('Message')}"
        except BotoCoreError as exc:
            detail = str(exc)
        raise StorageError(f"storage error at {self.uri} ({op} of {LEASE_FILE}): {detail[:300]}; check the bucket "
                           "name, AWS credentials (env vars, profile or instance role) and AWS_ENDPOINT_URL")

    def read(self) -> _Found | None:
        got = self._call("get_object")
        return got and _Found(got["Body"].read(), got["ETag"], got["LastModified"].timestamp())

    def create(self, raw: bytes):
        put = self._call("put_object", Body=raw, IfNoneMatch="*", ContentType="application/json")
        return put and put["ETag"]

    def refresh(self, tag, raw: bytes):
        put = self._call("put_object", Body=raw, IfMatch=tag, ContentType="application/json")
        return put and put["ETag"]

    def remove(self, tag) -> None:
        found = self.read()  # checked first too, for S3-compatible stores that ignore If-Match on DELETE
        if found is not None and found.tag == tag:
            self._call("delete_object", IfMatch=tag)


def _store(root: storage.Location):
    return storage.guarded(root, lambda: _S3(root) if root.is_s3 else _Local(root))


class Lease:
    """A held lease: ``root``, ``info`` (the dict in the file), :attr:`lost`; :meth:`release` or ``with``."""

    def __init__(self, root: storage.Location, store, info: dict, tag, heartbeat_s: float):
        self.root, self.info = root, info
        self._store, self._tag, self._lost, self._released = store, tag, False, False
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._run, args=(heartbeat_s,), daemon=True,
                                        name=f"lease-heartbeat {root.uri}")
        self._thread.start()

    @property
    def lost(self) -> bool:
        """True once the heartbeat found the file taken over or deleted (this driver no longer holds it)."""
        return self._lost

    def _run(self, every: float) -> None:
        warned = False
        while not self._stop.wait(every) and not self._lost:
            try:
                self._beat()
                warned = False
            except StorageError as exc:
                if not warned:  # one line per outage; it is retried at the next beat
                    print(f"warning: could not refresh the lease on {self.root.uri}: {exc}", file=sys.stderr)
                warned = True

    def _beat(self) -> None:
        with self._lock:
            if self._released:
                return
            info = dict(self.info, heartbeat=_now())
            tag = storage.guarded(self.root, lambda: self._store.refresh(self._tag, _encode(info)))
            if tag is not None:
                self._tag, self.info = tag, info
                return
            found = storage.guarded(self.root, self._store.read)
            holder = _parse(found.raw) if found else {}
            if holder.get("owner") == self.info["owner"]:  # still ours (e.g. a retried PUT whose first try
                self._tag = found.tag                       # landed, or a conflict): carry on with its version
                return
            self._lost = True
        taker = f"taken over by {_who(holder)}" if found else "deleted"
        print(f"warning: the lease on {self.root.uri} ({LEASE_FILE}) was {taker}; this driver's results may now "
              "be written by two drivers", file=sys.stderr)

    def release(self) -> None:
        """Stop the heartbeat and delete the file if it is still ours. Never raises: a lease that cannot be
        deleted expires after ``ttl_s`` (at once for a rerun on this host, as this process will be gone)."""
        self._stop.set()
        with self._lock:
            if self._released:
                return
            self._released = True
            if not self._lost:
                try:
                    storage.guarded(self.root, lambda: self._store.remove(self._tag))
                except StorageError as exc:
                    print(f"warning: could not release the lease on {self.root.uri}: {exc}", file=sys.stderr)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_lease(root: storage.Location) -> dict | None:
    """The lease dict at ``root``; None if there is none, {} if the file exists but is not valid JSON."""
    found = storage.guarded(root, _store(root).read)
    return None if found is None else _parse(found.raw)


def _judge(uri: str, holder: dict, found: _Found, ttl_s: float) -> tuple[str | None, str]:
    """(why the lease may be taken over, or None while it is live; the LeaseHeld message for a live one)."""
    ttl = float(holder.get("ttl_s") or ttl_s)
    beat = _age(holder.get("heartbeat"), time.time() - found.mtime)
    if (holder.get("host") == socket.gethostname() and holder.get("pid_space") == _pid_space()
            and not _alive(holder.get("pid"))):
        return f"its process {holder.get('pid')} no longer exists on this host", ""
    if beat > ttl:
        return f"its last heartbeat is {_ago(beat)} old (ttl {ttl:g} s)", ""
    who = (f"another driver: {_who(holder)}, started {holder.get('started', '?')}" if holder
           else f"an unreadable {LEASE_FILE}")
    return None, (f"results root {uri} is in use by {who}, last heartbeat {_ago(beat)} ago; wait for it to finish, "
                  f"or rerun with --force-unlock only if you are sure that driver is gone (a lease whose heartbeat "
                  f"is older than {ttl:g} s is taken over automatically, in about {_ago(ttl - beat)})")


def acquire(root: storage.Location, command: str, *, force: bool = False, ttl_s: float = 120.0,
            heartbeat_s: float = 30.0) -> Lease:
    """Take the lease on ``root`` for ``command`` or raise :class:`LeaseHeld`; ``force`` breaks any lease."""
    if not 0 < heartbeat_s < ttl_s:
        raise ValueError(f"heartbeat_s ({heartbeat_s}) must be > 0 and below ttl_s ({ttl_s})")
    store = _store(root)
    info = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "pid_space": _pid_space(),
            "command": command, "started": _now(), "ttl_s": ttl_s}
    for _ in range(50):  # each pass loses only to another driver's successful change
        found = storage.guarded(root, store.read)
        info["heartbeat"] = _now()
        raw = _encode(info)
        if found is None:
            tag = storage.guarded(root, lambda: store.create(raw))
        else:
            holder = _parse(found.raw)
            if holder.get("owner") == info["owner"]:  # our own write landed though its answer was lost
                return Lease(root, store, dict(holder), found.tag, heartbeat_s)
            why, held = ("--force-unlock", "") if force else _judge(root.uri, holder, found, ttl_s)
            if why is None:
                raise LeaseHeld(held, root.uri, holder)
            tag = storage.guarded(root, lambda: store.refresh(found.tag, raw))  # only if still what we judged
            if tag is not None:
                print(f"{'warning' if force else 'note'}: broke the lease on {root.uri} held by "
                      f"{_who(holder) if holder else 'an unreadable file'} ({why})", file=sys.stderr)
        if tag is not None:
            return Lease(root, store, info, tag, heartbeat_s)
    raise StorageError(f"could not take the lease on {root.uri}: {LEASE_FILE} kept changing under us; is a "
                       "driver restarting in a loop there? Check its holder with 'cat', then retry")
