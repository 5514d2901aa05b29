"""Names from a manifest (classes, tags, clip ids) that look like markdown or HTML stay text in every report and page:
no file is pulled into a page, no markup comes alive, and each value keeps its table cell."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import replace
from pathlib import Path

from mvemo.fuse.report.pages import markdown_page, md_table
from mvemo.fuse.stage import run_cv, run_target_cv
from mvemo.manifests import Manifest
from tests.fuse.helpers import embedding_cache

SECRET = "top secret: not for a report"
HOSTILE = ("rock|pop", "![x](SECRET)", "<script>alert(1)</script>")
CLIP = "a`b`\nc](javascript:alert(1))"


def hostile(secret: Path):
    names = tuple(name.replace("SECRET", str(secret)) for name in HOSTILE)

    def rename(manifest: Manifest) -> Manifest:
        clips = [
            replace(
                c,
                label=names[manifest.classes.index(c.label)],
                clip_id=CLIP if i == 0 else c.clip_id,
                tags=(names[i % 3],),
            )
            for i, c in enumerate(manifest.clips)
        ]
        return replace(manifest, classes=names, clips=tuple(clips), tags=names)

    return names, rename


def no_live_markup(page: str, secret: Path) -> None:
    assert SECRET not in page and base64.b64encode(secret.read_bytes()).decode() not in page, "the file stays out"
    assert str(secret) in html.unescape(page), "its name shows as text"
    assert "<script>alert" not in page and 'href="javascript:' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_report_of_hostile_names_shows_them_as_text_in_their_cells(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    names, rename = hostile(secret)
    cache = embedding_cache(tmp_path / "cache", nets={"a": (4, 2.0)}, n_per_class=10, retarget=rename)
    run_cv(cache, tmp_path / "classes", models="a")
    page = (tmp_path / "classes" / "report.html").read_text()
    no_live_markup(page, secret)
    cells = re.findall(r"<tr>\s*<td>(.*?)</td>((?:\s*<td>.*?</td>)*)\s*</tr>", page, re.S)
    widths: dict[str, set[int]] = {}
    for first, rest in cells:
        widths.setdefault(html.unescape(first), set()).add(len(re.findall("<td>", rest)))
    # per class: precision, recall, F1 and clips; in the confusion matrix: a count per class
    assert all(widths[name] == {4, 3} for name in names), widths
    run_target_cv(cache, tmp_path / "tags", "tags", models="a")
    no_live_markup((tmp_path / "tags" / "report.html").read_text(), secret)


def test_a_page_inlines_only_the_figures_the_report_drew(tmp_path: Path) -> None:
    (tmp_path / "drawn.png").write_bytes(b"\x89PNG drawn")
    outside = tmp_path.parent / "outside.png"
    outside.write_bytes(b"\x89PNG outside")
    (tmp_path / "lying.png").write_bytes(b"\x89PNG beside, not drawn")
    text = "\n".join(
        [
            "![a](drawn.png) ![b](../outside.png) ![c](lying.png)",
            f"![d]({outside})",
            "",
            *md_table(["x", "y"], [["p|q", 1]]),
        ]
    )
    page = markdown_page(text, tmp_path, "t", ["drawn.png", "../outside.png", str(outside)])
    assert base64.b64encode(b"\x89PNG drawn").decode() in page
    for other in (b"\x89PNG outside", b"\x89PNG beside, not drawn"):
        assert base64.b64encode(other).decode() not in page
    assert page.count("<img") == 1 and "<td>p|q</td>\n<td>1</td>" in page
