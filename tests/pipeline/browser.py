"""Headless Chromium for the page tests (Debian's chromium and chromium-driver, driven by selenium), synthetic
timelines to show in it, and the folder of the pages' screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.pipeline.bench.pages import (  # noqa: F401 (the page tests' synthetic timelines, which the bench draws too)
    CLASSES,
    SCALE,
    browser_missing,
    headless_chromium,
    synthetic_tag_timeline,
    synthetic_timeline,
    synthetic_value_timeline,
    write_page,
    write_video,
)
from mvemo.pipeline.predict.timeline import Timeline

REPO = Path(__file__).resolve().parents[2]
# Each page's screenshot at a fixed size, kept as a test artefact (CI keeps build/ of its clone)
SCREENSHOTS = Path(os.environ.get("MVEMO_TEST_ARTEFACTS", REPO / "build" / "test-artefacts")) / "pages"
CHART = "document.getElementById('chart')"
CURRENT_TIME = "return document.getElementById('media').currentTime"


def chromium() -> Iterator[Any]:
    """A headless Chromium session, or a skip saying what is missing."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    with headless_chromium() as session:
        yield session


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
