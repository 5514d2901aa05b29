"""predict's per-clip features: stage one's code, each set computed once per clip."""

from __future__ import annotations

from pathlib import Path

import mvemo.extract.features
from mvemo.extract.features import FeatureConfigs
from mvemo.manifests import Clip
from mvemo.pipeline.predict.clip_sets import ClipFeatures
from tests.conftest import write_tiny


def test_one_frame_sampling_serves_both_video_sets(tmp_path: Path, monkeypatch) -> None:
    sample = mvemo.extract.features.compute_video_features
    calls = []

    def counted(clip, config, faces):
        calls.append(clip.clip_id)
        return sample(clip, config, faces)

    monkeypatch.setattr(mvemo.extract.features, "compute_video_features", counted)
    path = write_tiny(tmp_path / "a.mp4")
    specs = {spec.name: spec for spec in FeatureConfigs().specs(("frames224", "frames112"))}
    features = ClipFeatures(Clip("a", "", video=path, audio=path))
    for name in ("frames112", "frames224", "frames112"):
        got = features.get({name: specs[name].config}, {name: specs[name].fingerprint})
        assert got[name].shape == specs[name].row_shape
    assert calls == ["a"], "the second net's video set comes from the first sampling"


def test_a_file_named_alone_has_video_unless_it_is_an_audio_file() -> None:
    from mvemo.pipeline.predict.predictor import file_clip

    song, video = file_clip("new/song.WAV"), file_clip("new/clip.mp4")
    assert song.video is None and song.audio == Path("new/song.WAV").absolute(), (
        "audio alone, as manifest scan reads it"
    )
    assert video.video == video.audio == Path("new/clip.mp4").absolute()


def test_a_timeline_of_one_window_says_one_window() -> None:
    from mvemo.pipeline.predict.predictor import windows_text

    assert [windows_text(n) for n in (1, 2)] == ["1 window", "2 windows"]
