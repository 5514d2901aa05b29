from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.extract.audio import MelConfig
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.features import FeatureConfigs, parse_features
from mvemo.extract.frame_sets import FrameConfig
from mvemo.manifests import Clip, ConfigError, Manifest, read_manifest, write_manifest
from mvemo.pipeline.cli.main import cli
from tests.conftest import write_tiny
from tests.extract.stage_helpers import features_into

WINDOW = AudioWindow(duration_s=1.0)
CONFIGS = FeatureConfigs.of_window(WINDOW, frames=FrameConfig())


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    good = [write_tiny(tmp_path / f"v{i}.mp4") for i in range(3)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    silent_video = write_tiny(tmp_path / "novoice.mp4", audio=False)
    clips = [Clip(f"c{i}", "a" if i % 2 else "b", video=p, audio=p) for i, p in enumerate(good)]
    clips += [
        Clip("broken", "a", video=broken, audio=broken),
        Clip("novoice", "b", video=silent_video, audio=silent_video),
        Clip("video-only", "a", video=silent_video),
    ]
    return Manifest(("a", "b"), tuple(clips))


def test_features_are_computed_bad_clips_recorded_and_reruns_skip(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    summary = features_into(manifest, cache, ("mel", "lld"), configs=CONFIGS)
    mel = summary.sets["mel"]
    assert (mel.done, mel.computed, mel.absent) == (3, 3, 1)
    assert set(mel.failed) == {"broken", "novoice"}
    assert "cannot decode audio" in mel.failed["broken"] and "has no audio stream" in mel.failed["novoice"]
    with Cache(cache) as reader:
        assert reader.done("mel").tolist() == [True, True, True, False, False, False]
        assert reader.read_matrix("mel", [0]).shape == (1, 96, MelConfig(audio_window=WINDOW).n_frames)
        assert np.isfinite(reader.read_matrix("lld", [0, 1, 2])).all()
    again = features_into(manifest, cache, ("mel", "lld"), configs=CONFIGS)
    assert again.sets["mel"].computed == 0 and again.sets["mel"].done == 3


def test_a_changed_config_is_refused_until_recomputed(tmp_path: Path, manifest: Manifest) -> None:
    cache = tmp_path / "c.h5"
    features_into(manifest, cache, ("mel",), configs=CONFIGS)
    changed = FeatureConfigs.of_window(WINDOW, frames=FrameConfig(), mel=MelConfig(audio_window=WINDOW, n_mels=64))
    with pytest.raises(Exception, match=r"differing: config\.n_mels.*--recompute mel"):
        features_into(manifest, cache, ("mel",), configs=changed)
    summary = features_into(manifest, cache, ("mel",), configs=changed, recompute=["mel"])
    assert summary.sets["mel"].computed == 3
    with Cache(cache) as reader:
        assert reader.read_matrix("mel", [0]).shape[1] == 64


@pytest.mark.heavy
def test_processes_give_the_same_cache_as_serial(tmp_path: Path, manifest: Manifest) -> None:
    from mvemo.pipeline.executors import build_executor

    features_into(manifest, tmp_path / "serial.h5", ("mel", "lld", "waveform"), configs=CONFIGS)
    pool = build_executor("processes", workers=2)
    try:
        features_into(manifest, tmp_path / "pool.h5", ("mel", "lld", "waveform"), configs=CONFIGS, executor=pool)
    finally:
        pool.close()
    with Cache(tmp_path / "serial.h5") as a, Cache(tmp_path / "pool.h5") as b:
        for name in ("mel", "lld", "waveform"):
            np.testing.assert_array_equal(a.read_rows(name)[0], b.read_rows(name)[0])


def test_frames_of_video_clips_absent_for_audio_only_and_failed_without_a_video_stream(
    tmp_path: Path, manifest: Manifest
) -> None:
    song = write_tiny(tmp_path / "song.wav", video=False)
    clips = (*manifest.clips, Clip("song", "b", audio=song), Clip("not-a-video", "a", video=song, audio=song))
    configs = FeatureConfigs.of_window(WINDOW, frames=FrameConfig(n_frames=4, window_duration_s=1.0))
    summary = features_into(
        Manifest(manifest.classes, clips), tmp_path / "c.h5", parse_features("frames,mel"), configs=configs
    )
    frames = summary.sets["frames224"]
    assert (frames.done, frames.absent) == (5, 1)  # c0-c2, novoice and video-only have pictures; song has none
    assert set(frames.failed) == {"broken", "not-a-video"}
    assert "not-a-video" in frames.failed["not-a-video"] and "no video stream" in frames.failed["not-a-video"]
    assert summary.sets["frames112"].failed.keys() == frames.failed.keys()
    assert summary.sets["mel"].done == 5  # c0-c2, song, not-a-video: the video sets change nothing of the audio ones
    with Cache(tmp_path / "c.h5") as reader:
        big, small = reader.read_matrix("frames224", [0]), reader.read_matrix("frames112", [0])
        assert big.shape == (1, 4, 224, 224, 3) and small.shape == (1, 4, 112, 112, 3)
        assert big.dtype == small.dtype == np.uint8 and big.std() > 0


def test_parse_features() -> None:
    assert parse_features("mel, lld,waveform") == ("mel", "lld", "waveform")
    assert parse_features("frames,mel,frames112") == ("frames224", "frames112", "mel")
    with pytest.raises(ConfigError, match=r"unknown feature 'mfcc'"):
        parse_features("mel,mfcc")


def test_cli_extract_exit_codes_and_config_file(tmp_path: Path, manifest: Manifest) -> None:
    path = write_manifest(manifest, tmp_path / "m.csv")
    config = tmp_path / "c.toml"
    config.write_text("[audio]\nduration_s = 1.0\n[mel]\nn_mels = 48\n")
    cache = tmp_path / "cache.h5"
    result = CliRunner().invoke(
        cli, ["extract", str(path), "--cache", str(cache), "--features", "mel", "--config", str(config)]
    )
    assert result.exit_code == 3, result.output
    assert "failed: mel, clip 'broken'" in result.output
    with Cache(cache) as reader:
        assert reader.config("mel")["n_mels"] == 48 and reader.config("mel")["audio_window"]["duration_s"] == 1.0
    config.write_text("[mel]\nn_melz = 48\n")
    result = CliRunner().invoke(cli, ["extract", str(path), "--cache", str(cache), "--config", str(config)])
    assert result.exit_code == 2 and "[mel]: unknown key(s) ['n_melz']" in result.output


def test_the_frames_window_follows_the_audio_window_unless_set(tmp_path: Path) -> None:
    from mvemo.pipeline.config import feature_configs

    config = tmp_path / "c.toml"
    config.write_text("[audio]\noffset_s = 5.0\nduration_s = 10.0\n[frames]\nn_frames = 16\n")
    frames = feature_configs(config).frames
    assert (frames.n_frames, frames.window_start_s, frames.window_duration_s) == (16, 5.0, 10.0)
    config.write_text("[audio]\noffset_s = 5.0\n[frames]\nwindow_start_s = 0.0\nwindow_duration_s = inf\n")
    frames = feature_configs(config).frames
    assert (frames.window_start_s, frames.window_duration_s) == (0.0, None)
    config.write_text("[frames]\nn_framez = 16\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['n_framez'\]"):
        feature_configs(config)


def test_added_clips_alone_are_computed_and_a_removed_clip_costs_nothing(tmp_path: Path) -> None:
    media = [write_tiny(tmp_path / f"v{i}.mp4") for i in range(6)]
    clips = [Clip(f"c{i}", "ab"[i % 2], video=p, audio=p) for i, p in enumerate(media)]
    path = write_manifest(Manifest(("a", "b"), tuple(clips[:4])), tmp_path / "m.csv")
    assert CliRunner().invoke(cli, ["manifest", "folds", str(path), "--k", "2"]).exit_code == 0
    cache = tmp_path / "cache"
    first = read_manifest(path)
    assert features_into(first, cache, ("mel",), configs=CONFIGS).sets["mel"].computed == 4
    (segment,) = (cache / "sets" / "mel").glob("rows-*.h5")
    stamp = segment.stat().st_mtime_ns
    with path.open("a") as f:  # two new clips, their fold left empty
        f.write("".join(f"c{i},{'ab'[i % 2]},v{i}.mp4,v{i}.mp4,,\n" for i in (4, 5)))
    result = CliRunner().invoke(cli, ["manifest", "folds", str(path)])
    assert result.exit_code == 0 and "kept the folds of 4 clips, folded in 2 new" in result.output, result.output
    grown = read_manifest(path)
    assert grown.folds[:4].tolist() == first.folds.tolist()
    assert features_into(grown, cache, ("mel",), configs=CONFIGS).sets["mel"].computed == 2
    assert segment.stat().st_mtime_ns == stamp, "the first clips' rows were not rewritten"
    fewer = Manifest(grown.classes, grown.clips[1:])
    assert features_into(fewer, cache, ("mel",), configs=CONFIGS).sets["mel"].computed == 0
    with Cache(cache) as reader:
        assert reader.clip_ids == ["c1", "c2", "c3", "c4", "c5"] and reader.done("mel").all()
