"""One writer at a time: an advisory lock beside the cache file.

The lock is an ``flock`` on ``CACHE.lock`` beside the cache folder, which the kernel releases when
its holder dies however it dies, so a lock left by a killed process is taken
over by the next writer (which says so). The file also holds the holder's pid,
host and start time, so a refused writer can name it. A writer that finishes
removes the file while it still holds the lock; a writer that locked a file
removed meanwhile sees that its path now names another file (or none) and tries
again, so two writers never hold locks on two files of one name. This module
imports the standard library only: ``extract`` takes the lock before any heavy import.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mvemo.manifests.errors import CacheError


def lock_path(cache_path: str | os.PathLike[str]) -> Path:
    """``CACHE.lock`` beside the cache folder, whichever way its path is spelt (``c``, ``c/``, ``./c``)."""
    path = Path(os.path.abspath(cache_path))
    return path.with_name(path.name + ".lock")


class CacheLock:
    """Exclusive writer lock on a cache file; use as a context manager.

    Attributes
    ----------
    previous : dict or None
        The holder record found in the lock file when it was taken over from a
        process that died without releasing it (None for a clean start).
    """

    def __init__(self, cache_path: str | os.PathLike[str]) -> None:
        self.path = lock_path(cache_path)
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None

    def acquire(self) -> CacheLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._lock_current_file()
        self.previous = read_holder(self.path) or None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _lock_current_file(self) -> int:
        """A descriptor holding the flock of the file the lock path names now."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(self.path)
                os.close(fd)
                cache_dir = str(self.path.with_suffix(""))
                raise CacheError(
                    f"cache {cache_dir!r} is being written by another process ({describe_holder(holder)});"
                    " wait for it to finish, or stop it, then run again"
                ) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder before removed the file it released: lock the new one

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> CacheLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def read_holder(path: Path) -> dict[str, Any]:
    """The holder record of a lock file: pid, host and start time ({} when empty or unreadable)."""
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"


def lock_state(cache_path: str | os.PathLike[str]) -> str:
    """'free', or 'held by pid N on host H, started T' when a live writer holds the lock."""
    path = lock_path(cache_path)
    if not path.exists():
        return "free"
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"held by {describe_holder(read_holder(path))}"
    finally:
        os.close(fd)
    return "free"
