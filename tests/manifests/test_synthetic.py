from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import av
import numpy as np
import pytest

from mvemo.manifests.synthetic import (
    CLASS_PROFILES,
    DEMO_CLASSES,
    DEMO_TAGS,
    SyntheticConfig,
    cue_targets,
    draw_cues,
    synthesize_audio,
    synthesize_video,
    write_media,
    write_synthetic_set,
)


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        container.seek(0)
        audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    return frames, audio


def test_write_media_round_trips_frames_and_tone(tmp_path: Path) -> None:
    frames = np.zeros((12, 64, 80, 3), dtype=np.uint8)
    frames[..., 0] = 200
    sr = 16000
    y = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    decoded, audio = decode(write_media(tmp_path / "x.mp4", frames=frames, fps=12, y=y, sr=sr))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 4
    spectrum = np.abs(np.fft.rfft(audio[:sr]))
    assert abs(np.argmax(spectrum) * sr / min(sr, audio.size) - 1000) < 5


SMALL = SyntheticConfig(
    clips_per_class=2, duration_s=4.0, fps=10, width=48, height=32, sr=8000, seed=3
)  # x264 carried state past 1 s


def test_the_same_seed_writes_the_same_set(tmp_path: Path) -> None:
    first = write_synthetic_set(tmp_path / "a", SMALL)
    again = write_synthetic_set(tmp_path / "b", SMALL)
    assert [{k: v for k, v in r.items() if k != "path"} for r in first] == [
        {k: v for k, v in r.items() if k != "path"} for r in again
    ]
    assert {r["path"].parent.name for r in first} == set(DEMO_CLASSES)
    different = [r["path"].name for r, s in zip(first, again) if r["path"].read_bytes() != s["path"].read_bytes()]
    assert different == [], "the same seed writes the same bytes, clip after clip in one process"


class PoolExecutor:
    """Two worker processes from a fork server that imports nothing first (mvemo's own preloads stage one and torch)."""

    def __init__(self) -> None:
        self.pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
        self.jobs = 0

    def map(self, fn, *iterables, resources=None) -> Iterator[object]:
        jobs = list(zip(*iterables))
        self.jobs += len(jobs)
        return self.pool.map(fn, *zip(*jobs))


def test_worker_processes_write_the_set_one_process_writes(tmp_path: Path) -> None:
    """Each clip is seeded on its own, so workers write the same clips, rows and bytes, in the same order."""
    executor = PoolExecutor()
    try:
        pooled = write_synthetic_set(tmp_path / "pooled", SMALL, executor=executor)
    finally:
        executor.pool.shutdown()
    assert executor.jobs == len(DEMO_CLASSES) * SMALL.clips_per_class, "every clip was a job of the pool"
    alone = write_synthetic_set(tmp_path / "alone", SMALL)
    assert [r["path"].relative_to(tmp_path / "pooled") for r in pooled] == [
        r["path"].relative_to(tmp_path / "alone") for r in alone
    ]
    assert [{k: v for k, v in r.items() if k != "path"} for r in pooled] == [
        {k: v for k, v in r.items() if k != "path"} for r in alone
    ]
    assert all(r["path"].read_bytes() == s["path"].read_bytes() for r, s in zip(pooled, alone, strict=True))


class FailingExecutor:
    """Hands back the error that lost each job, as mvemo's executors do, instead of raising it."""

    def map(self, fn, *iterables, resources=None) -> Iterator[object]:
        return iter([BrokenProcessPool("a worker died")] * len(iterables[0]))


def test_an_error_a_worker_hands_back_is_raised(tmp_path: Path) -> None:
    with pytest.raises(BrokenProcessPool, match="a worker died"):
        write_synthetic_set(tmp_path, SMALL, executor=FailingExecutor())


def test_the_same_seed_draws_the_same_signals() -> None:
    def draw() -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([3, 1, 0])
        audio, video = draw_cues("Fear", rng)
        return synthesize_audio(audio, 1.0, 8000, rng), synthesize_video(video, 1.0, 10, (48, 32), rng)

    (y1, f1), (y2, f2) = draw(), draw()
    assert np.array_equal(y1, y2) and np.array_equal(f1, f2)


def test_cue_distributions_follow_the_class_design() -> None:
    rng = np.random.default_rng(0)
    cues = {label: [draw_cues(label, rng) for _ in range(200)] for label in DEMO_CLASSES}

    def mean(label: str, modality: int, name: str) -> float:
        return float(np.mean([getattr(c[modality], name) for c in cues[label]]))

    assert mean("Exciting", 0, "tempo_bpm") > mean("Sad", 0, "tempo_bpm") + 40
    assert mean("Tension", 0, "dissonance") > mean("Exciting", 0, "dissonance") + 0.4
    assert mean("Tension", 0, "minor") > 0.7 > 0.3 > mean("Exciting", 0, "minor")
    assert mean("Sad", 1, "warmth") < mean("Relaxation", 1, "warmth") - 0.5
    assert mean("Fear", 1, "cuts_per_s") > mean("Sad", 1, "cuts_per_s") + 0.8
    # complementary by design: these pairs share one modality's distributions
    assert CLASS_PROFILES["Exciting"][1] == CLASS_PROFILES["Tension"][1]
    assert CLASS_PROFILES["Relaxation"][0] == CLASS_PROFILES["Neutral"][0]
    assert CLASS_PROFILES["Sad"][0] == CLASS_PROFILES["Fear"][0]


def test_the_media_carry_the_cues(tmp_path: Path) -> None:
    written = write_synthetic_set(
        tmp_path, SyntheticConfig(clips_per_class=1, duration_s=2.0, fps=10, width=64, height=48, sr=8000, spread=0.0)
    )
    media = {r["label"]: decode(r["path"]) for r in written}
    assert media["Exciting"][0].mean() > media["Sad"][0].mean() + 30, "brighter pictures"
    warm = media["Relaxation"][0][..., 0].mean() - media["Relaxation"][0][..., 2].mean()
    cold = media["Sad"][0][..., 0].mean() - media["Sad"][0][..., 2].mean()
    assert warm > 0 > cold, "warm red over blue, cold the reverse"
    assert np.abs(media["Exciting"][1]).mean() > 1.5 * np.abs(media["Sad"][1]).mean(), "louder music"
    motion = {label: np.abs(np.diff(frames.astype(float), axis=0)).mean() for label, (frames, _) in media.items()}
    assert motion["Exciting"] > 2 * motion["Relaxation"]


def test_demo_targets_follow_from_the_cues() -> None:
    rng = np.random.default_rng(0)
    expected = {
        "Exciting": ({"energetic", "warm", "restless"}, 1, 1),
        "Tension": ({"energetic", "dark", "warm", "restless"}, 1, 1),
        "Relaxation": ({"calm", "warm"}, 1, -1),
        "Sad": ({"dark", "calm"}, -1, -1),
    }
    for label, (tags, valence_sign, arousal_sign) in expected.items():
        tagged, valence, arousal = cue_targets(*draw_cues(label, rng, spread=0.0))
        assert set(tagged) == tags, label
        assert set(tagged) <= set(DEMO_TAGS) and -1 <= valence <= 1 and -1 <= arousal <= 1
        assert np.sign(arousal) == arousal_sign, label
        if label != "Tension":  # minor and dissonant, but warm pictures: near the middle
            assert np.sign(valence) == valence_sign, label
