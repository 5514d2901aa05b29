"""`kill -9` of `mvemo extract` at random moments of its feature and fine-tuning phases, then a rerun: the cache
ends identical to an uninterrupted run's."""

from __future__ import annotations

import functools
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.manifests import Clip, Manifest, write_manifest
from tests.conftest import write_tiny

CONFIG = "[audio]\nduration_s = 1.0\n[train]\nmax_epochs = 2\npatience = 1\nbatch_size = 4\nvalidation_share = 0.25\n"
N_CLIPS = 36
KILLS = 4  # two rounds: a round's first kill lands amid the features, its second amid the fine-tuning
SETS = ("mel", "emb/twodcnn/fold0", "emb/twodcnn/fold1", "emb/twodcnn/fold2", "emb/twodcnn/all")


def contents(cache: Path) -> dict[str, np.ndarray]:
    with Cache(cache) as reader:
        assert set(SETS) <= set(reader.feature_sets())
        return {name: reader.read_matrix(name) for name in SETS} | {f"{n}:done": reader.done(n) for n in SETS}


def mel_rows_done(cache: Path) -> int:
    if not (cache / "clips.h5").exists():  # not begun, or killed while writing its clip table
        return 0
    with Cache(cache) as reader:
        return int(reader.done("mel").sum()) if "mel" in reader.feature_sets() else 0


def units_written(cache: Path) -> int:
    folder = cache.parent / f"{cache.name}.checkpoints" / "twodcnn"
    return len(list(folder.glob("*.pt"))) if folder.is_dir() else 0


def phase(cache: Path) -> str:
    """Where a killed run was: amid its features; amid fine-tuning (some units' checkpoints written); or between."""
    if mel_rows_done(cache) < N_CLIPS:
        return "features"
    units = units_written(cache)
    return f"fine-tuning ({units} of 4 units written)" if units else "after features"


def wait_until_midway(run: subprocess.Popen, written: Callable[[], int], total: int, rng: np.random.Generator) -> None:
    """Until the run has written some of ``total`` things (mel rows, units' checkpoints) and not all, then a random
    instant more."""
    while run.poll() is None and not 0 < written() < total:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.05))


@pytest.mark.slow(reason="four kills at random moments of extracts that fine-tune a net, each resumed")
def test_killed_extracts_resume_to_the_uninterrupted_cache(tmp_path: Path) -> None:
    clips = [
        Clip(f"c{i}", "ab"[i % 2], audio=write_tiny(tmp_path / f"{i}.wav", video=False), fold=(i // 2) % 3)
        for i in range(N_CLIPS)
    ]
    manifest = write_manifest(Manifest(("a", "b"), tuple(clips)), tmp_path / "m.csv")
    (tmp_path / "c.toml").write_text(CONFIG)
    mvemo = Path(sys.executable).parent / "mvemo"

    def extract(cache: Path) -> subprocess.Popen:
        command = [
            mvemo,
            "extract",
            manifest,
            "--cache",
            cache,
            "--features",
            "mel",
            "--nets",
            "twodcnn",
            "--finetune",
            "last",
            "--config",
            tmp_path / "c.toml",
            "--device",
            "cpu",
            "--random-init",
            "twodcnn",
        ]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    began = time.monotonic()
    assert extract(tmp_path / "reference.h5").wait() == 0
    duration_s = time.monotonic() - began
    expected = contents(tmp_path / "reference.h5")
    rng = np.random.default_rng(0)
    kills, rounds, phases = 0, 0, []
    while kills < KILLS and rounds < 10:
        rounds += 1
        cache = tmp_path / f"killed{rounds}.h5"
        while True:  # kill at a random moment, until a sleep outlasts what is left of a run
            run = extract(cache)
            if mel_rows_done(cache) == 0:  # the round's first kill lands amid the features
                wait_until_midway(run, functools.partial(mel_rows_done, cache), N_CLIPS, rng)
            elif units_written(cache) == 0:  # its second amid the fine-tuning
                wait_until_midway(run, functools.partial(units_written, cache), 4, rng)
            else:
                time.sleep(rng.uniform(0.1, 0.9) * duration_s)
            if run.poll() is not None:
                break
            run.send_signal(signal.SIGKILL)
            run.wait()
            kills += 1
            phases.append(phase(cache))
        assert run.returncode == 0
        for name, values in contents(cache).items():
            np.testing.assert_array_equal(values, expected[name], err_msg=f"round {rounds}: {name}")
        units = sorted(p.name for p in (tmp_path / f"killed{rounds}.h5.checkpoints" / "twodcnn").iterdir())
        assert units == ["all-leakfree.pt", "fold0-leakfree.pt", "fold1-leakfree.pt", "fold2-leakfree.pt"], units
    assert kills >= KILLS, f"{kills} kills landed in {rounds} rounds"
    assert "features" in phases and any(re.match(r"fine-tuning \([123] of 4", p) for p in phases), phases
    print(
        f"{kills} kills in {rounds} rounds of {duration_s:.1f} s runs ({', '.join(phases)}):"
        " every resumed cache equals the reference"
    )
