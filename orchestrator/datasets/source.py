"""Where a dataset's files are: a local folder or an ``s3://bucket/prefix``, read through orchestrator.storage.

Manifest builders name files by URI strings (an absolute local path, or ``s3://bucket/key``) and read the
metadata CSVs, folder listings and audio headers through :class:`DatasetRoot`; featurizers read the clips
through the same storage layer. A dataset kept in S3 therefore needs no shared mount: every node reads
it with its own AWS credential chain.

I/O problem or content problem -- what fails the run and what becomes a rejected file:

* **I/O** (the run fails with a :class:`StorageError` naming the URI and the fix): a file the metadata
  lists that does not exist, permission denied, an unreachable endpoint, a read that breaks off. These
  say nothing about the data, only about where it is read from; rejecting them would write a version
  with clips silently dropped (and, when a featurizer node lacks the files, a version of nothing) that a
  rerun then reuses.
* **content** (that file is rejected, the run goes on): empty, undecodable, no samples, NaN/inf,
  silent, too long; and paths outside the dataset root, which are never opened.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from orchestrator import storage
from orchestrator.errors import StorageError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".mp3")
MISSING = "missing file"


@dataclass(frozen=True)
class DatasetRoot:
    """A dataset's root: a local folder (symlinks resolved) or an S3 prefix."""

    loc: storage.Location

    @classmethod
    def open(cls, root: "str | Path | DatasetRoot") -> "DatasetRoot":
        """The root at ``root``; an S3 prefix must hold objects (checked now, so a typo fails in seconds)."""
        if isinstance(root, DatasetRoot):
            return root
        found = cls(storage.resolve(root))
        if found.loc.is_s3 and not found.is_dir():
            bucket = found.loc.path.split("/", 1)[0]
            raise StorageError(f"dataset root {found.uri} not found: no object under that prefix (or no bucket "
                               f"{bucket!r}); check the URI with `aws s3 ls {found.uri}/`")
        return found

    @property
    def uri(self) -> str:
        return self.loc.uri

    def __str__(self) -> str:
        return self.uri

    def name(self, *parts: str) -> str:
        """The URI of ``parts`` below the root as the metadata writes it: not normalized, so
        :meth:`contained` sees any ``..`` or absolute name and can refuse it."""
        if self.loc.is_s3:
            return "/".join([self.uri, *parts])
        return str(Path(self.loc.path).joinpath(*parts))

    def file(self, uri: str) -> storage.Location:
        """The storage location of a file named by :meth:`name` (on the root's filesystem: one S3 client)."""
        path = uri[len("s3://"):] if self.loc.is_s3 else uri
        return storage.Location(self.loc.fs, path, uri)

    def contained(self, uri: str) -> tuple[str, bool]:
        """(URI to use, inside?) for a file named by the metadata or a listing; see module docstring.

        Local: resolved (``..`` and symlinks) without opening it; inside the root the resolved path is
        returned, else the path as written (made absolute, not followed). S3 has no symlinks and ``..`` is
        a literal key there, so a key below the root must be plain segments: no ``.``, ``..``, empty segment
        (an absolute name or another bucket's URI joined below the root produces one).
        """
        if self.loc.is_s3:
            below = uri[len(self.uri) + 1:] if uri.startswith(self.uri + "/") else ""
            segments = below.split("/")
            return uri, bool(below) and not any(s in ("", ".", "..") or "\0" in s for s in segments)
        written = Path(os.path.abspath(uri))
        real = written.resolve()
        if real.is_relative_to(Path(self.loc.path)):
            return str(real), True
        return str(written), False

    def is_dir(self, *parts: str) -> bool:
        """Whether ``parts`` below the root is a folder (on S3: a prefix that holds objects)."""
        if not self.loc.is_s3:
            return Path(self.loc.path).joinpath(*parts).is_dir()
        loc = self.file(self.name(*parts))
        return storage.guarded(loc, lambda: loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory)

    def folders(self, *parts: str) -> list[str]:
        """Names of the folders directly inside ``parts`` (hidden ones left out), sorted."""
        return sorted(name for name, is_dir in self._entries(*parts) if is_dir and not name.startswith("."))

    def audio_files(self, *parts: str) -> list[str]:
        """URIs of the audio files directly inside ``parts``, sorted by name."""
        names = sorted(name for name, is_dir in self._entries(*parts)
                       if not is_dir and PurePosixPath(name).suffix.lower() in AUDIO_EXTENSIONS)
        return [self.name(*parts, name) for name in names]

    def _entries(self, *parts: str) -> list[tuple[str, bool]]:
        """(name, is folder) of everything directly inside ``parts``; local symlinks are followed."""
        if not self.loc.is_s3:
            folder = Path(self.loc.path).joinpath(*parts)
            return [(p.name, p.is_dir()) for p in folder.iterdir() if p.is_dir() or p.is_file()]
        loc = self.file(self.name(*parts))
        infos = storage.guarded(loc, lambda: loc.fs.get_file_info(pafs.FileSelector(loc.path)))
        return [(PurePosixPath(i.path).name, i.type == pafs.FileType.Directory) for i in infos]


def probe_audio(loc: storage.Location) -> tuple[float, int, str]:
    """(duration s, sample rate, error) from the header alone, read through the storage layer.

    A content problem comes back as the error (the file is rejected); a missing file as :data:`MISSING`
    (the manifest builder fails the run with all of them); any other I/O failure raises StorageError.
    """
    import soundfile as sf

    try:
        file = storage.guarded(loc, lambda: loc.fs.open_input_file(loc.path))
    except storage.RecordError as exc:
        if exc.kind == "missing":
            return math.nan, 0, MISSING
        raise
    with file:
        if storage.guarded(loc, file.size) == 0:
            return math.nan, 0, "empty file (0 bytes)"
        raw = _RawReader(file)
        try:
            info = sf.info(io.BufferedReader(raw, 1 << 16))  # header reads: one or two ranged GETs on S3
        except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError subclasses
            if raw.error is not None:  # the read failed, not the format: that is I/O, never a rejection
                storage.guarded(loc, lambda: _reraise(raw.error))
            return math.nan, 0, f"unreadable audio: {str(exc).splitlines()[0][:200]}"
    if info.frames == 0:
        return 0.0, int(info.samplerate), "empty audio (0 samples)"
    return info.frames / info.samplerate, int(info.samplerate), ""


class _RawReader(io.RawIOBase):
    """A pyarrow input file as a seekable raw stream for ``io.BufferedReader`` (whole 64 KiB reads).

    It keeps the I/O error of a failed read: soundfile's C callbacks swallow it, and libsndfile would then
    report a truncated or unreadable file -- a content verdict for what was a storage failure.
    """

    def __init__(self, file):
        super().__init__()
        self.file, self.error = file, None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def readinto(self, buffer) -> int:
        try:
            data = self.file.read(len(buffer))
        except OSError as exc:
            self.error = exc
            raise
        buffer[:len(data)] = data
        return len(data)


def _reraise(exc: BaseException):
    raise exc
