"""The timing helper of ``mvemo bench``: figures and baselines take turns; a bench without its weights says so."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from mvemo.pipeline.bench.common import best_of_each
from mvemo.pipeline.bench.memory import bench_memory
from mvemo.pipeline.bench.timeline import bench_timeline


def test_functions_take_turns_and_each_gets_its_fastest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    durations = {"figure": itertools.cycle([3.0, 1.0, 2.0]), "baseline": itertools.cycle([5.0, 4.0, 6.0])}
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def run(name: str) -> None:
        calls.append(name)
        clock[0] += next(durations[name])

    best = best_of_each({"figure": lambda: run("figure"), "baseline": lambda: run("baseline")}, repeat=3)
    assert calls == ["figure", "baseline"] * 3
    assert best == {"figure": 1.0, "baseline": 4.0}


def test_timeline_bench_says_which_weights_it_lacks(tmp_path: Path) -> None:
    figures = bench_timeline(weights_dir=str(tmp_path), folder=str(tmp_path))
    assert set(figures) == {"skipped"}
    assert "i3d_rgb_kinetics400.npz" in figures["skipped"] and "--weights-dir" in figures["skipped"]


@pytest.mark.slow(reason="mvemo-cv on 240 generated clips in a process of its own, its memory sampled")
def test_memory_bench_measures_mvemo_cv_in_a_process_of_its_own(tmp_path: Path) -> None:
    figures = bench_memory(n_clips=240, k=3, folder=str(tmp_path))
    assert figures["clips"] == 240 and figures["lld_gb"] == pytest.approx(240 * 1292 * 63 * 4 / 1e9, abs=0.01)
    assert 50 < figures["peak_rss_mb_tenth_of_the_clips"] <= figures["peak_rss_mb"] < figures["goal_peak_mb"]
    assert figures["peak_ratio_10x_clips"] == pytest.approx(
        figures["peak_rss_mb"] / figures["peak_rss_mb_tenth_of_the_clips"], abs=0.01
    )
