"""Executors the command line builds and hands down to the stages (which never import ``pipeline``)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from manifests.errors import ConfigError

EXECUTORS = ("serial", "processes")
PR_SET_PDEATHSIG = 1


def _worker_init() -> None:
    """Each worker dies with its parent (a killed ``extract`` leaves no orphans) and computes on one thread."""
    with contextlib.suppress(OSError):  # not Linux: workers still exit when their pipe to the parent closes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


def build_executor(kind: str = "serial", *, workers: int | None = None) -> Any:
    """An object with ``map`` for the stages: None (serial in this process) or a process pool."""
    if kind == "serial":
        return None
    if kind == "processes":
        n = workers or os.cpu_count() or 1
        if n < 1:
            raise ConfigError(f"--workers {workers}: expected at least 1")
        return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("forkserver"), initializer=_worker_init)
    raise ConfigError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
