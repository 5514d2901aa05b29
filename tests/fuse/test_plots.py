"""The study's bar plot draws any fold accuracies, including the rounding of a mean over equal folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvemo.fuse.plots import accuracy_bars_png


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
