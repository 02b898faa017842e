"""The one file-system layer of the stages' edges: landing discovery, file facts, exports and reports.

A *location* is a string: a local path, or the URI of a file system pyarrow reaches
(``hdfs://``, ``s3a://`` (read as ``s3``), ``abfss://``, ``gs://``). :func:`location` makes a
relative path or a ``file:`` URI the absolute local path it names, so every way of naming a
local file reaches the same code and is recorded the same way (the ingest log keys landing
files by location). Every other location keeps its URI, which Spark reads as it is
(:func:`spark_uri`), and is opened here through ``pyarrow.fs``: pyarrow is already a pinned
dependency (deltalake reads through it), its file systems are native code that stream a
file's checksum as fast as ``open()``, and each one (HDFS through libhdfs, S3, Azure, GCS)
comes with it, where fsspec would add a package per file system.

A remote file system takes its credentials from the environment it runs in (``AWS_*``,
``AZURE_STORAGE_*``, ``HADOOP_HOME`` and ``CLASSPATH`` for libhdfs), on the driver and on
the executors alike: the executors read the landing files' facts through this module.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.parse
from dataclasses import dataclass

import pyarrow.fs as pafs

BLOCK_BYTES = 1 << 20
# Hadoop's names of a file system that pyarrow knows by another.
PYARROW_SCHEMES = {"s3a": "s3", "s3n": "s3"}
_LOCAL = pafs.LocalFileSystem()


@dataclass(frozen=True)
class FileEntry:
    """One entry of a folder: name, location, folder or file, size in bytes and modification
    time in nanoseconds since the epoch (None where the file system keeps none)."""

    name: str
    location: str
    is_dir: bool
    size: int | None
    modified_ns: int | None


def local_path(location: str) -> str | None:
    """Return the absolute local path of ``location`` (a plain path or a ``file:`` URI), or
    None when it names another file system (``hdfs://``, ``s3a://``)."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return os.path.abspath(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:   # a relative path, or a Windows drive letter
        return os.path.abspath(location)
    return None


def location(value: str) -> str:
    """Return ``value`` as a location: the absolute local path of a plain path or ``file:`` URI,
    any other URI as it is (without a trailing slash)."""
    return local_path(value) or value.rstrip("/")


def join(base: str, *names: str) -> str:
    """Return the location of ``names`` under the location ``base`` (a local path when ``base`` is local)."""
    path = local_path(base)
    if path is not None:
        return os.path.join(path, *names)
    return "/".join([base.rstrip("/"), *names])


def path_part(location: str) -> str:
    """Return the path of ``location`` within its file system (a local path, or a URI's path
    after scheme and authority, as written: not percent-decoded)."""
    if local_path(location) is not None:
        return location
    after_scheme = location.split("://", 1)[1]
    return after_scheme[after_scheme.find("/"):] if "/" in after_scheme else "/"


def spark_uri(location: str) -> str:
    """Return ``location`` as Spark's readers and writers take it: ``file://`` and the local path
    (Hadoop does not percent-decode a path string), or the URI as it is."""
    path = local_path(location)
    return "file://" + path if path is not None else location


@functools.lru_cache(maxsize=None)
def _remote(scheme: str, authority: str) -> tuple[pafs.FileSystem, str]:
    """The file system of ``scheme://authority`` (one per process) and the path prefix of its root."""
    uri = f"{PYARROW_SCHEMES.get(scheme, scheme)}://{authority}/"
    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:   # libhdfs or credentials missing, an unknown scheme: its first line is the reason
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OSError(f"{scheme}://{authority}: cannot open this file system here: {first_line}") from None
    return filesystem, root.rstrip("/")


def _resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """Return the file system holding ``location`` and its path there."""
    path = local_path(location)
    if path is not None:
        return _LOCAL, path
    scheme, rest = location.split("://", 1)
    filesystem, root = _remote(scheme.lower(), rest.split("/", 1)[0])
    return filesystem, root + path_part(location)


def _entry(info: pafs.FileInfo, name: str, at: str) -> FileEntry:
    return FileEntry(name, at, info.type == pafs.FileType.Directory, info.size, info.mtime_ns)


def info(location: str) -> FileEntry | None:
    """Return what is at ``location`` (a symbolic link followed), or None when nothing is."""
    filesystem, path = _resolve(location)
    found = filesystem.get_file_info(path)
    if found.type == pafs.FileType.NotFound:
        return None
    return _entry(found, os.path.basename(path.rstrip("/")), location)


def is_dir(location: str) -> bool:
    """Whether ``location`` is a folder."""
    found = info(location)
    return found is not None and found.is_dir


def list_folder(location: str) -> list[FileEntry]:
    """Return the entries of the folder ``location`` (symbolic links followed), sorted by name.

    Raises FileNotFoundError naming ``location`` when it is no folder.
    """
    filesystem, path = _resolve(location)
    try:
        found = filesystem.get_file_info(pafs.FileSelector(path))
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"{location}: no such folder") from None
    named = sorted((os.path.basename(i.path.rstrip("/")), i) for i in found)
    return [_entry(i, name, join(location, name)) for name, i in named]


def open_input(location: str):
    """Open the file at ``location`` to read its bytes as stored (never decompressed): a
    context manager whose ``read(n)`` returns up to ``n`` bytes, b"" at the end."""
    filesystem, path = _resolve(location)
    return filesystem.open_input_stream(path, compression=None)


def read_text(location: str) -> str:
    """Return the UTF-8 text of the file at ``location``."""
    with open_input(location) as stream:
        return stream.read().decode("utf-8")


def make_folder(location: str) -> None:
    """Create the folder ``location`` and its parents (nothing when it exists)."""
    filesystem, path = _resolve(location)
    filesystem.create_dir(path, recursive=True)


def write_bytes(location: str, data: bytes) -> str:
    """Write ``data`` as the file ``location`` (replacing it; its folder created); return ``location``."""
    filesystem, path = _resolve(location)
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    with filesystem.open_output_stream(path, compression=None) as stream:
        stream.write(data)
    return location


def write_text(location: str, text: str) -> str:
    """Write ``text`` as the UTF-8 file ``location`` (replacing it); return ``location``."""
    return write_bytes(location, text.encode("utf-8"))


def file_sha256(location: str) -> str:
    """Return the hex SHA-256 of the file at ``location``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open_input(location) as stream:
        for block in iter(lambda: stream.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
