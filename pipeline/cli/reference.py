"""The command-line reference: the click tree of ``mvemo`` and ``mvemo-cv`` rendered as Markdown.

``python -m mvemo.pipeline.cli.reference > docs/cli.md`` (``make docs``) writes docs/cli.md, and a
test checks that the file equals what this module renders. Everything comes from the click objects
and the contexts built here, never from a help screen, so no terminal width enters the output.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import click

from mvemo.pipeline.cli.main import cli, cv

HEADER = """\
# Command-line reference

Every `mvemo` and `mvemo-cv` command with its usage, help and options, generated from the click
commands by `make docs`: do not edit by hand. Back to the [README](../README.md).

`mvemo-cv` is `mvemo cv` under a name of its own.

Exit codes: 0 all done; 2 usage, configuration or input error (one line on stderr, no traceback);
3 finished but some clips failed, each listed with its reason. `--json` prints one JSON document
on stdout and nothing else there.
"""

_MARKDOWN_SPECIALS = re.compile(r"([\\*_<>|])")
_CODE_SPAN = re.compile(r"(`[^`]*`)")


def cli_reference() -> str:
    """The Markdown reference of every command of ``mvemo``, then ``mvemo-cv``, in a stable order.

    Returns
    -------
    str
        The text of docs/cli.md: a contents list, then per command its usage line, its help and a
        table of its arguments and options (type or choices, default, help).
    """
    root = click.Context(cli, info_name="mvemo", **cli.context_settings)
    standalone_cv = click.Context(cv, info_name="mvemo-cv", **cv.context_settings)
    contexts = [*_walk(root), standalone_cv]
    seen: dict[str, int] = {}
    anchors = [_anchor(ctx.command_path, seen) for ctx in contexts]
    contents = [
        f"- [{ctx.command_path}](#{anchor}): {_md(_first_paragraph(ctx.command))}"
        for ctx, anchor in zip(contexts, anchors)
    ]
    sections = [_section(ctx) for ctx in contexts]
    return "\n".join([HEADER, "## Commands\n", *contents, "", *sections]).rstrip("\n") + "\n"


def command_paths() -> list[str]:
    """The full name of every command the reference covers, e.g. ``mvemo manifest scan`` and ``mvemo-cv``."""
    root = click.Context(cli, info_name="mvemo", **cli.context_settings)
    return [ctx.command_path for ctx in _walk(root)] + ["mvemo-cv"]


def _walk(ctx: click.Context) -> Iterator[click.Context]:
    """``ctx`` and the context of every visible subcommand below it, depth first in name order."""
    yield ctx
    for name, sub in _subcommands(ctx):
        yield from _walk(click.Context(sub, info_name=name, parent=ctx, **sub.context_settings))


def _subcommands(ctx: click.Context) -> list[tuple[str, click.Command]]:
    """The visible subcommands of a group's context by name, in name order; none for a command."""
    group = ctx.command
    if not isinstance(group, click.Group):
        return []
    found = [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]
    return [(name, sub) for name, sub in found if sub is not None and not sub.hidden]


def _section(ctx: click.Context) -> str:
    command = ctx.command
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"## {ctx.command_path}", "", "```", usage, "```", ""]
    lines += [f"{_md(paragraph)}\n" for paragraph in _paragraphs(command)]
    subcommands = _subcommands(ctx)
    if subcommands:
        lines += ["Commands: " + ", ".join(f"`{ctx.command_path} {name}`" for name, _ in subcommands) + ".", ""]
    rows = [_row(param, ctx) for param in command.get_params(ctx) if not getattr(param, "hidden", False)]
    lines += ["| argument or option | type | default | help |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def _row(param: click.Parameter, ctx: click.Context) -> str:
    info = param.to_info_dict()
    if isinstance(param, click.Argument):
        names = _md(f"`{param.make_metavar(ctx)}`", cell=True)
    else:
        value = f" {param.metavar}" if param.metavar else ""  # the option's own name for its value, e.g. --sha256 HEX
        names = ", ".join(f"`{opt}{value}`" for opt in info["opts"])
        names += "".join(f", `{opt}`" for opt in info["secondary_opts"])
    cells = [names, _type(info), _default(info), _md(info["help"] or "", cell=True)]
    return "| " + " | ".join(cells) + " |"


def _type(info: dict[str, Any]) -> str:
    kind = info["type"]
    if info.get("is_flag"):
        text = "flag"
    elif kind["param_type"] == "Choice":
        text = " or ".join(f"`{choice}`" for choice in kind["choices"])
    elif kind["param_type"] in ("IntRange", "FloatRange"):
        text = " ".join([kind["name"].removesuffix(" range"), *_bounds(kind)])
    else:
        text = kind["name"]
    if info["multiple"]:
        text += ", repeatable"
    if info["nargs"] == -1:
        text += ", any number"
    return text


def _bounds(kind: dict[str, Any]) -> list[str]:
    parts = []
    if kind["min"] is not None:
        parts.append(f"{'>' if kind['min_open'] else '>='} {kind['min']}")
    if kind["max"] is not None:
        parts.append(f"{'<' if kind['max_open'] else '<='} {kind['max']}")
    return [" and ".join(parts)]


def _default(info: dict[str, Any]) -> str:
    if info["required"]:
        return "required"
    value = info["default"]
    if value is None or value is False or value == ():
        return ""
    return _md(f"`{value}`", cell=True)


def _paragraphs(command: click.Command) -> list[str]:
    return [" ".join(p.split()) for p in (command.help or "").split("\n\n") if p.strip()]


def _first_paragraph(command: click.Command) -> str:
    paragraphs = _paragraphs(command)
    return paragraphs[0] if paragraphs else ""


def _md(text: str, *, cell: bool = False) -> str:
    """Help text as inline Markdown: code spans kept, other Markdown specials escaped; a table cell's pipes escaped."""
    parts = []
    for piece in _CODE_SPAN.split(" ".join(text.split())):
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            parts.append(piece.replace("|", "\\|") if cell else piece)
        else:
            parts.append(_MARKDOWN_SPECIALS.sub(r"\\\1", piece))
    return "".join(parts)


def _anchor(title: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -, repeats numbered."""
    slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


if __name__ == "__main__":
    sys.stdout.write(cli_reference())
