"""The local process pool: a worker that dies loses its own job, and the next stage gets a working pool."""

from __future__ import annotations

import os
import signal

import pytest

from mvemo.pipeline.executors import ProcessExecutor

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def square_or_die(x: int) -> int:
    if x < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_a_dead_worker_breaks_one_stage_and_the_next_gets_a_fresh_pool() -> None:
    with ProcessExecutor(1) as executor:
        broken = list(executor.map(square_or_die, [-1]))
        assert type(broken[0]).__name__ == "BrokenProcessPool"
        assert list(executor.map(square_or_die, [2, 3])) == [4, 9]
