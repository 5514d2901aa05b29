"""Headless Chromium for the page tests (Debian's chromium and chromium-driver, driven by selenium), synthetic
timelines to show in it, and the folder of the pages' screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from mvemo.extract.windows.plan import plan_windows
from mvemo.pipeline.predict.page import media_source
from mvemo.pipeline.predict.timeline import Timeline

REPO = Path(__file__).resolve().parents[2]
# Each page's screenshot at a fixed size, kept as a test artefact (CI keeps build/ of its clone)
SCREENSHOTS = Path(os.environ.get("MVEMO_TEST_ARTEFACTS", REPO / "build" / "test-artefacts")) / "pages"
WINDOW_SIZE = (1280, 960)
CHART = "document.getElementById('chart')"
CURRENT_TIME = "return document.getElementById('media').currentTime"
CLASSES = ["Exciting", "Fear", "Neutral", "Relaxation", "Sad", "Tension"]


def chromium() -> Iterator[Any]:
    """A headless Chromium session, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("no Chromium: apt-get install chromium chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--mute-audio",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    try:
        yield session
    finally:
        session.quit()


def open_page(browser: Any, path: Path) -> None:
    """Load ``path`` (selenium returns after its load event) and check that its chart, if any, was drawn."""
    browser.get(path.as_uri())
    if browser.execute_script(f"return {CHART} !== null"):
        assert browser.execute_script(f"return {CHART}.dataset.ready") == "true", "the script drew the chart"


def seek(browser: Any, t: float) -> None:
    """Move the page's media to ``t`` seconds, as a user dragging its slider does."""
    browser.execute_script(f"document.getElementById('media').currentTime = {t}")


def edges_of(timeline: Timeline) -> np.ndarray:
    return np.array(timeline.page_data()["edges"])


def window_at(edges: np.ndarray, t: float) -> int:
    return int(np.clip(np.searchsorted(edges, t + 1e-6, side="right") - 1, 0, len(edges) - 2))


def wait_for(browser: Any, script: str, expected: Any, timeout_s: float = 5.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout_s).until(lambda b: b.execute_script(script) == expected)


def media_ready(browser: Any) -> None:
    """Wait until the page's media knows its length, so that a seek lands."""
    wait_for(browser, "return document.getElementById('media').readyState >= 1", True)


def window_shown(browser: Any) -> int:
    return int(browser.execute_script(f"return {CHART}.dataset.window"))


def console_errors(session: Any) -> list[dict[str, Any]]:
    """The console's errors since the last call."""
    return [entry for entry in session.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(session: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    session.save_screenshot(str(path))
    return path


def write_video(path: Path, seconds: int, size: tuple[int, int], fps: int = 1) -> Path:
    """An H.264 video of ``seconds`` at ``size`` (width, height), its frames drawn one at a time (a 1080p file of
    minutes never lies in memory whole)."""
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
    return Timeline(str(media), is_video, "late(i3d,musicnn)", CLASSES, windows, proba, proba.mean(axis=0), provenance, [])


TAGS = ["happy", "calm", "sad", "angry", "tense", "gentle"]
SCALE = (1.0, 9.0)


def synthetic_tag_timeline(media: Path, duration_s: float, length_s: float, hop_s: float, tags: list[str] = TAGS) -> Timeline:
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
    from dataclasses import replace

    return replace(timeline, kind=kind, classes=names, proba=scores, overall=scores.mean(axis=0), **fields)
