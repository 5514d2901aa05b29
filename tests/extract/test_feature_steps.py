"""Where stage one's time goes: each clip's decoding and computing timed in the worker that does it, the writer's
waiting, checksums and writes in this process; and the video decoders sharing the cores among local workers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mvemo.extract.decode.video import available_cores
from mvemo.extract.features import WORKER_STEPS, WRITER_STEPS, FeatureConfigs, shared_cores
from mvemo.extract.frame_sets import FrameConfig
from mvemo.manifests import Manifest
from mvemo.pipeline.executors import Executor
from tests.extract.stage_helpers import features_into


def test_a_feature_run_times_every_step_of_its_clips_and_its_writes(tmp_path: Path, manifest: Manifest) -> None:
    summary = features_into(manifest, tmp_path / "c", ("frames112", "mel"))
    assert set(summary.steps) == set(WORKER_STEPS) | set(WRITER_STEPS)
    assert all(seconds > 0 for seconds in summary.steps.values()), summary.steps
    assert summary.steps["checksums"] < summary.steps["writing"], "the checksums are part of the writing"
    worker = sum(summary.steps[name] for name in WORKER_STEPS)
    assert worker + summary.steps["writing"] <= summary.seconds, "one process did all of it, one step at a time"


class Pool(Executor):
    def __init__(self, workers: int) -> None:
        self.local_workers = workers


@pytest.mark.parametrize("workers", [0, 1, 2, 3, 64])
def test_local_workers_share_the_cores_between_their_video_decoders(workers: int) -> None:
    configs = FeatureConfigs()
    shared = shared_cores(configs, Pool(workers))
    if workers < 2:
        assert shared is configs, "one worker or none decodes on every core"
    else:
        assert shared.frames.decode_threads == max(1, available_cores() // workers)
        assert dataclasses.replace(shared, frames=configs.frames) == configs, "nothing else changes"
    chosen = FeatureConfigs(frames=FrameConfig(decode_threads=3))
    assert shared_cores(chosen, Pool(workers)) is chosen, "a count the user set is kept"
