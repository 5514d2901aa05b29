"""The timeline's pages: ``<stem>.timeline.html``, where a music video plays beside its emotion over time, and
``index.html``, the files of one run, each with its label, length and a strip of its top class, tag or quadrant
per window.

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
from mvemo.fuse.report.plots import VALUE_COLOURS, category_colours, class_colours, window_edges
from mvemo.pipeline.predict.predictor import category_noun, windows_text

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
    note = (
        f"--embed-media: {media.name} is over {EMBED_LIMIT_BYTES // 2**20} MiB, the page refers to it" if embed else ""
    )
    return quote(relative), note


def timeline_page(data: dict[str, Any], source: str, is_video: bool, path: Path) -> Path:
    """Write one file's timeline page: ``data`` (``Timeline.page_data()``) drawn by timeline.js under its media: the
    classes' probabilities stacked, a lane per tag, or valence and arousal over time beside Russell's plane."""
    kind = data["kind"]
    colours = _colours(data)
    name = html.escape(data["file"])
    tag = "video" if is_video else "audio"
    media = f'<{tag} id="media" controls preload="metadata" src="{html.escape(source)}"></{tag}>'
    if _has_plane(data):
        media = (
            f'<div class="beside">{media}'
            '<div id="plane" role="img" aria-label="Valence and arousal in Russell\'s plane,'
            " the current window's point among the whole trajectory; click to seek to the nearest window\">"
            "</div></div>"
        )
        if "plane" in data and data["plane"]["source"] == "probabilities":
            media += (
                '<p class="muted" id="plane-note">'
                "The plane's valence and arousal are read from the quadrant probabilities:"
                " each window's point is the quadrants' corners weighed by their probabilities (-1 to 1 on each axis);"
                " the model was trained on quadrants, not on values.</p>"
            )
        elif "plane" in data:
            media += (
                '<p class="muted" id="plane-note">'
                f"The plane's valence and arousal are those of the values model"
                f" <code>{html.escape(data['plane']['source'])}</code> over each window (its 6-s windows inside it,"
                " pooled as it reads a file), on -1 to 1 and clipped there; the quadrants above are this model's.</p>"
            )
    body = [
        f"<h1>{name}</h1>",
        f"<p>The whole file: {_whole(data)}, model <code>{html.escape(data['model'])}</code>,"
        f" {windows_text(len(data['starts']))}.</p>",
        media,
        '<p id="now"></p><p id="announce" class="visually-hidden" aria-live="polite"></p>',
        f'<div id="chart" role="slider" tabindex="0" aria-label="Emotion over time in {name}"'
        ' aria-describedby="chart-help"><div id="tooltip" hidden></div></div>',
        _kind_legend(data, colours),
        f'<p id="chart-help" class="muted">{CHART_HELP[_view(kind)]} Each window stands for the seconds nearer its'
        " middle than its neighbours'. Click or drag to seek; on the focused chart the arrow keys move one window, Page"
        " Up and Page Down a tenth, Home and End the first and the last.</p>",
        "<details><summary>The windows as a table</summary>",
        '<table id="windows"><thead><tr><th>window</th>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in _window_columns(data))
        + "</tr></thead><tbody></tbody></table></details>",
        "<h2>The whole file</h2>",
        _whole_table(data),
        *(
            ["<h2>Notes</h2>", "<ul>", *(f"<li>{html.escape(n)}</li>" for n in data["notes"]), "</ul>"]
            if data["notes"]
            else []
        ),
        _provenance(data["provenance"]),
        '<script type="application/json" id="timeline-data">'
        + json.dumps(data | {"colours": colours}, allow_nan=False).translate(SCRIPT_SAFE)
        + "</script>",
    ]
    script = asset("mvemo.pipeline.predict", "timeline.js")
    style = asset("mvemo.pipeline.predict", "timeline.css")
    path.write_text(
        page(f"{data['file']}: emotion timeline", "\n".join(body), style=style, script=script), encoding="utf-8"
    )
    return path


CHART_HELP = {
    "label": "Class probabilities stacked per window, the top class in the band beneath.",
    "tags": "A lane per tag, the most often called first: the tag's probability per window (filled), its threshold"
    " (dashed) and the windows where it is called (the bar beneath). Past twelve tags the lanes scroll.",
    "values": "Each value per window on its scale (the middle dashed), the quadrant in the band beneath.",
}


def _view(kind: str) -> str:
    return kind if kind in ("label", "tags") else "values"


def _colours(data: dict[str, Any]) -> dict[str, str]:
    """The colour of each class, or of each quadrant and value (tags' lanes take the page's own)."""
    view = _view(data["kind"])
    if view == "label":
        return class_colours(data["classes"])
    if view == "tags":
        return {}
    return category_colours(data["categories"]) | {n: VALUE_COLOURS[n] for n in data["classes"]}


def _has_plane(data: dict[str, Any]) -> bool:
    """Valence and arousal values, or classes that are the plane's quadrants (``Timeline.plane_data``)."""
    return (_view(data["kind"]) == "values" and len(data["classes"]) == 2) or "plane" in data


def _whole(data: dict[str, Any]) -> str:
    """The whole file's label in words: the class and its probability, the tags called, or the quadrant and values."""
    label = html.escape(data["label"])
    view = _view(data["kind"])
    if view == "label" and "plane" in data:
        valence, arousal = data["plane"]["overall"]
        source = data["plane"]["source"]
        read = "the quadrant probabilities" if source == "probabilities" else f"the values model {html.escape(source)}"
        return (
            f"<strong>{label}</strong> ({100 * data['overall'][data['classes'].index(data['label'])]:.0f} %; valence"
            f" {valence:+.2f}, arousal {arousal:+.2f}, read from {read})"
        )
    if view == "label":
        return f"<strong>{label}</strong> ({100 * data['overall'][data['classes'].index(data['label'])]:.0f} %)"
    if view == "tags":
        return f"<strong>{html.escape('; '.join(_called(data)) or 'no tag called')}</strong>"
    low, high = data["scale"]
    values = ", ".join(f"{html.escape(n)} {v:.2f}" for n, v in zip(data["classes"], data["overall"]))
    return f"<strong>{label}</strong> ({values} on {low:g} to {high:g})"


def _window_columns(data: dict[str, Any]) -> list[str]:
    view = _view(data["kind"])
    if view == "label":
        return ["top class", *(f"{c} %" for c in data["classes"])]
    if view == "tags":
        return ["tags called", *(f"{c} %" for c in data["classes"])]
    return [category_noun(data["kind"], data["classes"]), *data["classes"]]


def _whole_table(data: dict[str, Any]) -> str:
    view = _view(data["kind"])
    if view == "label":
        return _table(["class", "probability"], [[c, f"{p:.3f}"] for c, p in zip(data["classes"], data["overall"])])
    if view == "tags":
        called = set(_called(data))
        rows = zip(data["classes"], data["overall"], data["thresholds"])
        return _table(
            ["tag", "probability", "threshold", "called"],
            [[t, f"{p:.3f}", f"{at:.3f}", "yes" if t in called else ""] for t, p, at in rows],
        )
    return _table(["value", "whole file"], [[n, f"{v:.3f}"] for n, v in zip(data["classes"], data["overall"])])


def _called(data: dict[str, Any]) -> list[str]:
    """The tags the whole file is called by: its label's (from the unrounded scores, as the CSV's)."""
    return [t for t in data["label"].split(";") if t]


def _kind_legend(data: dict[str, Any], colours: dict[str, str]) -> str:
    view = _view(data["kind"])
    if view == "label":
        return _legend(colours)
    if view == "values":
        low, high = data["scale"]
        scale = f"Scale: {low:g} at the bottom, {high:g} at the top, {(low + high) / 2:g} dashed."
        return _legend(colours, "quadrant and value colours") + f'<p class="muted">{scale}</p>'
    items = (
        '<li><span class="swatch probability"></span>probability</li>'
        '<li><span class="swatch threshold"></span>threshold</li><li><span class="swatch called"></span>called</li>'
    )
    return f'<ul class="legend" aria-label="what the lanes show">{items}</ul>'


def index_page(results: list[dict[str, Any]], classes: list[str], out: Path, *, named: str = "class") -> Path:
    """Write ``out/index.html``: each file that has a timeline, linked to its page, with its label, length and a strip
    of its top category per window (``classes``: the classes, tags or quadrants; ``named``: what one is called),
    sortable by each; the files that failed, with why."""
    colours = category_colours(classes)
    rows = []
    for r in sorted((r for r in results if "html" in r), key=lambda r: (Path(r["file"]).name, r["file"])):
        starts, ends, top = _read_windows(Path(r["csv"]))
        link = quote(Path(r["html"]).name)
        rows.append(
            f'<tr><td><a href="{link}">{html.escape(Path(r["file"]).name)}</a></td><td>{html.escape(r["label"])}</td>'
            f'<td data-sort="{ends[-1]:.3f}">{_clock(ends[-1])}</td><td>{len(starts)}</td>'
            f"<td>{_strip(starts, ends, top, colours, named)}</td></tr>"
        )
    failed = [r for r in results if "error" in r]
    body = [
        "<h1>Emotion timelines</h1>",
        f"<p>{len(rows)} files. Click a column's header to sort by it.</p>",
        '<table id="files"><thead><tr><th aria-sort="ascending">file</th><th>label</th><th>length</th><th>windows</th>'
        f"<th data-nosort>top {html.escape(named)} per window</th></tr></thead><tbody>",
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


def _strip(starts: np.ndarray, ends: np.ndarray, top: list[str], colours: dict[str, str], named: str) -> str:
    """A small SVG of the top category over time, its text alternative naming the runs of one category."""
    edges = window_edges(starts, ends)
    scale = 100 / ((edges[-1] - edges[0]) or 1)
    rects = "".join(
        f'<rect x="{(left - edges[0]) * scale:.2f}" width="{(right - left) * scale:.2f}"'
        f' height="1" fill="{colours[c]}"/>'
        for left, right, c in zip(edges[:-1], edges[1:], top)
    )
    runs = [c for k, c in enumerate(top) if k == 0 or top[k - 1] != c]
    label = html.escape(f"top {named} over time: " + ", then ".join(runs))
    return (
        f'<svg class="strip" viewBox="0 0 100 1" preserveAspectRatio="none" shape-rendering="crispEdges" role="img"'
        f' aria-label="{label}">{rects}</svg>'
    )


def _legend(colours: dict[str, str], label: str = "class colours") -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{html.escape(c)}</li>'
        for c, colour in colours.items()
    )
    return f'<ul class="legend" aria-label="{label}">{items}</ul>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _provenance(provenance: dict[str, Any]) -> str:
    rows = [[name, s["extractor"], s["weights_sha256"] or "-"] for name, s in provenance["sets"].items()]
    return (
        "<h2>Provenance</h2>"
        f"<p>Model <code>{html.escape(provenance['model'])}</code>,"
        f" saved by mvemo {html.escape(provenance['saved_with'])};"
        f" this page written by mvemo {html.escape(mvemo_version())}.</p>"
        + _table(["input", "extractor", "weights (sha256)"], rows)
    )


def _clock(seconds: float) -> str:
    """m:ss.s, rounded to tenths first (59.96 s is 1:00.0)."""
    minutes, tenths = divmod(round(seconds * 10), 600)
    return f"{minutes}:{tenths / 10:04.1f}"
