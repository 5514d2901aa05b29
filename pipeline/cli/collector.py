"""Python's cyclic garbage collector around a command: paused while the command starts, and kept off the libraries'
objects as the process exits. Standard library only: the console scripts use it before they import anything else.

A command that labels one song spends seconds importing torch, librosa, scipy and numba, which build some 300,000
objects that live as long as the process, and none of them garbage. The collector walks them again and again as they
are built, and once more, all of them, as the interpreter shuts down. On this project's 2-core machine, importing
torch and librosa and running librosa's first STFT took 3.55 s from start to exit as Python does it, 2.87 s with the
objects frozen before the exit and 2.48 s with the collector also paused while they were built (the fastest of four
runs each; ``docs/benchmarks.md``, ``mvemo bench predict``).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


class _OneCommand:
    """Whether this process is a console script's, which runs one command and exits (a fork of ``mvemo serve`` runs one
    too): only there is the process the command's to tune. A test or a notebook that runs a command in its own
    process keeps its collector."""

    process = False


def one_command_process() -> None:
    """Say that this process runs one command and exits (the console scripts, before the command)."""
    _OneCommand.process = True


def in_one_command_process() -> bool:
    """Whether this process runs one command and exits (``one_command_process``)."""
    return _OneCommand.process


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """In a process of one command, pause the collector while the command imports its libraries and loads its
    models, then move every object alive to the permanent generation (``gc.freeze``), which later collections leave
    alone, and resume collecting: what the command allocates from there is collected as always. Elsewhere, nothing."""
    if not in_one_command_process():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def skip_collection_at_exit() -> None:
    """Freeze every object alive as the command of a console script ends, so that the interpreter's shutdown frees
    them without walking them for cycles. Python does not promise to run the finalizers of objects still alive at
    exit, and no output depends on one: every file a command writes is closed before it returns."""
    gc.freeze()
