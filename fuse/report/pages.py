"""Self-contained HTML pages (``report.html``, the timelines): one file each, its CSS, scripts and figures inline,
that opens from disk with no network. Every table on such a page sorts by a click on its header."""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token


def asset(package: str, name: str) -> str:
    """The text of a page asset that ships in ``package`` (``page.css`` and ``sortable.js`` in mvemo.fuse.report)."""
    return (resources.files(package) / name).read_text(encoding="utf-8")


def page(title: str, body: str, *, style: str = "", script: str = "") -> str:
    """A whole HTML document: ``body`` (HTML) under the house's CSS and ``style``, with sortable tables and
    ``script`` run last."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{asset('mvemo.fuse.report', 'page.css')}{style}</style>",
            "</head>",
            "<body>",
            body,
            f"<script>\n{asset('mvemo.fuse.report', 'sortable.js')}</script>",
            f"<script>\n{script}</script>" if script else "",
            "</body>",
            "</html>",
            "",
        ]
    )


def data_uri(path: Path) -> str:
    """A file as a ``data:`` URI, its type told by its suffix."""
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def figure_id(file_name: str) -> str:
    """The id an inlined figure gets on its page, so that a link can point at it."""
    return "figure-" + Path(file_name).stem


class Markdown(str):
    """Text that is markdown already (a link or an image the report made): ``md_table`` writes it as it is."""


# What markdown reads as syntax in running text: escaped, it shows as itself.
_SYNTAX = re.compile(r"([\\`*_\[\]<>|#!~&])")


def md_text(value: object) -> str:
    """``value`` as literal text wherever a report puts it (a table cell, a heading, a list item, a link's or an
    image's text): each character markdown reads as syntax escaped and line breaks made spaces, so that a class,
    tag, clip id or model such as ``rock|pop`` or ``![x](/etc/hostname)`` shows as itself and stays in its cell.
    A ``Markdown`` value is returned as it is."""
    if isinstance(value, Markdown):
        return value
    return _SYNTAX.sub(r"\\\1", re.sub(r"[\r\n]+", " ", str(value)))


def md_table(header: list[Any], rows: list[list[Any]]) -> list[str]:
    """A markdown table of ``md_text`` cells, and the blank line after it."""
    return [
        "| " + " | ".join(md_text(h) for h in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(md_text(v) for v in row) + " |" for row in rows),
        "",
    ]


def markdown_page(text: str, folder: Path, title: str, figures: Collection[str]) -> str:
    """A markdown document of ``folder`` as a page: its tables sortable, each of the ``figures`` it shows (file names
    in ``folder`` that the report drew) inlined with an id (``figure_id``), and each link to such a figure pointing at
    it on the page instead. Any other image is dropped for its text: a page carries only what mvemo drew, never a
    file a name in the report points at."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = renderer.parse(text)
    drawn = {name for name in figures if Path(name).name == name and (folder / name).is_file()}
    uris = {name: data_uri(folder / name) for name in drawn}
    placed: set[str] = set()
    for token in tokens:
        children = []
        for child in token.children or []:
            if child.type == "image" and child.attrs["src"] in drawn:
                name = str(child.attrs["src"])
                child.attrSet("src", uris[name])
                if name not in placed:
                    child.attrSet("id", figure_id(name))
                    placed.add(name)
            elif child.type == "image":
                child = Token("text", "", 0, content=child.content)
            elif child.type == "link_open" and child.attrs.get("href") in drawn:
                child.attrSet("href", "#" + figure_id(str(child.attrs["href"])))
            children.append(child)
        token.children = children if token.children is not None else None
    return page(title, renderer.renderer.render(tokens, renderer.options, {}))
