"""The console scripts, ``mvemo`` and ``mvemo-cv``: the signal handlers go in before the command line is imported,
so that a signal at any moment of a command stops it with one line and exit 128 + its number."""

from __future__ import annotations

import sys

from mvemo.pipeline.cli.interrupt import Interrupted, stop_on_signals, stopping


def main() -> None:
    """Entry point of ``mvemo``."""
    _run("mvemo")


def cv_main() -> None:
    """Entry point of ``mvemo-cv``."""
    _run("mvemo-cv")


def _run(name: str) -> None:
    try:
        stop_on_signals()
        from mvemo.pipeline.cli.cv import cv
        from mvemo.pipeline.cli.main import cli
        from mvemo.pipeline.executors import keep_freed_heap

        keep_freed_heap()
        (cv if name == "mvemo-cv" else cli)(prog_name=name)
    except Interrupted as stopped:  # before or after a command ran (a command says what it was itself)
        _interrupted(name, stopped)
    except Exception:
        signalled = stopping()  # the signal, turned into another error where it landed
        if signalled is None:
            raise
        _interrupted(name, signalled)


def _interrupted(name: str, stopped: Interrupted) -> None:
    print(f"{name}: interrupted by {stopped}", file=sys.stderr)
    sys.exit(128 + stopped.signum)
