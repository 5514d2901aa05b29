"""The timing helper of ``mvemo bench``: figures and baselines take turns."""

from __future__ import annotations

import itertools
import time

import pytest

from mvemo.pipeline.bench.common import best_of_each


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
