"""Fixtures built once and kept on disk under build/test-fixtures/: a demo run, trained and saved models.

Each is a folder keyed by the code that makes it (mvemo's sources, the test files named, the versions of Python and of
the numerical packages), so a change to any of them builds it again, and a stale folder is never read. A lock makes
the workers of one pytest-xdist run build it once and share it; later runs read it until that code changes. Tests
read these folders and never write into them (they copy what they change into their own ``tmp_path``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILT = Path(os.environ.get("MVEMO_TEST_FIXTURES", REPO / "build" / "test-fixtures"))
SOURCES = ("mvemo", "manifests", "cache", "extract", "fuse", "pipeline")
PACKAGES = ("numpy", "scipy", "scikit-learn", "h5py", "torch", "av", "librosa")
STALE_S = 24 * 3600


@cache
def _package_digest() -> str:
    """sha256 over mvemo's source and package data files, and the versions the fixtures' numbers depend on."""
    digest = hashlib.sha256(f"{platform.python_version()} {platform.machine()}".encode())
    for name in PACKAGES:
        digest.update(f"{name}={metadata.version(name)}".encode())
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix in (".py", ".css", ".js") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fixture_key(code: Iterable[str | os.PathLike[str]]) -> str:
    """The key of a fixture made by mvemo and the test files ``code``."""
    digest = hashlib.sha256(_package_digest().encode())
    for path in sorted(Path(p).resolve() for p in code):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def built_once(name: str, build: Callable[[Path], None], *, code: Iterable[str | os.PathLike[str]]) -> Path:
    """``BUILT/<name>-<key>/``, made by ``build(folder)`` unless a complete one is there already.

    ``code``: the test files whose functions build it (``__file__`` of the module, and of the helpers it calls).
    Folders of the same name with another key, built over a day before, are removed when a new one is built."""
    BUILT.mkdir(parents=True, exist_ok=True)
    folder = BUILT / f"{name}-{fixture_key(code)}"
    complete = folder / ".complete"
    with (BUILT / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while one builds it
        if not complete.exists():
            for old in BUILT.iterdir():  # a day old: a session still reading one (another checkout's code) is done
                stale = time.time() - old.stat().st_mtime > STALE_S
                if stale and re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}", old.name):
                    shutil.rmtree(old)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            complete.touch()
    return folder
