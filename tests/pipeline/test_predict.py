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


def test_a_ready_made_models_name_beside_a_folder_or_mistyped_says_which(tmp_path: Path) -> None:
    import pytest

    from mvemo.manifests.errors import ConfigError
    from mvemo.pipeline.cli.predict import model_and_files

    song = tmp_path / "song.ogg"
    song.write_bytes(b"a song")
    with pytest.raises(ConfigError, match=r"'[^']+' is a folder: --model 4q-quadrants labels files; name them"):
        model_and_files((str(tmp_path), str(song)), "4q-quadrants")
    with pytest.raises(ConfigError, match=r"--model '4q-quadrant' is no ready-made model \(4q-quadrants, "):
        model_and_files((str(song),), "4q-quadrant")
    folder, files, name = model_and_files((str(song),), "4q-quadrants")
    assert Path(folder).name == "4q-quadrants" and files == (str(song),) and name is None
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model.json").write_text("{}")
    assert model_and_files((str(saved), str(song)), "4q-quadrants") == (str(saved), (str(song),), "4q-quadrants")


def test_a_model_reading_a_modality_the_clip_lacks_says_which_and_the_fix(tmp_path: Path) -> None:
    import pytest

    from mvemo.manifests.errors import MediaError

    path = write_tiny(tmp_path / "a.mp4")
    specs = {spec.name: spec for spec in FeatureConfigs().specs(("mel", "frames112"))}
    silent = ClipFeatures(Clip("v", "", video=path))
    with pytest.raises(MediaError, match=r"clip 'v': the model reads audio and the manifest names no audio file"):
        silent.get({"mel": specs["mel"].config}, {"mel": specs["mel"].fingerprint})
    song = ClipFeatures(Clip("s", "", audio=path))
    with pytest.raises(MediaError, match=r"clip 's': the model reads video and the clip has no video file"):
        song.get({"frames112": specs["frames112"].config}, {"frames112": specs["frames112"].fingerprint})


def test_the_console_names_a_ready_made_model_by_its_name_then_its_folders_model() -> None:
    from mvemo.pipeline.cli.predict import model_label
    from mvemo.pipeline.readymade.recipes import SHIPPED

    assert model_label(SHIPPED / "4q-quadrants", "integrated-audio") == "4q-quadrants (integrated-audio)"
    assert model_label(Path("runs/fused/model"), "lldstats") == "lldstats"
