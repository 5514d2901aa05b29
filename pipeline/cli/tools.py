"""What every command shares: exit codes, error handling, JSON output, progress bars."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterable
from typing import Any

import click

from mvemo.manifests.errors import MvemoError

EXIT_INPUT_ERROR = 2
EXIT_CLIPS_FAILED = 3
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class Interrupted(BaseException):
    """SIGTERM or SIGINT (Ctrl-C) in a command: it unwinds like Ctrl-C, so every executor stops its workers and every
    writer closes on its way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals() -> None:
    """Make SIGTERM (a scheduler's timeout or preemption) and SIGINT end a command by raising ``Interrupted``; a second
    signal while it unwinds ends the process at once."""

    def stop(signum: int, frame: Any) -> None:
        for name in (signal.SIGTERM, signal.SIGINT):
            signal.signal(name, signal.SIG_DFL)
        raise Interrupted(signum)

    for name in (signal.SIGTERM, signal.SIGINT):
        signal.signal(name, stop)


class _MvemoErrorsExit2:
    """Turn an ``MvemoError`` raised by any subcommand into one line on stderr and exit 2, and an interruption into one
    line and exit 128 + the signal's number."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except MvemoError as err:
            click.echo(f"{ctx.find_root().info_name}: error: {err}", err=True)
            ctx.exit(EXIT_INPUT_ERROR)
        except Interrupted as stopped:
            click.echo(
                f"{ctx.find_root().info_name}: `{ctx.command_path}` interrupted by {stopped}: its workers are stopped and"
                " what it wrote is kept (a cache's completed rows included); run it again to finish (extract resumes"
                " where it stopped)",
                err=True,
            )
            ctx.exit(128 + stopped.signum)


class MvemoGroup(_MvemoErrorsExit2, click.Group):
    pass


class MvemoCommand(_MvemoErrorsExit2, click.Command):
    pass


def print_json(document: Any) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--executor``, ``--workers`` and ``--scheduler``: where a command's jobs run."""
    options = (
        click.option(
            "--executor", default="serial", type=click.Choice(["serial", "processes", "dask"]), help="Where the jobs run."
        ),
        click.option(
            "--workers",
            default=None,
            type=click.IntRange(min=1),
            help="Local worker processes (processes, or a local Dask cluster).  [default: 2]",
        ),
        click.option(
            "--scheduler",
            default=None,
            help="Address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --executor dask).",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def progress_bar(description: str, unit: str, *, leave: bool = True) -> Callable[[Iterable[Any], int], Iterable[Any]]:
    """The progress bar of one phase, with its ETA, on stderr and only on a terminal: ``progress_bar(d, u)(items, total)``.

    ``leave=False`` clears it when done (for a phase whose results are printed after it)."""
    from tqdm import tqdm

    return lambda items, total: tqdm(items, total=total, desc=description, unit=unit, disable=None, leave=leave)
