"""The console scripts, ``mvemo`` and ``mvemo-cv``: the signal handlers go in before the command line is imported,
so that a signal at any moment of a command stops it with one line and exit 128 + its number; a command that a
server of this mvemo runs (``mvemo serve``, where ``MVEMO_SERVE=1``) is sent there before anything else is imported."""

from __future__ import annotations

import functools
import sys

from mvemo.pipeline.cli.collector import collector_paused, one_command_process, skip_collection_at_exit
from mvemo.pipeline.cli.interrupt import run_stopping
from mvemo.pipeline.serving.client import forward


def main() -> None:
    """Entry point of ``mvemo``."""
    run_stopping("mvemo", functools.partial(_command, "mvemo", served=True))


def cv_main() -> None:
    """Entry point of ``mvemo-cv``."""
    run_stopping("mvemo-cv", functools.partial(_command, "mvemo-cv"))


def _command(name: str, *, served: bool = False) -> None:
    """Console script ``name`` on the process's arguments; ``served``: in the server of this mvemo where one runs the
    command. It ends by raising ``SystemExit``."""
    if served and (status := forward(sys.argv[1:])) is not None:
        sys.exit(status)
    one_command_process()
    with collector_paused():
        from mvemo.pipeline.cli.cv import cv
        from mvemo.pipeline.cli.main import cli
        from mvemo.pipeline.executors import keep_freed_heap

    keep_freed_heap()
    try:
        (cv if name == "mvemo-cv" else cli)(prog_name=name)
    finally:
        skip_collection_at_exit()
