"""The timeline's pages: ``<stem>.timeline.html``, where a music video plays beside its emotion over time, and
``index.html``, the files of one run, each with its label, length and a strip of its top class per window.

A page is one file (``fuse.report.pages``): its data, CSS and scripts inline, the media referenced by a relative path
(or inlined). The page's data is ``Timeline.page_data()`` plus the classes' colours, as JSON that
``timeline.js`` draws.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from mvemo.cache.h5file import mvemo_version
from mvemo.fuse.report.pages import asset, data_uri, page
from mvemo.fuse.report.plots import class_colours, window_edges

INDEX_HTML = "index.html"
# --embed-media inlines files up to this size; a larger one is referenced, with a note on its page
EMBED_LIMIT_BYTES = 20 * 2**20
# Characters that would let a name end or comment out the script element that holds the page's data
SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def media_source(media: Path, out: Path, embed: bool) -> tuple[str, str]:
    """How the page at ``out`` reaches ``media``: inlined (``embed``, up to ``EMBED_LIMIT_BYTES``) or by a relative
    path; and a note where a file asked to be inlined was too large."""
    if embed and media.stat().st_size <= EMBED_LIMIT_BYTES:
        return data_uri(media), ""
    relative = Path(os.path.relpath(media.absolute(), out.absolute())).as_posix()
    note = f"--embed-media: {media.name} is over {EMBED_LIMIT_BYTES // 2**20} MiB, the page refers to it" if embed else ""
    return quote(relative), note


def timeline_page(data: dict[str, Any], source: str, is_video: bool, path: Path) -> Path:
    """Write one file's timeline page: ``data`` (``Timeline.page_data()``) drawn by timeline.js under its media."""
    classes = data["classes"]
    colours = class_colours(classes)
    name = html.escape(data["file"])
    tag = "video" if is_video else "audio"
    whole = dict(zip(classes, data["overall"]))
    body = [
        f"<h1>{name}</h1>",
        f"<p>The whole file: <strong>{html.escape(data['label'])}</strong> ({100 * whole[data['label']]:.0f} %),"
        f" model <code>{html.escape(data['model'])}</code>, {len(data['starts'])} windows.</p>",
        f'<{tag} id="media" controls preload="metadata" src="{html.escape(source)}"></{tag}>',
        '<p id="now"></p><p id="announce" class="visually-hidden" aria-live="polite"></p>',
        f'<div id="chart" role="slider" tabindex="0" aria-label="Emotion over time in {name}"'
        ' aria-describedby="chart-help"><div id="tooltip" hidden></div></div>',
        _legend(colours),
        '<p id="chart-help" class="muted">Class probabilities stacked per window, the top class in the band beneath;'
        " each window stands for the seconds nearer its middle than its neighbours'. Click or drag to seek; on the"
        " focused chart the arrow keys move one window, Page Up and Page Down a tenth, Home and End the first and the last.</p>",
        "<details><summary>The windows as a table</summary>",
        '<table id="windows"><thead><tr><th>window</th><th>top class</th>'
        + "".join(f"<th>{html.escape(c)} %</th>" for c in classes)
        + "</tr></thead><tbody></tbody></table></details>",
        "<h2>The whole file</h2>",
        _table(["class", "probability"], [[c, f"{p:.3f}"] for c, p in whole.items()]),
        *(["<h2>Notes</h2>", "<ul>", *(f"<li>{html.escape(n)}</li>" for n in data["notes"]), "</ul>"] if data["notes"] else []),
        _provenance(data["provenance"]),
        '<script type="application/json" id="timeline-data">'
        + json.dumps(data | {"colours": [colours[c] for c in classes]}, allow_nan=False).translate(SCRIPT_SAFE)
        + "</script>",
    ]
    script = asset("mvemo.pipeline.predict", "timeline.js")
    style = asset("mvemo.pipeline.predict", "timeline.css")
    path.write_text(page(f"{data['file']}: emotion timeline", "\n".join(body), style=style, script=script), encoding="utf-8")
    return path


def figure_page(data: dict[str, Any], source: str, is_video: bool, picture: Path, path: Path) -> Path:
    """Write the timeline page of a tag or value model: its media over the timeline's PNG, the windows' scores as a
    table, the scores of the whole, the notes and the provenance."""
    names = data["classes"]
    name = html.escape(data["file"])
    tag = "video" if is_video else "audio"
    rows = [
        [f"{_clock(start)}\u2013{_clock(end)}", *(f"{v:.3f}" for v in scores)]
        for start, end, scores in zip(data["starts"], data["ends"], data["proba"])
    ]
    body = [
        f"<h1>{name}</h1>",
        f"<p>The whole file: <strong>{html.escape(data['label'] or 'no tag')}</strong>, model"
        f" <code>{html.escape(data['model'])}</code>, {len(data['starts'])} windows.</p>",
        f'<{tag} id="media" controls preload="metadata" src="{html.escape(source)}"></{tag}>',
        f'<p><img src="{data_uri(picture)}" alt="{html.escape(", ".join(names))} over time in {name}" style="max-width:100%"></p>',
        "<details><summary>The windows as a table</summary>",
        _table(["window", *names], rows),
        "</details>",
        "<h2>The whole file</h2>",
        _table(["", *names], [["whole", *(f"{v:.3f}" for v in data["overall"])]]),
        *(["<h2>Notes</h2>", "<ul>", *(f"<li>{html.escape(n)}</li>" for n in data["notes"]), "</ul>"] if data["notes"] else []),
        _provenance(data["provenance"]),
    ]
    path.write_text(page(f"{data['file']}: emotion timeline", "\n".join(body)), encoding="utf-8")
    return path


def index_page(results: list[dict[str, Any]], classes: list[str], out: Path) -> Path:
    """Write ``out/index.html``: each file that has a timeline, linked to its page, with its label, length and a strip
    of its top class per window (sortable by each); the files that failed, with why."""
    colours = class_colours(classes)
    rows = []
    for r in sorted((r for r in results if "html" in r), key=lambda r: (Path(r["file"]).name, r["file"])):
        starts, ends, top = _read_windows(Path(r["csv"]))
        link = quote(Path(r["html"]).name)
        rows.append(
            f'<tr><td><a href="{link}">{html.escape(Path(r["file"]).name)}</a></td><td>{html.escape(r["label"])}</td>'
            f'<td data-sort="{ends[-1]:.3f}">{_clock(ends[-1])}</td><td>{len(starts)}</td>'
            f"<td>{_strip(starts, ends, top, colours)}</td></tr>"
        )
    failed = [r for r in results if "error" in r]
    body = [
        "<h1>Emotion timelines</h1>",
        f"<p>{len(rows)} files. Click a column's header to sort by it.</p>",
        '<table id="files"><thead><tr><th aria-sort="ascending">file</th><th>label</th><th>length</th><th>windows</th>'
        "<th data-nosort>top class per window</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        _legend(colours),
        *(["<h2>Failed</h2>", "<ul>"] if failed else []),
        *(f"<li>{html.escape(r['clip_id'])}: {html.escape(r['error'])}</li>" for r in failed),
        *(["</ul>"] if failed else []),
    ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / INDEX_HTML
    path.write_text(page("Emotion timelines", "\n".join(body)), encoding="utf-8")
    return path


def _read_windows(table: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A timeline CSV's window starts, ends and top classes."""
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return (
        np.array([float(r["start_s"]) for r in rows]),
        np.array([float(r["end_s"]) for r in rows]),
        [r["argmax"] for r in rows],
    )


def _strip(starts: np.ndarray, ends: np.ndarray, top: list[str], colours: dict[str, str]) -> str:
    """A small SVG of the top class over time, its text alternative naming the runs of one class."""
    edges = window_edges(starts, ends)
    scale = 100 / ((edges[-1] - edges[0]) or 1)
    rects = "".join(
        f'<rect x="{(left - edges[0]) * scale:.2f}" width="{(right - left) * scale:.2f}" height="1" fill="{colours[c]}"/>'
        for left, right, c in zip(edges[:-1], edges[1:], top)
    )
    runs = [c for k, c in enumerate(top) if k == 0 or top[k - 1] != c]
    label = html.escape("top class over time: " + ", then ".join(runs))
    return (
        f'<svg class="strip" viewBox="0 0 100 1" preserveAspectRatio="none" shape-rendering="crispEdges" role="img"'
        f' aria-label="{label}">{rects}</svg>'
    )


def _legend(colours: dict[str, str]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{html.escape(c)}</li>' for c, colour in colours.items()
    )
    return f'<ul class="legend" aria-label="class colours">{items}</ul>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _provenance(provenance: dict[str, Any]) -> str:
    rows = [[name, s["extractor"], s["weights_sha256"] or "-"] for name, s in provenance["sets"].items()]
    return (
        "<h2>Provenance</h2>"
        f"<p>Model <code>{html.escape(provenance['model'])}</code>, saved by mvemo {html.escape(provenance['saved_with'])};"
        f" this page written by mvemo {html.escape(mvemo_version())}.</p>"
        + _table(["input", "extractor", "weights (sha256)"], rows)
    )


def _clock(seconds: float) -> str:
    """m:ss.s, rounded to tenths first (59.96 s is 1:00.0)."""
    minutes, tenths = divmod(round(seconds * 10), 600)
    return f"{minutes}:{tenths / 10:04.1f}"
