"""What every bench shares: the fastest of repeated runs, taking turns, and a manifest of stand-in clips."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mvemo.manifests.schema import Clip, Manifest

BENCH_CLASSES = ("a", "b", "c", "d", "e", "f")
# The MVED sample of ../shared beside the clone (or of $MVEMO_SHARED, as for the tests and the GPU check), whose first
# clip the audio and video benches time where it lies; they name the clip they timed.
SHARED_SAMPLE = (
    Path(os.environ.get("MVEMO_SHARED") or Path(__file__).resolve().parents[3] / "shared") / "data" / "mved-sample"
)


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs of ``fn``, in seconds."""
    return best_of_each({"": fn}, repeat)[""]


def best_of_each(fns: Mapping[str, Callable[[], Any]], repeat: int = 5) -> dict[str, float]:
    """The fastest of ``repeat`` runs of each function, in seconds, the functions taking turns.

    Taking turns puts a figure and its baseline under the same load: on a shared
    machine whose speed drifts by a third over a minute, back-to-back series
    gave ratios that drifted as much.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return {name: min(runs) for name, runs in times.items()}


def stand_in_manifest(folder: Path, n_clips: int) -> Manifest:
    media = folder / "media"
    media.mkdir()
    clips = []
    for i in range(n_clips):
        path = media / f"{i}.wav"
        path.write_bytes(i.to_bytes(4, "little"))
        clips.append(Clip(f"clip{i}", BENCH_CLASSES[i % len(BENCH_CLASSES)], audio=path))
    return Manifest(BENCH_CLASSES, tuple(clips))
