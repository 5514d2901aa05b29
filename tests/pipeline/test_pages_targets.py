"""The timeline page of tag and value models in a real browser (headless Chromium): a lane per tag, the most called
first, and valence and arousal beside Russell's plane; each follows playback, seeks on a click, and shows hostile
names as text. Each page's screenshot is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.pipeline.predict.page import _clock, index_page
from mvemo.pipeline.predict.timeline import Timeline
from tests.pipeline.browser import (
    CHART,
    CURRENT_TIME,
    SCALE,
    console_errors,
    edges_of,
    media_ready,
    open_page,
    screenshot,
    seek,
    synthetic_tag_timeline,
    synthetic_value_timeline,
    wait_for,
    window_at,
    write_page,
    write_video,
)

pytestmark = pytest.mark.heavy

LENGTH_S, HOP_S = 6.0, 3.0
PLANE = "document.getElementById('plane')"
PLANE_SIZE, PLANE_MARGIN = 200, 14  # timeline.js's plane: its viewBox and the margin inside it


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("media") / "song.mp4", 40, (320, 180), fps=2)


@pytest.fixture(scope="module")
def tag_page(video: Path) -> tuple[Path, Timeline]:
    timeline = synthetic_tag_timeline(video, 40.0, LENGTH_S, HOP_S)
    return write_page(timeline, video.parent / "tags", "song.mp4")[2], timeline


@pytest.fixture(scope="module")
def value_page(video: Path) -> tuple[Path, Timeline]:
    timeline = synthetic_value_timeline(video, 40.0, LENGTH_S, HOP_S)
    return write_page(timeline, video.parent / "values", "song.mp4")[2], timeline


def called(timeline: Timeline, k: int) -> list[int]:
    """The tags called in window ``k``, in the lanes' order."""
    assert timeline.thresholds is not None
    counts = (timeline.scores >= np.array(timeline.thresholds)).sum(axis=0)
    order = sorted(range(len(timeline.classes)), key=lambda t: (-counts[t], t))
    return [t for t in order if timeline.scores[k, t] >= timeline.thresholds[t]]


def test_a_tag_page_has_a_lane_per_tag_the_most_called_first_and_follows_playback(
    browser: Any, tag_page: tuple[Path, Timeline]
) -> None:
    page, timeline = tag_page
    open_page(browser, page)
    assert console_errors(browser) == []
    assert timeline.thresholds is not None
    counts = (timeline.scores >= np.array(timeline.thresholds)).sum(axis=0)
    names = [e.text for e in browser.find_elements("css selector", "#chart .lane-name")]
    assert names == [timeline.classes[t] for t in sorted(range(len(counts)), key=lambda t: (-counts[t], t))]
    assert len(set(counts)) > 1, "the synthetic tags are called unequally often, so the order is tested"
    media_ready(browser)
    edges = edges_of(timeline)
    for t in (0.0, 7.4, 19.0, 33.1):
        seek(browser, t)
        k = window_at(edges, t)
        wait_for(browser, f"return {CHART}.dataset.window", str(k))
        expected = ", ".join(
            f"{timeline.classes[j]} ({round(100 * timeline.scores[k, j])} %)" for j in called(timeline, k)
        )
        assert browser.find_element("id", "now").text.endswith(f": {expected or 'no tag called'}")
        cursor = float(browser.execute_script(f"return {CHART}.dataset.cursor"))
        assert cursor == pytest.approx(1000 * (t - edges[0]) / (edges[-1] - edges[0]), abs=0.01)
    rows = browser.find_elements("css selector", "#windows tbody tr")
    assert len(rows) == len(timeline.windows), "the windows as a table: the text alternative"
    screenshot(browser, "timeline-tags")


def test_a_click_on_a_lane_seeks_and_hovering_lists_the_tags_called(
    browser: Any, tag_page: tuple[Path, Timeline]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page, timeline = tag_page
    open_page(browser, page)
    media_ready(browser)
    lanes = browser.find_element("css selector", "#chart .lanes svg")
    width = lanes.rect["width"]
    edges = edges_of(timeline)
    span = edges[-1] - edges[0]
    ActionChains(browser).move_to_element_with_offset(lanes, int(width * (0.3 - 0.5)), 0).click().perform()
    assert browser.execute_script(CURRENT_TIME) == pytest.approx(edges[0] + 0.3 * span, abs=2 * span / width)
    ActionChains(browser).move_to_element_with_offset(lanes, int(width * (0.62 - 0.5)), 0).perform()
    k = window_at(edges, edges[0] + 0.62 * span)
    lines = browser.find_element("id", "tooltip").text.splitlines()
    window = timeline.windows[k]
    tags = called(timeline, k)
    assert (
        lines[0]
        == f"{_clock(window.start_s)}\u2013{_clock(window.end_s)}: {len(tags)} of {len(timeline.classes)} tags called"
    )
    assert lines[1:] == [f"{timeline.classes[j]} ({round(100 * timeline.scores[k, j])} %)" for j in tags]
    assert console_errors(browser) == []


def test_past_twelve_tags_the_lanes_scroll_within_a_laptop_screen(browser: Any, video: Path) -> None:
    tags = [f"mood {k}" for k in range(24)]
    page = write_page(synthetic_tag_timeline(video, 40.0, LENGTH_S, HOP_S, tags), video.parent / "many", "song.mp4")[2]
    open_page(browser, page)
    lanes = "document.querySelector('#chart .lanes')"
    shown, whole = browser.execute_script(f"return [{lanes}.clientHeight, {lanes}.scrollHeight]")
    assert shown <= 400 < whole, "24 lanes scroll in a box a laptop screen shows whole"
    assert len(browser.find_elements("css selector", "#chart .lane")) == 24
    screenshot(browser, "timeline-24-tags")


def plane_point(values: np.ndarray) -> tuple[float, float]:
    """Where timeline.js draws a (valence, arousal) row on its plane."""
    low, high = SCALE
    at = [PLANE_MARGIN + (v - low) / (high - low) * (PLANE_SIZE - 2 * PLANE_MARGIN) for v in values]
    return at[0], PLANE_SIZE - at[1]


def test_the_point_on_russells_plane_follows_playback_in_the_quadrant_the_table_names(
    browser: Any, value_page: tuple[Path, Timeline]
) -> None:
    page, timeline = value_page
    open_page(browser, page)
    assert console_errors(browser) == []
    media_ready(browser)
    edges = edges_of(timeline)
    seen = set()
    for t in np.linspace(0.5, 39.5, 9):
        seek(browser, t)
        k = window_at(edges, t)
        wait_for(browser, f"return {PLANE}.dataset.window", str(k))
        cx, cy = (
            float(v)
            for v in browser.execute_script(
                f"const p = {PLANE}.querySelector('.point'); return [p.getAttribute('cx'), p.getAttribute('cy')]"
            )
        )
        assert (cx, cy) == pytest.approx(plane_point(timeline.scores[k]), abs=0.01)
        right, up = cx >= PLANE_SIZE / 2, cy <= PLANE_SIZE / 2
        where = "Q1" if right and up else "Q2" if up else "Q3" if not right else "Q4"
        table = browser.execute_script(
            f"return document.querySelectorAll('#windows tbody tr')[{k}].cells[1].textContent"
        )
        assert (
            where
            == table
            == timeline.top(timeline.scores[k])
            == browser.execute_script(f"return {PLANE}.dataset.quadrant")
        )
        assert browser.find_element("id", "now").text.startswith(f"Window {k + 1} of {len(timeline.windows)}")
        seen.add(where)
    assert seen == {"Q1", "Q2", "Q3", "Q4"}, "the trajectory visits every quadrant"
    screenshot(browser, "timeline-values")


def test_a_click_on_the_plane_seeks_to_the_nearest_window(browser: Any, value_page: tuple[Path, Timeline]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page, timeline = value_page
    open_page(browser, page)
    media_ready(browser)
    plane = browser.find_element("css selector", "#plane svg")
    size = plane.rect["width"]
    edges = edges_of(timeline)
    for k in (2, len(timeline.windows) - 3):
        cx, cy = plane_point(timeline.scores[k])
        offset = (int((cx / PLANE_SIZE - 0.5) * size), int((cy / PLANE_SIZE - 0.5) * size))
        ActionChains(browser).move_to_element_with_offset(plane, *offset).click().perform()
        assert browser.execute_script(CURRENT_TIME) == pytest.approx(edges[k], abs=1e-3)
        wait_for(browser, f"return {CHART}.dataset.window", str(k))
    assert console_errors(browser) == []


def test_hostile_tag_names_show_as_text_in_the_lanes(browser: Any, tmp_path: Path, video: Path) -> None:
    from selenium.webdriver.common.by import By

    from tests.fuse.test_hostile_names import SECRET, hostile

    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    names, _ = hostile(secret)
    page = write_page(synthetic_tag_timeline(video, 40.0, LENGTH_S, HOP_S, names), tmp_path / "t", "song.mp4")[2]
    open_page(browser, page)
    assert console_errors(browser) == []
    assert sorted(
        e.get_attribute("textContent") for e in browser.find_elements(By.CSS_SELECTOR, "#chart .lane-name")
    ) == sorted(names)
    assert SECRET not in browser.find_element(By.TAG_NAME, "body").text
    assert browser.execute_script("return document.querySelectorAll('script:not([type])').length") == 2
    assert browser.find_elements(By.TAG_NAME, "img") == []
    screenshot(browser, "hostile-names-tags")


def test_the_index_lists_tag_and_value_files_with_a_strip_of_their_top_tag_or_quadrant(
    browser: Any, video: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    for make, named in ((synthetic_tag_timeline, "tag"), (synthetic_value_timeline, "quadrant")):
        timeline = make(video, 40.0, LENGTH_S, HOP_S)
        out = tmp_path / named
        table, _, page = write_page(timeline, out, "song.mp4")
        result = {"file": timeline.file, "label": timeline.label, "csv": str(table), "html": str(page)}
        open_page(browser, index_page([result], timeline.categories, out, named=named))
        assert console_errors(browser) == []
        header = browser.find_elements(By.CSS_SELECTOR, "#files thead th")[-1].text
        strip = browser.find_element(By.CSS_SELECTOR, "#files svg.strip").get_attribute("aria-label")
        runs = [
            c
            for k, c in enumerate(timeline.top(r) for r in timeline.scores)
            if k == 0 or timeline.top(timeline.scores[k - 1]) != c
        ]
        assert header == f"top {named} per window" and strip == f"top {named} over time: " + ", then ".join(runs)


def test_a_five_minute_1080p_page_of_24_tags_is_small_and_draws_every_lane(browser: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", 300, (1920, 1080))
    tags = [f"mood {k}" for k in range(24)]
    timeline = synthetic_tag_timeline(video, 300.0, 30.0, 1.0, tags)  # a window every second: 271 windows
    page = write_page(timeline, tmp_path / "timelines", "long.mp4")[2]
    assert page.stat().st_size < 300_000
    open_page(browser, page)
    drawn = browser.execute_script(
        "return [document.querySelectorAll('#chart .lane').length,"
        " document.querySelectorAll('#windows tbody tr').length]"
    )
    assert drawn == [24, len(timeline.windows)] and len(timeline.windows) == 271  # how fast: `mvemo bench pages`
    assert console_errors(browser) == []
    screenshot(browser, "timeline-tags-5min-1080p")


LANE, MARK, PAD = 28, 4, 3  # timeline.js's lanes: height, the called mark's height, the space above a probability of 1


def test_each_lane_marks_the_windows_its_tag_is_called_in_and_draws_its_threshold(
    browser: Any, tag_page: tuple[Path, Timeline]
) -> None:
    page, timeline = tag_page
    open_page(browser, page)
    lanes = browser.execute_script(
        "return [...document.querySelectorAll('#chart .lane')].map((g) => [Number(g.dataset.tag),"
        " g.querySelector('.called').getAttribute('d'), Number(g.querySelector('.threshold').getAttribute('y1'))])"
    )
    assert timeline.thresholds is not None
    for position, (k, marks, threshold_y) in enumerate(lanes):
        windows = [i for i in range(len(timeline.windows)) if timeline.scores[i, k] >= timeline.thresholds[k]]
        assert marks.count("M") == len(windows), timeline.classes[k]
        bottom = (position + 1) * LANE - MARK - 1
        assert threshold_y == pytest.approx(bottom - timeline.thresholds[k] * (LANE - MARK - 1 - PAD), abs=1e-6)


def test_a_tag_called_by_the_unrounded_score_alone_is_called_on_the_page_as_in_the_csv(
    tmp_path: Path, video: Path
) -> None:
    """A probability 0.49996 against a threshold of 0.5 rounds to 0.5 in the page's data: the page still says what
    the CSV says."""
    timeline = synthetic_tag_timeline(video, 40.0, LENGTH_S, HOP_S)
    proba = timeline.scores.copy()
    proba[:, 0] = 0.49996
    from dataclasses import replace

    timeline = replace(timeline, scores=proba, thresholds=[0.5, *(timeline.thresholds or [])[1:]])
    table = write_page(timeline, tmp_path, "song.mp4")[0]
    data = timeline.page_data()
    assert data["scores"][0][0] == 0.5 and data["thresholds"][0] == 0.5, "the rounding this test is about"
    rows = table.read_text().splitlines()[1:]
    csv_called = [row.rsplit(",", 1)[1].split(";") if row.rsplit(",", 1)[1] else [] for row in rows]
    assert [[timeline.classes[k] for k in ks] for ks in data["called"]] == csv_called
    assert all(0 not in ks for ks in data["called"])


def test_the_keys_move_one_window_on_tag_and_value_pages(
    browser: Any, tag_page: tuple[Path, Timeline], value_page: tuple[Path, Timeline]
) -> None:
    from selenium.webdriver.common.keys import Keys

    for page, timeline in (tag_page, value_page):
        open_page(browser, page)
        media_ready(browser)
        chart = browser.find_element("id", "chart")
        edges = edges_of(timeline)
        n = len(timeline.windows)
        chart.send_keys(Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
        wait_for(browser, f"return {CHART}.dataset.window", "2")
        assert browser.execute_script(CURRENT_TIME) == pytest.approx(edges[2], abs=1e-3)
        chart.send_keys(Keys.END)
        wait_for(browser, f"return {CHART}.dataset.window", str(n - 1))
        chart.send_keys(Keys.HOME, Keys.PAGE_DOWN)
        wait_for(browser, f"return {CHART}.dataset.window", str(max(1, round(n / 10))))
        assert browser.find_element("id", "tooltip").is_displayed(), "the keyboard shows the window's figures"
    assert console_errors(browser) == []


def test_the_value_curves_step_through_each_windows_values(browser: Any, value_page: tuple[Path, Timeline]) -> None:
    page, timeline = value_page
    open_page(browser, page)
    paths = browser.execute_script(
        "return [...document.querySelectorAll('#chart .value')].map((p) => p.getAttribute('d'))"
    )
    low, high = SCALE
    assert len(paths) == 2
    for d, path in enumerate(paths):
        ys = [float(point.split(",")[1]) for point in path.replace("M", "L").split("L") if point]
        expected = 160 - (timeline.scores[:, d] - low) / (high - low) * 160  # timeline.js's HEIGHT
        assert ys[::2] == pytest.approx(list(expected), abs=2e-3)  # the page holds 4 decimals
