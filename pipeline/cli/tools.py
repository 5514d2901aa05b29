"""What every command shares: exit codes, error handling, JSON output, progress bars."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from mvemo.manifests.errors import ConfigError, MvemoError
from mvemo.pipeline.cli.interrupt import Interrupted, stopping

EXIT_INPUT_ERROR = 2
EXIT_CLIPS_FAILED = 3
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class _MvemoErrorsExit2:
    """Turn an ``MvemoError`` raised by any subcommand into one line on stderr and exit 2, and an interruption into one
    line and exit 128 + the signal's number."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Interrupted as stopped:
            _interrupted(ctx, stopped)
        except Exception as err:
            if (signalled := stopping()) is not None:  # the signal, turned into another error where it landed
                _interrupted(ctx, signalled)
            if not isinstance(err, MvemoError):
                raise
            click.echo(f"{ctx.find_root().info_name}: error: {err}", err=True)
            ctx.exit(EXIT_INPUT_ERROR)


def _interrupted(ctx: click.Context, stopped: Interrupted) -> None:
    click.echo(
        f"{ctx.find_root().info_name}: `{ctx.command_path}` interrupted by {stopped}: its workers are stopped and what"
        " it wrote is kept (a cache's completed rows, a --csv's labelled clips); run it again to finish (extract and"
        " predict --csv resume where they stopped)",
        err=True,
    )
    ctx.exit(128 + stopped.signum)


class MvemoGroup(_MvemoErrorsExit2, click.Group):
    pass


class MvemoCommand(_MvemoErrorsExit2, click.Command):
    pass


def require_writable(path: str, option: str, *, folder: bool = True) -> None:
    """Refuse, before any work, a path the command could not write: a ``folder`` (created where missing) or a file
    (in a folder that exists). A path inside a file, a folder named as a file or an unwritable place fails at once with
    one line and exit 2, instead of a traceback once the work is done."""
    try:
        _require_writable(Path(path).absolute(), path, option, folder=folder)
    except PermissionError:
        raise ConfigError(f"{option} {path}: a folder on the way cannot be read; choose another path") from None


def _require_writable(target: Path, path: str, option: str, *, folder: bool) -> None:
    if folder:
        if target.exists() and not target.is_dir():
            raise ConfigError(f"{option} {path}: is a file; give a folder (it is created where missing)")
        place = target
        while not place.exists():
            place = place.parent
        if not place.is_dir():
            raise ConfigError(
                f"{option} {path}: {place} is a file, so the folder cannot be created; choose another path"
            )
    else:
        if target.is_dir():
            raise ConfigError(f"{option} {path}: is a folder; give a file name")
        place = target.parent
        if place.exists() and not place.is_dir():
            raise ConfigError(f"{option} {path}: {place} is a file, not a folder; choose another path")
        if not place.is_dir():
            raise ConfigError(f"{option} {path}: its folder does not exist; create it or choose another path")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {place} is not writable; choose another path")


def print_json(document: Any) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--executor``, ``--workers`` and ``--scheduler``: where a command's jobs run."""
    options = (
        click.option(
            "--executor",
            default="serial",
            type=click.Choice(["serial", "processes", "dask"]),
            help="Where the jobs run.",
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
    """The progress bar of one phase, with its ETA, on stderr and only on a terminal:
    ``progress_bar(d, u)(items, total)``.

    ``leave=False`` clears it when done (for a phase whose results are printed after it)."""
    from tqdm import tqdm

    return lambda items, total: tqdm(items, total=total, desc=description, unit=unit, disable=None, leave=leave)
