"""The numba warm-up's marker is keyed as numba's cache is: a node of another CPU (a cluster on a shared venv) or a
changed source of mvemo's own cached functions finds no marker, and compiles under the lock that lies beside it, which
every machine compiling into that cache takes."""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

import pytest

from mvemo.extract import numba_once


def lock_is_held(path: Path | None = None) -> bool:
    """Whether some open file description holds the lock at ``path`` (the warm-up's where not given): a new one of ours
    cannot take it."""
    with open(path or numba_once.lock_path(), "a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(other, fcntl.LOCK_UN)
        return False


@pytest.fixture
def warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each warm-up's compilation, recorded (with whether it held the lock) instead of run; the marker in a folder of
    its own."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    compiled: list[bool] = []
    monkeypatch.setattr(numba_once, "compute_audio_features", lambda *args: compiled.append(lock_is_held()))
    return compiled


def run_as_a_new_process() -> None:
    numba_once._compiled = False
    numba_once.compile_numba_once()


def test_a_node_of_another_cpu_compiles_again_under_the_lock(
    warm_up: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(numba_once, "cpu_key", lambda: ("x86_64-unknown-linux-gnu", "skylake-avx512", "+avx512f"))
    run_as_a_new_process()
    run_as_a_new_process()
    assert warm_up == [True], "compiled once, under the lock; the second process found the marker"
    monkeypatch.setattr(numba_once, "cpu_key", lambda: ("x86_64-unknown-linux-gnu", "znver4", "+avx512f,+avx512bf16"))
    run_as_a_new_process()
    assert warm_up == [True, True], "numba's cache holds nothing for this CPU: it compiles again, under the lock"
    assert len(list(Path(numba_once.warm_marker().parent).glob("mvemo-compiled-*"))) == 2


def test_a_changed_source_of_mvemos_cached_functions_compiles_again(
    warm_up: list[bool], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_as_a_new_process()
    source = tmp_path / "lpc.py"
    source.write_text("# an upgraded mvemo's numba code\n")
    monkeypatch.setattr(numba_once, "NUMBA_SOURCES", (source,))
    run_as_a_new_process()
    assert warm_up == [True, True]


def test_the_lock_lies_beside_the_marker_in_numbas_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two machines of one CPU on a shared install miss the same marker: they must meet at one lock, in the cache they
    would both compile into, not each in its own /tmp."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    beside = tmp_path / "mvemo-numba.lock"
    assert numba_once.lock_path() == beside and numba_once.warm_marker().parent == tmp_path
    held: list[bool] = []
    monkeypatch.setattr(numba_once, "compute_audio_features", lambda *args: held.append(lock_is_held(beside)))
    run_as_a_new_process()
    assert held == [True], "the warm-up compiled holding the lock in numba's cache"


def test_without_a_marker_folder_the_lock_is_the_machines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "missing"))
    assert numba_once.warm_marker() is None
    assert numba_once.lock_path().parent == Path(tempfile.gettempdir())


def test_a_marker_folder_this_user_cannot_write_leaves_the_lock_the_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system-wide librosa's ``__pycache__``: numba caches in the user's folder instead, and the warm-up still
    compiles under a lock it can take."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_once.os, "access", lambda path, mode: Path(path) != tmp_path)
    assert numba_once.lock_path().parent == Path(tempfile.gettempdir())
