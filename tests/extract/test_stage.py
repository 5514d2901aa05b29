"""Stage one as a library function: the same run the command line makes, callable from a notebook."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mvemo
from mvemo.cache.read import Cache
from mvemo.extract.stage import extract_features, feature_names
from mvemo.manifests import Clip, ConfigError, Manifest
from tests.extract.finetune.test_finetune import RANDOM
from tests.extract.stage_helpers import embeddings_into, features_into
from tests.extract.test_features import CONFIGS


class RecordingExecutor:
    """Runs every job here, in order, and counts the jobs it was given."""

    def __init__(self, *, in_process: bool) -> None:
        self.in_process = in_process
        self.own_devices = False
        self.jobs = 0

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], resources: Any = None) -> Iterator[Any]:
        for args in zip(*iterables):
            self.jobs += 1
            yield fn(*args)


def test_feature_names_default_to_the_nets_inputs_or_mel_and_lld() -> None:
    assert feature_names(None, ()) == feature_names("", ()) == ("mel", "lld", "descriptors")
    assert feature_names(None, ("twodcnn", "onedcnn")) == ("mel", "waveform")
    assert feature_names("lld, frames", ("twodcnn",)) == ("lld", "frames224", "frames112", "mel")
    assert feature_names(("mel",), ("twodcnn",)) == ("mel",)
    with pytest.raises(ConfigError, match="unknown feature 'mfcc'"):
        feature_names("mfcc", ())


def test_stage_one_writes_the_nets_inputs_and_embeddings_as_the_steps_would(tmp_path: Path, manifest: Manifest) -> None:
    summary = mvemo.extract_features(
        manifest, tmp_path / "stage.h5", nets=("twodcnn",), configs=CONFIGS, net_options=RANDOM
    )
    assert [s.stage for s in summary.stages] == ["features", "embeddings"]
    assert list(summary.features.sets) == ["mel"], "without --features, only the nets' inputs"
    assert summary.embeddings == {"emb/twodcnn/all": 4} and not summary.failed
    assert any("random initialisation" in note for note in summary.notes)
    steps = tmp_path / "steps.h5"
    features_into(manifest, steps, ("mel",), configs=CONFIGS)
    embeddings_into(manifest, steps, ["twodcnn"], net_options=RANDOM)
    with Cache(tmp_path / "stage.h5") as stage, Cache(steps) as step:
        np.testing.assert_array_equal(stage.read_rows("emb/twodcnn/all")[0], step.read_rows("emb/twodcnn/all")[0])


def test_an_in_process_executor_computes_features_and_streams_the_embeddings_here(
    tmp_path: Path, manifest: Manifest
) -> None:
    here = RecordingExecutor(in_process=True)
    extract_features(manifest, tmp_path / "a.h5", nets=("twodcnn",), configs=CONFIGS, executor=here, net_options=RANDOM)
    assert here.jobs == len(manifest), "one feature job per clip, no embedding job"
    pool = RecordingExecutor(in_process=False)
    extract_features(manifest, tmp_path / "b.h5", nets=("twodcnn",), configs=CONFIGS, executor=pool, net_options=RANDOM)
    assert pool.jobs > len(manifest), "a pool also gets the embedding jobs"


def test_nets_without_folds_stop_before_anything_is_written(tmp_path: Path, manifest: Manifest) -> None:
    unfolded = Manifest(
        manifest.classes, tuple(Clip(c.clip_id, c.label, video=c.video, audio=c.audio) for c in manifest.clips)
    )
    with pytest.raises(ConfigError, match="mvemo manifest folds"):
        extract_features(unfolded, tmp_path / "c.h5", nets=("twodcnn",), configs=CONFIGS)
    assert not (tmp_path / "c.h5").exists()


def test_a_failed_clip_marks_the_run_failed(tmp_path: Path, manifest: Manifest) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with_broken = Manifest(manifest.classes, (*manifest.clips, Clip("broken", "a", video=broken, audio=broken, fold=1)))
    summary = extract_features(with_broken, tmp_path / "d.h5", features="mel", configs=CONFIGS)
    assert summary.failed and "broken" in summary.features.failures["mel"]


def test_every_progress_bar_sees_its_end(tmp_path: Path, manifest: Manifest) -> None:
    ended: list[tuple[str, int, int]] = []

    def bar(description: str, unit: str) -> Callable[[Iterable[Any], int], Iterator[Any]]:
        def wrap(items: Iterable[Any], total: int) -> Iterator[Any]:
            n = 0
            for item in items:
                n += 1
                yield item
            ended.append((description, n, total))  # reached only when the consumer asks past the last item

        return wrap

    extract_features(manifest, tmp_path / "e.h5", nets=("twodcnn",), configs=CONFIGS, net_options=RANDOM, progress=bar)
    assert ended == [("features", 5, 5), ("embeddings of twodcnn", 1, 1)]
