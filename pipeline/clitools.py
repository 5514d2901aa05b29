"""What every command shares: exit codes, error handling, JSON output."""

from __future__ import annotations

import json
from typing import Any

import click

from manifests.errors import MvemoError

EXIT_INPUT_ERROR = 2
EXIT_CLIPS_FAILED = 3
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class _MvemoErrorsExit2:
    """Turn an ``MvemoError`` raised by any subcommand into one line on stderr and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except MvemoError as err:
            click.echo(f"{ctx.find_root().info_name}: error: {err}", err=True)
            ctx.exit(EXIT_INPUT_ERROR)


class MvemoGroup(_MvemoErrorsExit2, click.Group):
    pass


class MvemoCommand(_MvemoErrorsExit2, click.Command):
    pass


def print_json(document: Any) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))
