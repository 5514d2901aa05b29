"""The HTML pages in a real browser (headless Chromium): a timeline page plays its file beside the chart, seeks on a
click, a drag or the arrow keys, and shows a window's figures on hover; the index lists and sorts the files; the CV
report's tables sort and a model's row leads to its confusion matrix. Each page's screenshot is kept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.fuse.plots import window_edges
from mvemo.fuse.stage import run_cv
from mvemo.pipeline.predict.page import EMBED_LIMIT_BYTES, index_page, media_source
from tests.fuse.helpers import embedding_cache
from tests.pipeline.browser import chromium, console_errors, screenshot, synthetic_timeline, write_video

LENGTH_S, HOP_S = 6.0, 3.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def open_page(browser: Any, path: Path) -> None:
    browser.get(path.as_uri())
    browser.execute_script("return document.readyState")  # get() returns after the load event


def window_at(edges: np.ndarray, t: float) -> int:
    return int(np.clip(np.searchsorted(edges, t + 1e-6, side="right") - 1, 0, len(edges) - 2))


def wait_for(browser: Any, script: str, expected: Any, timeout_s: float = 5.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout_s).until(lambda b: b.execute_script(script) == expected)
    return expected


@pytest.fixture(scope="module")
def timeline_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("page")
    video = write_video(root / "song.mp4", 40, (320, 180), fps=2)
    timeline = synthetic_timeline(video, 40.0, LENGTH_S, HOP_S)
    _, _, page = timeline.write(root / "timelines", "song.mp4")
    return page, timeline


def test_the_page_plays_the_file_and_its_cursor_follows_the_time(browser: Any, timeline_page: tuple[Path, Any]) -> None:
    page, timeline = timeline_page
    open_page(browser, page)
    assert browser.execute_script("return document.getElementById('chart').dataset.ready") == "true"
    assert console_errors(browser) == []
    n = len(timeline.windows)
    assert browser.execute_script("return document.querySelectorAll('#chart .segment').length") == n, "a segment per window"
    wait_for(browser, "return document.getElementById('media').readyState >= 1", True)
    edges = window_edges(np.array([w.start_s for w in timeline.windows]), np.array([w.end_s for w in timeline.windows]))
    for t in (0.0, 4.4, 4.6, 17.0, 31.2, 39.5):
        browser.execute_script(f"document.getElementById('media').currentTime = {t}")
        wait_for(browser, "return document.getElementById('chart').dataset.window", str(window_at(edges, t)))
        cursor = browser.execute_script("return +document.getElementById('cursor').getAttribute('x1')")
        assert cursor == pytest.approx(1000 * (t - edges[0]) / (edges[-1] - edges[0]), abs=0.5)
    now = browser.find_element("id", "now").text
    k = window_at(edges, 39.5)
    assert now.startswith(f"Window {k + 1} of {n}") and timeline.classes[int(np.argmax(timeline.proba[k]))] in now
    screenshot(browser, "timeline")


def test_a_click_or_a_drag_on_the_chart_seeks_and_the_keys_move_one_window(browser: Any, timeline_page: tuple[Path, Any]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page, timeline = timeline_page
    open_page(browser, page)
    wait_for(browser, "return document.getElementById('media').readyState >= 1", True)
    chart = browser.find_element("id", "chart")
    width = chart.rect["width"]
    edges = window_edges(np.array([w.start_s for w in timeline.windows]), np.array([w.end_s for w in timeline.windows]))
    seconds_per_pixel = (edges[-1] - edges[0]) / width
    current_time = "return document.getElementById('media').currentTime"
    for share in (0.25, 0.8):
        ActionChains(browser).move_to_element_with_offset(chart, int(width * (share - 0.5)), 0).click().perform()
        assert browser.execute_script(current_time) == pytest.approx(
            edges[0] + share * (edges[-1] - edges[0]), abs=2 * seconds_per_pixel
        )
    ActionChains(browser).move_to_element_with_offset(chart, int(-0.4 * width), 0).click_and_hold().move_by_offset(
        int(0.3 * width), 0
    ).release().perform()
    assert browser.execute_script(current_time) == pytest.approx(
        edges[0] + 0.4 * (edges[-1] - edges[0]), abs=2 * seconds_per_pixel
    )
    start = int(browser.execute_script("return document.getElementById('chart').dataset.window"))
    chart.send_keys(Keys.ARROW_RIGHT)
    wait_for(browser, "return document.getElementById('chart').dataset.window", str(start + 1))
    assert browser.execute_script(current_time) == pytest.approx(edges[start + 1], abs=1e-3), "to the next window's seconds"
    chart.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    wait_for(browser, "return document.getElementById('chart').dataset.window", str(start - 1))
    chart.send_keys(Keys.END)
    wait_for(browser, "return document.getElementById('chart').dataset.window", str(len(timeline.windows) - 1))
    assert console_errors(browser) == []


def test_hovering_a_window_shows_its_seconds_probabilities_and_top_class(browser: Any, timeline_page: tuple[Path, Any]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page, timeline = timeline_page
    open_page(browser, page)
    chart = browser.find_element("id", "chart")
    ActionChains(browser).move_to_element_with_offset(chart, int(0.1 * chart.rect["width"]), 0).perform()
    tooltip = browser.find_element("id", "tooltip")
    assert tooltip.is_displayed()
    edges = window_edges(np.array([w.start_s for w in timeline.windows]), np.array([w.end_s for w in timeline.windows]))
    k = window_at(edges, edges[0] + 0.6 * (edges[-1] - edges[0]))
    top = timeline.classes[int(np.argmax(timeline.proba[k]))]
    window = timeline.windows[k]
    assert (
        tooltip.text.splitlines()[0]
        == f"{int(window.start_s // 60)}:{window.start_s % 60:04.1f}\u2013{int(window.end_s // 60)}:{window.end_s % 60:04.1f}: {top}"
    )
    shown = {line.rsplit(" ", 2)[0]: float(line.rsplit(" ", 2)[1]) for line in tooltip.text.splitlines()[1:]}
    assert shown == pytest.approx({c: 100 * p for c, p in zip(timeline.classes, timeline.proba[k])}, abs=0.06)
    screenshot(browser, "timeline-hover")


def test_the_index_lists_every_file_and_sorts_by_name_label_and_length(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "timelines"
    results = []
    for name, seconds, seed in (("b.mp4", 30, 1), ("c.mp4", 12, 2), ("a.mp4", 21, 3)):
        timeline = synthetic_timeline(write_video(tmp_path / name, seconds, (64, 36)), seconds, LENGTH_S, HOP_S, seed)
        table, _, page = timeline.write(out, name)
        results.append({"file": timeline.file, "label": timeline.label, "csv": str(table), "html": str(page)})
    results.append({"clip_id": "broken", "error": "its video track cannot be decoded"})
    open_page(browser, index_page(results, timeline.classes, out))
    assert console_errors(browser) == []

    def column(k: int) -> list[str]:
        return [row.find_elements(By.TAG_NAME, "td")[k].text for row in browser.find_elements(By.CSS_SELECTOR, "#files tbody tr")]

    assert column(0) == ["a.mp4", "b.mp4", "c.mp4"], "every file, by name"
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#files tbody a")]
    assert all(Path(link.removeprefix("file://")).is_file() for link in links)
    header = browser.find_elements(By.CSS_SELECTOR, "#files thead th button")
    header[2].click()
    assert column(0) == ["c.mp4", "a.mp4", "b.mp4"], "shortest first"
    header[2].click()
    assert column(0) == ["b.mp4", "a.mp4", "c.mp4"], "longest first"
    header[1].click()
    assert column(1) == sorted(column(1))
    assert "broken: its video track cannot be decoded" in browser.find_element(By.TAG_NAME, "body").text
    screenshot(browser, "index")


def test_the_reports_tables_sort_and_a_models_row_leads_to_its_confusion_matrix(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    cache = embedding_cache(tmp_path / "c", nets={"musicnn": (6, 1.2), "i3d": (6, 0.6)}, n_per_class=12)
    run_cv(cache, tmp_path / "r", models="musicnn,i3d,i3d+musicnn")
    open_page(browser, tmp_path / "r" / "report.html")
    assert console_errors(browser) == []
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(i.get_attribute("src").startswith("data:image/png;base64,") for i in images), "figures inline"
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    summary = browser.find_elements(By.TAG_NAME, "table")[0]

    def accuracies() -> list[float]:
        return [float(row.find_elements(By.TAG_NAME, "td")[1].text) for row in summary.find_elements(By.CSS_SELECTOR, "tbody tr")]

    summary.find_elements(By.CSS_SELECTOR, "thead th button")[1].click()
    assert accuracies() == sorted(accuracies())
    summary.find_elements(By.CSS_SELECTOR, "thead th button")[1].click()
    assert accuracies() == sorted(accuracies(), reverse=True)
    link = summary.find_element(By.LINK_TEXT, "i3d+musicnn")
    target = link.get_attribute("href").split("#", 1)[1]
    figure = browser.find_element(By.ID, target)
    assert figure.tag_name == "img" and "i3d+musicnn" in figure.get_attribute("alt")
    link.click()
    assert browser.execute_script("return location.hash") == f"#{target}"
    screenshot(browser, "report")


def test_a_five_minute_1080p_page_is_small_and_opens_within_a_second(browser: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", 300, (1920, 1080))
    timeline = synthetic_timeline(video, 300.0, 30.0, 1.0)  # a window every second: 271 windows
    _, _, page = timeline.write(tmp_path / "timelines", "long.mp4")
    assert page.stat().st_size < 200_000
    open_page(browser, page)
    timings = browser.execute_script(
        "const nav = performance.getEntriesByType('navigation')[0];"
        "return [nav.loadEventEnd, performance.getEntriesByName('timeline-drawn')[0].startTime,"
        " document.querySelectorAll('#chart .segment').length]"
    )
    assert timings[2] == len(timeline.windows) == 271
    assert max(timings[:2]) < 1000, f"loaded in {timings[0]:.0f} ms, drawn at {timings[1]:.0f} ms"
    assert console_errors(browser) == []
    screenshot(browser, "timeline-5min-1080p")


def test_media_is_referenced_or_inlined_up_to_the_limit(tmp_path: Path) -> None:
    small = write_video(tmp_path / "media" / "a b.mp4", 4, (64, 36)) if (tmp_path / "media").mkdir() is None else None
    assert small is not None
    source, note = media_source(small, tmp_path / "out", embed=False)
    assert source == "../media/a%20b.mp4" and note == ""
    source, note = media_source(small, tmp_path / "out", embed=True)
    assert source.startswith("data:video/mp4;base64,") and note == ""
    large = tmp_path / "media" / "large.mp4"
    large.write_bytes(b"\0" * (EMBED_LIMIT_BYTES + 1))
    source, note = media_source(large, tmp_path / "out", embed=True)
    assert source == "../media/large.mp4" and re.search(r"large\.mp4 is over 20 MB", note)
