"""kill -9 of a writer at random moments: the cache opens, done rows are right, a rerun completes identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.cache.verify import verify_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

N_CLIPS = 40
REPO = Path(__file__).resolve().parents[2]


def job(cache: Path, media: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cache.crash_job", str(cache), str(media), str(N_CLIPS)], env=env, cwd=REPO
    )


def snapshot(cache: Path) -> dict[str, np.ndarray]:
    with Cache(cache) as reader:
        return {name: reader.read_matrix(name, np.flatnonzero(reader.done(name))) for name in reader.feature_sets()} | {
            f"{name}:done": reader.done(name) for name in reader.feature_sets()
        }


def kill_and_rerun(tmp_path: Path, target_kills: int, seed: int) -> int:
    """Kill writers at random moments until ``target_kills`` landed mid-run; check every state seen."""
    media = tmp_path / "media"
    reference = tmp_path / "reference.h5"
    began = time.monotonic()
    assert job(reference, media).wait() == 0
    duration_s = time.monotonic() - began
    expected = snapshot(reference)
    with Cache(reference) as reader:
        expected |= {f"{name}:all": reader.read_matrix(name) for name in reader.feature_sets()}
    assert expected["mel:done"].all() and expected["emb/net/fold0:done"].all()

    rng = np.random.default_rng(seed)
    kills = 0
    rounds = 0
    while kills < target_kills and rounds < 2 * target_kills:  # a round may end before any kill lands
        rounds += 1
        cache = tmp_path / f"killed{rounds}.h5"
        while True:  # kill at a random moment of a run until a run ends by itself
            proc = job(cache, media)
            time.sleep(rng.uniform(0.0, duration_s))
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            if (cache / "clips.h5").exists():  # else killed before its clip table: a rerun starts it
                state = snapshot(cache)  # the cache opens after every kill, and its done rows are right
                for name in ("mel", "emb/net/fold0"):
                    if name in state:
                        n = len(state[f"{name}:done"])  # a rerun's first part lists the first clips only
                        np.testing.assert_array_equal(state[name], expected[f"{name}:all"][:n][state[f"{name}:done"]])
        assert proc.wait() == 0
        final = snapshot(cache)
        assert final.keys() == {k for k in expected if not k.endswith(":all")}
        for key in final:
            np.testing.assert_array_equal(final[key], expected[key])
        assert verify_cache(cache).ok
    assert not list(tmp_path.rglob(".*.tmp")), "no half-made file is left behind"
    return kills


def test_kill_9_at_random_moments_then_rerun_gives_the_uninterrupted_cache(tmp_path: Path) -> None:
    assert kill_and_rerun(tmp_path, target_kills=15, seed=0) >= 15


@pytest.mark.slow(reason="thirty kill -9s of a running extract, each followed by a rerun (fifteen run in make test)")
def test_thirty_kills(tmp_path: Path) -> None:
    assert kill_and_rerun(tmp_path, target_kills=30, seed=1) >= 30
