"""The HTML pages in a real browser (headless Chromium): a timeline page plays its file beside the chart, seeks on a
click, a drag or the keys, and shows a window's figures on hover; any file name leaves it whole; the index lists
and sorts the files; the CV report's tables sort and a model's row leads to its confusion matrix. Each page's
screenshot is kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.fuse.stage import run_cv
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.predict.page import EMBED_LIMIT_BYTES, _clock, index_page, media_source
from mvemo.pipeline.predict.timeline import Timeline
from tests.fuse.helpers import embedding_cache
from tests.pipeline.browser import (
    CHART,
    CLASSES,
    CURRENT_TIME,
    console_errors,
    edges_of,
    media_ready,
    open_page,
    screenshot,
    seek,
    synthetic_timeline,
    wait_for,
    window_at,
    window_shown,
    write_page,
    write_video,
)

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

LENGTH_S, HOP_S = 6.0, 3.0


@pytest.fixture(scope="module")
def timeline_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Timeline]:
    root = tmp_path_factory.mktemp("page")
    timeline = synthetic_timeline(write_video(root / "song.mp4", 40, (320, 180), fps=2), 40.0, LENGTH_S, HOP_S)
    return write_page(timeline, root / "timelines", "song.mp4")[2], timeline


def test_the_page_plays_the_file_and_its_cursor_follows_the_time(
    browser: Any, timeline_page: tuple[Path, Timeline]
) -> None:
    page, timeline = timeline_page
    open_page(browser, page)
    assert console_errors(browser) == []
    n = len(timeline.windows)
    assert browser.execute_script("return document.querySelectorAll('#chart .segment').length") == n, (
        "a segment per window"
    )
    media_ready(browser)
    edges = edges_of(timeline)
    for t in (0.0, 4.4, 4.6, 17.0, 31.2, 39.5):
        seek(browser, t)
        wait_for(browser, f"return {CHART}.dataset.window", str(window_at(edges, t)))
        cursor = float(browser.execute_script(f"return {CHART}.dataset.cursor"))
        assert cursor == pytest.approx(1000 * (t - edges[0]) / (edges[-1] - edges[0]), abs=0.01)
    now = browser.find_element("id", "now").text
    k = window_at(edges, 39.5)
    assert now.startswith(f"Window {k + 1} of {n}") and timeline.classes[int(np.argmax(timeline.scores[k]))] in now
    assert browser.find_elements("css selector", "#windows tbody tr") != [], "the windows as a table"
    screenshot(browser, "timeline")


def test_a_click_or_a_drag_on_the_chart_seeks_and_the_keys_move_one_window(
    browser: Any, timeline_page: tuple[Path, Timeline]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page, timeline = timeline_page
    open_page(browser, page)
    media_ready(browser)
    chart = browser.find_element("id", "chart")
    width = chart.rect["width"]
    edges = edges_of(timeline)
    span = edges[-1] - edges[0]
    for share in (0.25, 0.8):
        ActionChains(browser).move_to_element_with_offset(chart, int(width * (share - 0.5)), 0).click().perform()
        assert browser.execute_script(CURRENT_TIME) == pytest.approx(edges[0] + share * span, abs=2 * span / width)
    drag = ActionChains(browser).move_to_element_with_offset(chart, int(-0.4 * width), 0).click_and_hold()
    drag.move_by_offset(int(0.3 * width), 0).release().perform()
    assert browser.execute_script(CURRENT_TIME) == pytest.approx(edges[0] + 0.4 * span, abs=2 * span / width)
    start = window_shown(browser)
    chart.send_keys(Keys.ARROW_RIGHT)
    wait_for(browser, f"return {CHART}.dataset.window", str(start + 1))
    assert browser.execute_script(CURRENT_TIME) == pytest.approx(edges[start + 1], abs=1e-3), (
        "to the next window's seconds"
    )
    assert browser.find_element("id", "tooltip").is_displayed(), "the keyboard shows the window's figures too"
    chart.send_keys(Keys.ARROW_LEFT, Keys.ARROW_DOWN)
    wait_for(browser, f"return {CHART}.dataset.window", str(start - 1))
    assert browser.find_element("id", "announce").text.startswith(f"Window {start}"), "a seek is announced"
    chart.send_keys(Keys.END)
    wait_for(browser, f"return {CHART}.dataset.window", str(len(timeline.windows) - 1))
    chart.send_keys(Keys.HOME, Keys.PAGE_DOWN)
    wait_for(browser, f"return {CHART}.dataset.window", str(max(1, round(len(timeline.windows) / 10))))
    assert console_errors(browser) == []


def test_hovering_a_window_shows_its_seconds_probabilities_and_top_class(
    browser: Any, timeline_page: tuple[Path, Timeline]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page, timeline = timeline_page
    open_page(browser, page)
    chart = browser.find_element("id", "chart")
    ActionChains(browser).move_to_element_with_offset(chart, int(0.1 * chart.rect["width"]), 0).perform()
    tooltip = browser.find_element("id", "tooltip")
    assert tooltip.is_displayed()
    edges = edges_of(timeline)
    k = window_at(edges, edges[0] + 0.6 * (edges[-1] - edges[0]))
    top, window = timeline.classes[int(np.argmax(timeline.scores[k]))], timeline.windows[k]
    assert tooltip.text.splitlines()[0] == f"{_clock(window.start_s)}\u2013{_clock(window.end_s)}: {top}"
    shown = {line.rsplit(" ", 2)[0]: float(line.rsplit(" ", 2)[1]) for line in tooltip.text.splitlines()[1:]}
    assert shown == pytest.approx({c: 100 * p for c, p in zip(timeline.classes, timeline.scores[k])}, abs=0.06)
    screenshot(browser, "timeline-hover")


def test_any_file_name_a_song_and_a_single_window_give_a_whole_page(browser: Any, tmp_path: Path) -> None:
    """Names that would end or comment out the page's data, an audio file, a file shorter than one window."""
    folder = tmp_path / "odd <!--<script & #1 été"
    folder.mkdir()
    video = write_video(folder / "a <!--<script> 'b' #2.mp4", 12, (64, 36))
    odd = replace(synthetic_timeline(video, 12.0, LENGTH_S, HOP_S), classes=["</script>", *CLASSES[1:]])
    song = write_media(tmp_path / "song.m4a", y=np.zeros(16000 * 10, np.float32), sr=16000)
    audio = synthetic_timeline(song, 10.0, LENGTH_S, HOP_S, is_video=False)
    short = synthetic_timeline(video, 4.0, LENGTH_S, HOP_S)
    for name, timeline in (("odd", odd), ("song", audio), ("short", short)):
        page = write_page(timeline, tmp_path / "out", name)[2]
        open_page(browser, page)
        assert console_errors(browser) == [], name
        segments = browser.execute_script("return document.querySelectorAll('#chart .segment').length")
        assert segments == len(timeline.windows), name
        tag = browser.execute_script("return document.getElementById('media').tagName")
        assert tag == ("AUDIO" if name == "song" else "VIDEO"), name
        media_ready(browser)
        if name == "odd":
            assert browser.find_element("tag name", "h1").text == "a <!--<script> 'b' #2.mp4"
            assert "</script>" in browser.find_element("css selector", ".legend").text


def test_the_index_lists_every_file_and_sorts_by_name_label_and_length(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "timelines"
    results = []
    for name, seconds, seed in (("b.mp4", 30, 1), ("c.mp4", 12, 2), ("a10.mp4", 21, 3), ("a9.mp4", 15, 4)):
        timeline = synthetic_timeline(write_video(tmp_path / name, seconds, (64, 36)), seconds, LENGTH_S, HOP_S, seed)
        table, _, page = write_page(timeline, out, name)
        results.append({"file": timeline.file, "label": timeline.label, "csv": str(table), "html": str(page)})
    results.append({"clip_id": "broken", "error": "its video track cannot be decoded"})
    open_page(browser, index_page(results, timeline.classes, out))
    assert console_errors(browser) == []

    def column(k: int) -> list[str]:
        return [
            row.find_elements(By.TAG_NAME, "td")[k].text
            for row in browser.find_elements(By.CSS_SELECTOR, "#files tbody tr")
        ]

    assert column(0) == ["a10.mp4", "a9.mp4", "b.mp4", "c.mp4"], "every file, by name"
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#files tbody a")]
    assert all(Path(link.removeprefix("file://")).is_file() for link in links)
    header = browser.find_elements(By.CSS_SELECTOR, "#files thead th button")
    assert len(header) == 4, "the strip's column does not sort"
    header[0].click()
    assert column(0) == ["c.mp4", "b.mp4", "a10.mp4", "a9.mp4"], "by name, descending: it was sorted ascending"
    header[0].click()
    assert column(0) == ["a9.mp4", "a10.mp4", "b.mp4", "c.mp4"], "names with numbers in numeric order"
    header[2].click()
    assert column(0) == ["c.mp4", "a9.mp4", "a10.mp4", "b.mp4"], "shortest first"
    header[2].click()
    assert column(0) == ["b.mp4", "a10.mp4", "a9.mp4", "c.mp4"], "longest first"
    header[1].click()
    assert column(1) == sorted(column(1))
    assert "broken: its video track cannot be decoded" in browser.find_element(By.TAG_NAME, "body").text
    screenshot(browser, "index")


def test_an_index_of_files_that_all_failed_is_written_into_a_new_folder(tmp_path: Path) -> None:
    page = index_page([{"clip_id": "nope", "error": "clip 'nope': no such file"}], ["calm", "sad"], tmp_path / "new")
    text = page.read_text()
    assert "0 files." in text and "nope: clip &#x27;nope&#x27;: no such file" in text


def test_the_reports_tables_sort_and_a_models_row_leads_to_its_confusion_matrix(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    cache = embedding_cache(tmp_path / "c", nets={"musicnn": (6, 1.2), "i3d": (6, 0.6)}, n_per_class=12)
    run_cv(cache, tmp_path / "r", models="musicnn,i3d,i3d+musicnn", reference="i3d")
    open_page(browser, tmp_path / "r" / "report.html")
    assert console_errors(browser) == []
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images and all(i.get_attribute("src").startswith("data:image/png;base64,") for i in images), "figures inline"
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    summary = browser.find_elements(By.TAG_NAME, "table")[0]

    def cells(k: int) -> list[str]:
        return [
            row.find_elements(By.TAG_NAME, "td")[k].text for row in summary.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    buttons = summary.find_elements(By.CSS_SELECTOR, "thead th button")
    buttons[1].click()
    assert [float(v) for v in cells(1)] == sorted(float(v) for v in cells(1))
    buttons[1].click()
    assert [float(v) for v in cells(1)] == sorted((float(v) for v in cells(1)), reverse=True)
    for _ in range(2):
        buttons[-1].click()
        differences = cells(len(buttons) - 1)
        assert differences[-1] == "reference", "a cell without a number sorts last in either direction"
        numbers = [float(v.split()[0]) for v in differences[:-1]]
        assert numbers in (sorted(numbers), sorted(numbers, reverse=True))
    link = summary.find_element(By.LINK_TEXT, "i3d+musicnn")
    target = link.get_attribute("href").split("#", 1)[1]
    figure = browser.find_element(By.ID, target)
    assert figure.tag_name == "img" and "i3d+musicnn" in figure.get_attribute("alt")
    link.click()
    assert browser.execute_script("return location.hash") == f"#{target}"
    screenshot(browser, "report")


def test_a_five_minute_1080p_page_is_small_and_draws_every_window(browser: Any, tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", 300, (1920, 1080))
    timeline = synthetic_timeline(video, 300.0, 30.0, 1.0)  # a window every second: 271 windows
    page = write_page(timeline, tmp_path / "timelines", "long.mp4")[2]
    assert page.stat().st_size < 200_000
    open_page(browser, page)
    segments = browser.execute_script("return document.querySelectorAll('#chart .segment').length")
    assert segments == len(timeline.windows) == 271  # how fast: `mvemo bench pages`
    assert console_errors(browser) == []
    screenshot(browser, "timeline-5min-1080p")


def test_media_is_referenced_or_inlined_up_to_the_limit(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    small = write_video(tmp_path / "media" / "a b.mp4", 4, (64, 36))
    assert media_source(small, tmp_path / "out", embed=False) == ("../media/a%20b.mp4", "")
    source, note = media_source(small, tmp_path / "out", embed=True)
    assert source.startswith("data:video/mp4;base64,") and note == ""
    large = tmp_path / "media" / "large.mp4"
    large.write_bytes(b"\0" * (EMBED_LIMIT_BYTES + 1))
    assert media_source(large, tmp_path / "out", embed=True) == (
        "../media/large.mp4",
        "--embed-media: large.mp4 is over 20 MiB, the page refers to it",
    )


def test_hostile_names_show_as_text_in_a_report_and_a_timeline(browser: Any, tmp_path: Path) -> None:
    """Classes and a clip id holding markdown, HTML, a path and a script (``tests.fuse.test_hostile_names``): in
    Chromium both pages show them as text, run no script of theirs and show no file but the figures mvemo drew."""
    from selenium.webdriver.common.by import By

    from tests.fuse.test_hostile_names import SECRET, hostile

    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    names, rename = hostile(secret)
    cache = embedding_cache(tmp_path / "c", nets={"a": (4, 2.0)}, n_per_class=10, retarget=rename)
    run_cv(cache, tmp_path / "r", models="a")
    timeline = synthetic_timeline(write_video(tmp_path / "song.mp4", 12, (64, 36)), 12.0, LENGTH_S, HOP_S)
    classes = [*names, *CLASSES[len(names) :]]
    page = write_page(replace(timeline, classes=classes), tmp_path / "t", "song.mp4")[2]
    for path, scripts, shot in ((tmp_path / "r" / "report.html", 1, "report"), (page, 2, "timeline")):
        open_page(browser, path)
        assert console_errors(browser) == []
        body = browser.find_element(By.TAG_NAME, "body").text
        assert all(name in body for name in names) and SECRET not in body, path
        assert browser.execute_script("return document.querySelectorAll('script:not([type])').length") == scripts
        sources = [img.get_attribute("src") for img in browser.find_elements(By.TAG_NAME, "img")]
        assert all(src.startswith("data:image/png;base64,") for src in sources), sources
        screenshot(browser, f"hostile-names-{shot}")
