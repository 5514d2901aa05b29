"""The local process pool: a worker that dies loses its own job, and the next stage gets a working pool."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mvemo.manifests.errors import MvemoError
from mvemo.pipeline import executors
from mvemo.pipeline.executors import JOBS_PER_WORKER, ProcessExecutor

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def touch(folder: str, x: int) -> int:
    Path(folder, str(x)).touch()
    return x


def square_or_die(x: int) -> int:
    if x < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_a_dead_worker_breaks_one_stage_and_the_next_gets_a_fresh_pool() -> None:
    with ProcessExecutor(1) as executor:
        broken = list(executor.map(square_or_die, [-1]))
        assert type(broken[0]).__name__ == "BrokenProcessPool"
        assert list(executor.map(square_or_die, [2, 3])) == [4, 9]


@pytest.fixture
def dying_fork_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pools whose fork server dies as it starts (``dying_preload``); a fork server of stage one's again after."""
    executors._stop_fork_server()
    monkeypatch.setattr(executors, "WORKER_PRELOAD", ("tests.pipeline.dying_preload",))
    yield
    executors._stop_fork_server()


def test_a_fork_server_that_died_once_is_started_again(
    dying_fork_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIE_ONCE", str(tmp_path / "died"))
    with ProcessExecutor(1) as executor:
        assert list(executor.map(square_or_die, [2, 3])) == [4, 9]
    assert (tmp_path / "died").exists(), "the first fork server died"


def test_a_fork_server_that_dies_again_stops_the_run_saying_what_to_do(dying_fork_server: None) -> None:
    with ProcessExecutor(1) as executor, pytest.raises(MvemoError, match="fork server died twice") as stopped:
        list(executor.map(square_or_die, [2]))
    assert "--executor serial" in str(stopped.value) and "run the command again" in str(stopped.value)


def test_a_consumer_that_falls_behind_holds_the_workers_back(tmp_path: Path) -> None:
    """Results wait in order for their consumer; the jobs after them wait to be submitted, not in memory."""
    with ProcessExecutor(1) as executor:
        results = executor.map(touch, [str(tmp_path)] * 40, range(40))
        assert next(results) == 0
        time.sleep(1.0)  # the one worker had time for every job, were they all submitted
        assert len(list(tmp_path.iterdir())) <= JOBS_PER_WORKER + 1
        assert list(results) == list(range(1, 40))
