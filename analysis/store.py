"""Small storage helpers on top of :mod:`orchestrator.storage`: list folders, read/write Parquet, bytes, text.

Everything takes a :class:`orchestrator.storage.Location`, so local paths and ``s3://`` URIs behave alike;
I/O failures become ``StorageError`` messages that name the URI (via ``storage.guarded``).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator import storage
from orchestrator.storage import Location, read_bytes, write_bytes  # noqa: F401  (part of this API)


def list_entries(loc: Location) -> list[pafs.FileInfo]:
    """Direct children of the folder at ``loc`` (empty when it does not exist)."""
    if not storage.exists(loc):
        return []
    selector = pafs.FileSelector(loc.path, recursive=False, allow_not_found=True)
    return storage.guarded(loc, lambda: loc.fs.get_file_info(selector))


def list_dirs(loc: Location) -> list[str]:
    """Names of the sub-folders of ``loc``, sorted."""
    return sorted(i.base_name for i in list_entries(loc) if i.type == pafs.FileType.Directory)


def read_parquet(loc: Location) -> pa.Table:
    """The Parquet file at ``loc`` as an Arrow table."""
    return storage.guarded(loc, lambda: pq.read_table(loc.path, filesystem=loc.fs))


def write_text(loc: Location, text: str) -> str:
    """Write UTF-8 text at ``loc``; returns the URI written."""
    return write_bytes(loc, text.encode())


def write_parquet(loc: Location, table: pa.Table) -> str:
    """Write an Arrow table as Parquet at ``loc``; returns the URI written."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return write_bytes(loc, sink.getvalue())
