"""One stage's hold on a cache folder, opened once and passed down: its path, the writer lock, the writer of the
manifest's clips and a reader.

A reader sees the cache as it was when it was opened (the writer's structural changes replace files under it), so a
step that reads what an earlier step wrote asks for ``reopen()``. A worker process gets ``path`` and opens the cache
itself: a path crosses only into another process.
"""

from __future__ import annotations

import os
from pathlib import Path

from mvemo.cache.layout import CLIPS_FILE
from mvemo.cache.lock import CacheLock
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.manifests.schema import Manifest


class CacheHandle:
    """The cache at ``path`` for one stage: ``writer`` (the clip table synced with ``manifest`` once, under ``lock``
    when given, else the writer's own) and ``reader``, each opened on first use. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest, *, lock: CacheLock | None = None) -> None:
        self.path = Path(path).absolute()  # jobs may run on workers started in other folders
        self.manifest, self.lock = manifest, lock
        self._writer: CacheWriter | None = None
        self._reader: Cache | None = None

    @property
    def exists(self) -> bool:
        """Whether the folder holds a cache already (a reader can open it before anything is written)."""
        return (self.path / CLIPS_FILE).is_file()

    @property
    def writer(self) -> CacheWriter:
        """The writer, opened on first use. Asking for it closes the files the reader holds (HDF5 opens a file once
        per process: a set the reader holds could not be written); the reader opens them again as it reads."""
        if self._reader is not None:
            self._reader.close()
        if self._writer is None:
            self._writer = CacheWriter(self.path, self.manifest, lock=self.lock)
        return self._writer

    @property
    def reader(self) -> Cache:
        """The reader, opened on first use: it sees the cache as it was then (see ``reopen``)."""
        if self._reader is None:
            self._reader = Cache(self.path)
        return self._reader

    def reopen(self) -> Cache:
        """A reader that sees everything written so far, and the clip table synced with the manifest (the writer is
        opened first where it was not): the writer's open files are closed (so that worker processes read them
        whole) and the reader is opened again."""
        self.writer.close_sets()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        return self.reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> CacheHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
