"""Self-contained HTML pages (``report.html``, the timelines): one file each, its CSS, scripts and figures inline,
that opens from disk with no network. Every table on such a page sorts by a click on its header."""

from __future__ import annotations

import base64
import html
import mimetypes
from importlib import resources
from pathlib import Path

from markdown_it import MarkdownIt


def asset(package: str, name: str) -> str:
    """The text of a page asset that ships in ``package`` (``page.css`` and ``sortable.js`` in mvemo.fuse)."""
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
            f"<style>\n{asset('mvemo.fuse', 'page.css')}{style}</style>",
            "</head>",
            "<body>",
            body,
            f"<script>\n{asset('mvemo.fuse', 'sortable.js')}</script>",
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


def markdown_page(text: str, folder: Path, title: str) -> str:
    """A markdown document of ``folder`` as a page: its tables sortable, each image it shows from ``folder`` inlined
    with an id (``figure_id``), and each link to such an image pointing at it on the page instead."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = renderer.parse(text)
    inline = [child for token in tokens for child in token.children or []]
    shown = {str(c.attrs["src"]) for c in inline if c.type == "image" and (folder / str(c.attrs["src"])).is_file()}
    uris = {name: data_uri(folder / name) for name in shown}
    placed: set[str] = set()
    for child in inline:
        if child.type == "image" and child.attrs["src"] in shown:
            name = str(child.attrs["src"])
            child.attrSet("src", uris[name])
            if name not in placed:
                child.attrSet("id", figure_id(name))
                placed.add(name)
        elif child.type == "link_open" and child.attrs.get("href") in shown:
            child.attrSet("href", "#" + figure_id(str(child.attrs["href"])))
    return page(title, renderer.renderer.render(tokens, renderer.options, {}))
