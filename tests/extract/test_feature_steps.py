"""Where stage one's time goes: each clip's decoding and computing timed in the worker that does it, the writer's
waiting, checksums and writes in this process; and the video decoders sharing the cores among local workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mvemo.extract import features
from mvemo.extract.features import WORKER_STEPS, WRITER_STEPS, FeatureConfigs, shared_cores
from mvemo.extract.frame_sets import FrameConfig
from mvemo.manifests import Manifest
from mvemo.pipeline.executors import Executor, build_executor
from tests.extract.stage_helpers import features_into


def test_a_feature_run_times_every_step_of_its_clips_and_its_writes(tmp_path: Path, manifest: Manifest) -> None:
    summary = features_into(manifest, tmp_path / "c", ("frames112", "mel"))
    assert set(summary.steps) == set(WORKER_STEPS) | set(WRITER_STEPS) - {"waiting", "nets"}
    assert all(seconds > 0 for seconds in summary.steps.values()), summary.steps
    assert summary.steps["checksums"] < summary.steps["writing"], "the checksums are part of the writing"
    worker = sum(summary.steps[name] for name in WORKER_STEPS)
    assert worker + summary.steps["writing"] <= summary.seconds, "one process did all of it, one step at a time"


class Pool(Executor):
    def __init__(self, workers: int) -> None:
        self.local_workers = workers


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(16, 0, 0), (16, 1, 0), (16, 4, 4), (16, 3, 5), (16, 64, 1), (2, 2, 1)]
)
def test_local_workers_share_the_cores_between_their_video_decoders(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int
) -> None:
    """``threads`` 0: left to the decoder, one per core, as for one worker or none."""
    monkeypatch.setattr(features, "available_cores", lambda: cores)
    configs = FeatureConfigs()
    shared = shared_cores(configs, Pool(workers))
    assert shared.frames.decode_threads == threads
    assert dataclasses.replace(shared, frames=configs.frames) == configs, "nothing else changes"
    chosen = FeatureConfigs(frames=FrameConfig(decode_threads=3))
    assert shared_cores(chosen, Pool(workers)) is chosen, "a count the user set is kept"


def test_the_executors_say_how_many_workers_share_this_machine() -> None:
    assert build_executor("serial").local_workers == 0
    with build_executor("processes", workers=3) as pool:
        assert pool.local_workers == 3


@pytest.mark.heavy
def test_clips_computed_by_workers_bring_their_steps_back_and_the_writer_waits_for_them(
    tmp_path: Path, manifest: Manifest
) -> None:
    serial = features_into(manifest, tmp_path / "serial", ("mel",))
    assert "waiting" not in serial.steps, "in this process the wait would be the clips' own work, counted twice"
    with build_executor("processes", workers=2) as pool:
        pooled = features_into(manifest, tmp_path / "pooled", ("mel",), executor=pool)
    assert {"decode audio", "audio features", "waiting", "writing"} <= set(pooled.steps)
    assert pooled.steps["decode audio"] > 0 and pooled.steps["audio features"] > 0
