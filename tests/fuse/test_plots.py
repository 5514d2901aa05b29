"""Plots: the study's bars draw any fold accuracies (a mean over equal folds rounding above them included); a class
has one colour in every figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mvemo.fuse.plots import accuracy_bars_png, class_colours, confusion_png, timeline_png


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
    return int((np.abs(image - np.asarray(colour[:3])).max(axis=-1) < 0.02).sum())


def test_a_class_has_one_colour_in_the_confusion_matrix_and_the_timeline(tmp_path: Path) -> None:
    classes = ("calm", "sad", "tense")
    colours = class_colours(classes)
    confusion = confusion_png([[3, 1, 0], [0, 4, 0], [1, 0, 3]], classes, "t", tmp_path / "c.png")
    for name in ("sad", "tense"):  # calm's blue is near the matrix's own shading
        assert pixels_of(confusion, colours[name]) > 20, f"{name} is named in its colour"
    proba = np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    timeline = timeline_png(
        np.array([0.0, 15.0, 30.0]), np.array([30.0, 45.0, 60.0]), proba, list(classes), "t", tmp_path / "t.png"
    )
    drawn = {name: pixels_of(timeline, colours[name]) for name in classes}
    assert drawn["sad"] > drawn["tense"] > drawn["calm"] > 0, "each class stacked in its colour, by its share of the area"
