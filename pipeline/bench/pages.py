"""``mvemo bench pages``: how long the timeline page of a five-minute 1080p video takes to open in headless Chromium.

A window every second (271 of 30 s) over a generated 1080p h264 file, for a model of six classes, one of 24 tags and
one of valence and arousal, the scores synthetic (``synthetic_timeline``); each page opened in turn with a blank page,
best of a few: its load event and the moment its script has drawn the chart (``performance.mark('timeline-drawn')``),
beside the blank page's load in the same browser (goal: loaded and drawn within a second). Skipped without selenium or
Debian's chromium and chromium-driver. The page tests draw the same synthetic timelines (``tests/pipeline/browser.py``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.extract.windows.plan import plan_windows
from mvemo.pipeline.predict.timeline import Timeline

GOAL_MS = 1000
SECONDS, LENGTH_S, HOP_S = 300, 30.0, 1.0
WINDOW_SIZE = (1280, 960)
CLASSES = ["Exciting", "Fear", "Neutral", "Relaxation", "Sad", "Tension"]
TAGS = ["happy", "calm", "sad", "angry", "tense", "gentle"]
SCALE = (1.0, 9.0)
# the page's load event, the chart drawn, and how many lanes (a tag model), segments (classes) or curves (values) it
# drew
TIMINGS = (
    "const nav = performance.getEntriesByType('navigation')[0];"
    " const drawn = performance.getEntriesByName('timeline-drawn');"
    " return [nav.loadEventEnd, drawn.length ? drawn[0].startTime : null,"
    " document.querySelectorAll('#chart .lane, #chart .segment, #chart .value').length]"
)


def bench_pages(
    *, repeat: int = 3, seconds: int = SECONDS, size: tuple[int, int] = (1920, 1080), folder: str | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench pages --json``, over a video of ``seconds`` and ``size``; ``{"skipped": why}``
    without a browser to drive."""
    missing = browser_missing()
    if missing:
        return {"skipped": missing}
    with tempfile.TemporaryDirectory(dir=folder) as tmp, headless_chromium() as browser:
        video = write_video(Path(tmp) / "long.mp4", seconds, size)
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!doctype html><title>blank</title>")
        timelines = {
            "classes": synthetic_timeline(video, seconds, LENGTH_S, HOP_S),
            "tags": synthetic_tag_timeline(video, seconds, LENGTH_S, HOP_S, [f"mood {k}" for k in range(24)]),
            "values": synthetic_value_timeline(video, seconds, LENGTH_S, HOP_S),
        }
        pages = {
            kind: write_page(timeline, Path(tmp) / "timelines", f"long-{kind}")[2]
            for kind, timeline in timelines.items()
        }
        # what each page draws: nothing, a segment a window, a lane a tag, a curve each of valence and arousal
        expected = {"blank": 0, "classes": len(timelines["classes"].windows)}
        expected.update({kind: len(timelines[kind].classes) for kind in ("tags", "values")})
        best: dict[str, list[float]] = {}
        for _ in range(repeat):
            for name, page in {"blank": blank, **pages}.items():
                load_ms, drawn_ms, drawn = opened(browser, page)
                if drawn != expected[name]:
                    raise RuntimeError(
                        f"the {name} page drew {drawn} lanes, segments or curves, not {expected[name]}: {page}"
                    )
                times = [load_ms, drawn_ms if drawn_ms is not None else load_ms]
                best[name] = [min(a, b) for a, b in zip(best.get(name, times), times)]
        figures: dict[str, Any] = {
            "video": f"{seconds} s, {'x'.join(map(str, size))} h264",
            "windows": len(timelines["classes"].windows),
            "blank_page_load_ms": round(best["blank"][0], 1),
        }
        for kind, page in pages.items():
            figures[f"{kind}_page_kb"] = round(page.stat().st_size / 1024)
            figures[f"{kind}_load_ms"], figures[f"{kind}_drawn_ms"] = (round(t, 1) for t in best[kind])
            ready_ms = max(figures[f"{kind}_load_ms"], figures[f"{kind}_drawn_ms"])
            figures[f"{kind}_ready_over_blank"] = round(ready_ms / max(figures["blank_page_load_ms"], 0.1), 1)
        figures["goal_ready_ms"] = GOAL_MS
        return figures


def opened(browser: Any, page: Path) -> list[Any]:
    """``TIMINGS`` of ``page`` opened in ``browser``, once its load event has ended: selenium returns at the document's
    readyState "complete", before the load event's handlers have run, when ``loadEventEnd`` still reads 0."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri())
    timings: list[Any] = WebDriverWait(browser, 10, poll_frequency=0.005).until(
        lambda session: (read := session.execute_script(TIMINGS))[0] > 0 and read
    )
    return timings


def browser_missing() -> str | None:
    """Why no headless Chromium can be driven here, or None."""
    try:
        import selenium.webdriver  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "no Chromium: apt-get install chromium chromium-driver (.ci/run installs them)"
    return None


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A headless Chromium session (selenium, Debian's chromium and chromium-driver) that keeps its console's log."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--mute-audio",
        "--window-size={},{}".format(*WINDOW_SIZE),
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(shutil.which("chromedriver"))))
    try:
        yield session
    finally:
        session.quit()


def write_video(path: Path, seconds: int, size: tuple[int, int], fps: int = 1) -> Path:
    """An H.264 video of ``seconds`` at ``size`` (width, height), its frames drawn one at a time (a 1080p file of
    minutes never lies in memory whole)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        for k in range(seconds * fps):
            frame[:] = (40 * k % 256, 90, 160)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_page(timeline: Timeline, out: Path, stem: str) -> tuple[Path, Path, Path]:
    """The timeline's CSV, PNG and page in ``out``, its media referenced."""
    from mvemo.pipeline.predict.page import media_source

    return timeline.write(out, stem, media_source(Path(timeline.file), out, embed=False)[0])


def synthetic_timeline(
    media: Path, duration_s: float, length_s: float, hop_s: float, seed: int = 0, *, is_video: bool = True
) -> Timeline:
    """A timeline over ``media`` whose top class changes every few windows, with a model's provenance."""
    windows = plan_windows(duration_s, length_s, hop_s)
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 0.5, (len(windows), len(CLASSES)))
    logits[np.arange(len(windows)), (np.arange(len(windows)) // 3) % len(CLASSES)] += 2.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    provenance = {
        "model": "late(i3d,musicnn)",
        "saved_with": "0.1.0",
        "sets": {
            "emb/i3d/all": {"extractor": "i3d", "weights_sha256": "3f" * 32},
            "emb/musicnn/all": {"extractor": "musicnn", "weights_sha256": "a1" * 32},
        },
    }
    return Timeline(
        str(media), is_video, "late(i3d,musicnn)", CLASSES, windows, proba, proba.mean(axis=0), provenance, []
    )


def synthetic_tag_timeline(
    media: Path, duration_s: float, length_s: float, hop_s: float, tags: list[str] = TAGS
) -> Timeline:
    """A tag model's timeline: tag k's probability rises and falls in waves of its own period, so each tag is called
    in some windows and the later tags less often; each tag's threshold its own."""
    timeline = synthetic_timeline(media, duration_s, length_s, hop_s)
    n = len(timeline.windows)
    waves = np.arange(n)[:, None] / (3 + np.arange(len(tags)))[None, :]
    proba = (0.5 + 0.45 * np.sin(2 * np.pi * waves)) * np.linspace(1.0, 0.6, len(tags))[None, :]
    thresholds = list(np.linspace(0.4, 0.6, len(tags)))
    return replace_scores(timeline, "tags", tags, proba, thresholds=thresholds)


def synthetic_value_timeline(media: Path, duration_s: float, length_s: float, hop_s: float) -> Timeline:
    """A valence/arousal model's timeline on ``SCALE`` that circles Russell's plane through all four quadrants."""
    timeline = synthetic_timeline(media, duration_s, length_s, hop_s)
    angle = 2 * np.pi * np.arange(len(timeline.windows)) / max(len(timeline.windows), 8)
    middle, radius = sum(SCALE) / 2, 3.0
    values = np.stack([middle + radius * np.cos(angle + 0.3), middle + radius * np.sin(angle + 0.3)], axis=1)
    return replace_scores(timeline, "valence-arousal", ["valence", "arousal"], values, scale=SCALE)


def replace_scores(timeline: Timeline, kind: str, names: list[str], scores: np.ndarray, **fields: Any) -> Timeline:
    """``timeline`` as a model of ``kind`` with these score names and scores per window (their mean the whole's)."""
    return replace(timeline, kind=kind, classes=names, scores=scores, overall=scores.mean(axis=0), **fields)
