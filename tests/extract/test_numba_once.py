"""The numba warm-up's marker is keyed as numba's cache is: a node of another CPU (a cluster on a shared venv) or a
changed source of mvemo's own cached functions finds no marker, and compiles under the machine's lock."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from mvemo.extract import numba_once


def lock_is_held() -> bool:
    """Whether some open file description holds the warm-up's lock (a new one of ours cannot take it)."""
    with open(numba_once.lock_path(), "a") as other:
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


def test_a_node_of_another_cpu_compiles_again_under_the_lock(warm_up: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
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
