"""Plots: the study's bars draw any fold accuracies (a mean over equal folds rounding above them included); a class
has one colour in every figure, and the classes' colours stay apart for readers with a colour-vision deficiency."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mvemo.fuse.report.plots import accuracy_bars_png, class_colours, confusion_png, tags_timeline_png, timeline_png

# Machado, Oliveira & Fernandes (2009): full dichromacy as a matrix on linear RGB.
DICHROMACY = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}
SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


def closest_pair_seen_with(colours: list[str], dichromacy: str) -> float:
    """The smallest CIE76 colour difference between two of ``colours`` as a dichromat of that kind sees them."""
    srgb = np.array([matplotlib.colors.to_rgb(c) for c in colours])
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(linear @ np.asarray(DICHROMACY[dichromacy]).T, 0, 1)
    xyz = seen @ SRGB_TO_XYZ.T / [0.95047, 1.0, 1.08883]
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)
    distances = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.diag([np.inf] * len(lab))
    return float(distances.min())


@pytest.mark.parametrize("dichromacy", sorted(DICHROMACY))
def test_up_to_eight_classes_keep_their_colours_apart_for_dichromats(dichromacy: str) -> None:
    for n in range(2, 9):
        colours = list(class_colours([f"class{k}" for k in range(n)]).values())
        assert closest_pair_seen_with(colours, dichromacy) > 15, f"{n} classes: two colours look alike"
    tab10 = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    assert closest_pair_seen_with(tab10, "deuteranopia") < 10, "the check tells a palette that fails"


def test_bars_of_equal_folds_whose_mean_rounds_above_their_max(tmp_path: Path) -> None:
    equal = [0.1, 0.1, 0.1]
    assert float(np.mean(equal)) > max(equal)  # the case that made matplotlib refuse a negative whisker
    accuracy = {
        "twodcnn": {
            "adam": {"mean": float(np.mean(equal)), "min": 0.1, "max": 0.1},
            "sgd": {"mean": 0.5, "min": 0.3, "max": 0.7},
        },
        "c3d": {"adam": {"mean": 0.4, "min": 0.2, "max": 0.6}},
    }
    path = accuracy_bars_png(accuracy, tmp_path / "bars.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def pixels_of(path: Path, colour) -> int:
    image = plt.imread(path)[..., :3]
    return int((np.abs(image - np.asarray(matplotlib.colors.to_rgb(colour))).max(axis=-1) < 0.02).sum())


def test_a_class_has_one_colour_in_the_confusion_matrix_and_the_timeline(tmp_path: Path) -> None:
    classes = ("calm", "sad", "tense")
    colours = class_colours(classes)
    confusion = confusion_png([[3, 1, 0], [0, 4, 0], [1, 0, 3]], classes, "t", tmp_path / "c.png")
    for name in classes:
        assert pixels_of(confusion, colours[name]) > 20, f"{name} is named in its colour"
    proba = np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    timeline = timeline_png(
        np.array([0.0, 15.0, 30.0]), np.array([30.0, 45.0, 60.0]), proba, list(classes), "t", tmp_path / "t.png"
    )
    drawn = {name: pixels_of(timeline, colours[name]) for name in classes}
    assert drawn["sad"] > drawn["tense"] > drawn["calm"] > 0, (
        "each class stacked in its colour, by its share of the area"
    )


@pytest.mark.parametrize("n_classes", [8, 40, 60])
def test_a_timeline_of_many_classes_draws_without_a_warning(tmp_path: Path, n_classes: int) -> None:
    """40 classes in a one-column legend overflowed the panel: matplotlib warned on stderr."""
    classes = [f"class{i}" for i in range(n_classes)]
    proba = np.random.default_rng(0).dirichlet(np.ones(n_classes), size=12)
    starts = np.arange(12) * 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        timeline_png(starts, starts + 6, proba, classes, "many", tmp_path / "classes.png")
        tags_timeline_png(starts, starts + 6, proba, classes, [0.5] * n_classes, "many", tmp_path / "tags.png")


def unwrapped(text: str) -> str:
    """A text broken into lines after commas or at spaces, its white space aside (a break takes a space's place)."""
    return "".join(text.split())


def drawn_figure(monkeypatch: pytest.MonkeyPatch, draw: Any) -> tuple[Any, Any]:
    """The figure ``draw()`` saves (kept from ``plt.close``), drawn, and its renderer."""
    from mvemo.fuse.report import plots

    figures: list[Any] = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    draw()
    (figure,) = figures
    figure.canvas.draw()
    return figure, figure.canvas.get_renderer()


def test_a_fused_model_s_long_name_stays_inside_its_confusion_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classes = ("Exciting", "Fear", "Neutral", "Relaxation", "Sad", "Tension")
    name = "integrated(onedcnn,twodcnn,crnn,c3d,i3d,lldstats,descriptors)"
    matrix = np.eye(6, dtype=int).tolist()
    figure, renderer = drawn_figure(
        monkeypatch, lambda: confusion_png(matrix, classes, f"{name}: confusion, 2 folds", tmp_path / "c.png")
    )
    (title,) = figure.texts  # the suptitle
    box = title.get_window_extent(renderer)
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1
    assert unwrapped(title.get_text()) == unwrapped(f"{name}: confusion, 2 folds"), "broken into lines, nothing lost"


def test_the_models_figure_s_axis_labels_and_names_stay_apart_and_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mvemo.fuse.report.plots import comparison_png

    names = ["onedcnn", "c3d+onedcnn", "integrated(onedcnn,twodcnn,crnn,c3d,i3d,lldstats,descriptors)"]
    one = {"accuracy": {"folds": [[0.4, 0.6]], "interval": [0.2, 0.8], "mean": 0.5}, "f1_macro_per_repeat": [0.5]}
    metrics = {name: {**one, "f1_macro": 0.5, "repeats": 1} for name in names}
    figure, renderer = drawn_figure(monkeypatch, lambda: comparison_png(metrics, tmp_path / "m.png"))
    left, right = (ax.xaxis.label.get_window_extent(renderer) for ax in figure.axes)
    assert not left.overlaps(right), "the two panels' axis labels overlap"
    for ax in figure.axes:
        for text in [ax.xaxis.label, *ax.get_yticklabels()]:
            box = text.get_window_extent(renderer)
            assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, text.get_text()
    shown = [unwrapped(label.get_text()) for label in figure.axes[0].get_yticklabels()]
    assert shown == [unwrapped(name) for name in names]


def test_wrapped_breaks_after_spaces_and_commas_within_its_width() -> None:
    from mvemo.fuse.report.plots import wrapped

    assert (
        wrapped("integrated(onedcnn,twodcnn,crnn): confusion", 20) == "integrated(onedcnn,\ntwodcnn,crnn):\nconfusion"
    )
    assert wrapped("short", 20) == "short"
    assert wrapped("averyveryverylongword and more", 8) == "averyveryverylongword\nand more", (
        "a long piece keeps a line of its own"
    )
    assert wrapped("averyveryverylongword", 8) == "averyveryverylongword" and wrapped("", 8) == ""
    assert wrapped("musicnn.penultimate+lldstats+descriptors", 24) == "musicnn.penultimate+\nlldstats+descriptors"
    assert wrapped("a b\nc d e", 3) == "a b\nc d\ne", "each given line wrapped on its own"


def test_only_a_class_colour_too_light_for_white_gets_an_outline() -> None:
    from mvemo.fuse.report.plots import COLOUR_BLIND_SAFE, outline

    light = [colour for colour in COLOUR_BLIND_SAFE if outline(colour)]
    assert light == ["#E69F00", "#56B4E9", "#F0E442"], "orange, sky blue and yellow: under 3:1 on white"
