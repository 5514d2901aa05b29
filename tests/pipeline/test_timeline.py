"""``mvemo predict --timeline``: windows over a whole file, the timeline follows the music, bad inputs say why."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.features import FeatureConfigs
from mvemo.fuse.saved.model import SavedFusionModel
from mvemo.manifests import Clip
from mvemo.manifests.synthetic import (
    draw_cues,
    synthesize_audio,
    synthesize_video,
    write_media,
)
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.predict.clip_sets import ClipFeatures, at_window
from mvemo.pipeline.predict.timeline import _model_for, output_stems
from tests.built import built_once
from tests.conftest import write_song_with_cover
from tests.pipeline import helpers
from tests.pipeline.helpers import synthetic_manifest

# Demo classes told apart by their sound (the others share it with one of these): a model reading audio separates them.
BY_SOUND = ("Exciting", "Neutral", "Sad", "Tension")
WINDOW_S, HOP_S, SR = 6.0, 3.0, 16000
SEGMENTS = [("Exciting", 45.0), ("Sad", 45.0), ("Tension", 45.0), ("Neutral", 45.0)]  # a 3-minute video


def trained_model(root: Path, *, clips_per_class: int, extract: list[str], models: str) -> Path:
    """A model saved by ``mvemo fuse --models MODELS`` over ``mvemo extract EXTRACT...`` of synthetic 6-s clips of the
    classes told apart by sound."""
    manifest = synthetic_manifest(root, BY_SOUND, clips_per_class=clips_per_class, duration_s=WINDOW_S)
    (root / "c.toml").write_text(f"[audio]\nduration_s = {WINDOW_S}\n")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["extract", str(manifest), "--cache", str(root / "cache"), "--config", str(root / "c.toml"), *extract]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["fuse", str(root / "cache"), "--out", str(root / "fused"), "--models", models])
    assert result.exit_code == 0, result.output
    return root / "fused" / "model"


BUILT_BY = [__file__, helpers.__file__]


@pytest.fixture(scope="session")
def audio_model() -> Path:
    """A ``descriptors`` model over 6-s windows, trained on synthetic clips of the four classes told apart by sound."""

    def build(root: Path) -> None:
        trained_model(root, clips_per_class=12, extract=["--features", "descriptors"], models="descriptors")

    return built_once("timeline-audio-model", build, code=BUILT_BY) / "fused" / "model"


@pytest.mark.heavy
def test_the_timeline_follows_the_class_changes_within_one_hop(audio_model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    audio, frames = [], []
    for label, seconds in SEGMENTS:
        sound, picture = draw_cues(label, rng)
        audio.append(synthesize_audio(sound, seconds, SR, rng))
        frames.append(synthesize_video(picture, seconds, 5, (32, 32), rng))
    video = write_media(tmp_path / "song.mp4", frames=np.concatenate(frames), fps=5, y=np.concatenate(audio), sr=SR)
    result = CliRunner().invoke(
        cli, ["predict", str(audio_model), str(video), "--timeline", "--hop", str(HOP_S), "--out", str(tmp_path / "t")]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "t" / "song.mp4.timeline.csv").open()))
    assert (tmp_path / "t" / "song.mp4.timeline.png").stat().st_size > 10_000
    page = (tmp_path / "t" / "song.mp4.timeline.html").read_text()
    assert 'src="../song.mp4"' in page and 'id="timeline-data"' in page
    assert 'href="song.mp4.timeline.html"' in (tmp_path / "t" / "index.html").read_text()
    changes = np.cumsum([s for _, s in SEGMENTS])[:-1]
    assert float(rows[-1]["end_s"]) == pytest.approx(180.0, abs=0.1) and len(rows) == 59
    followed = []
    for row in rows:
        middle = (float(row["start_s"]) + float(row["end_s"])) / 2
        if np.min(np.abs(changes - middle)) > HOP_S:  # away from a change by more than one hop
            truth = SEGMENTS[int(np.searchsorted(changes, middle))][0]
            followed.append(row["argmax"] == truth)
        assert sum(float(row[f"p_{c}"]) for c in BY_SOUND) == pytest.approx(1.0, abs=1e-5)
    assert all(followed), f"{followed.count(False)} of {len(followed)} windows away from a change got another class"


def test_a_short_file_is_one_padded_window_and_a_file_without_audio_says_why(audio_model: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sound, picture = draw_cues("Sad", rng)
    short = write_media(tmp_path / "short.m4a", y=synthesize_audio(sound, 2.0, SR, rng), sr=SR)
    silent = write_media(tmp_path / "silent.mp4", frames=synthesize_video(picture, 8.0, 5, (32, 32), rng), fps=5)
    out = tmp_path / "t"
    result = CliRunner().invoke(
        cli, ["predict", str(audio_model), str(short), str(silent), "--timeline", "--out", str(out)]
    )
    assert result.exit_code == 3, result.output
    assert "is shorter than one 6-s window: one window, padded" in result.output
    assert "clip" in result.output and "has no audio and every saved model reads it" in result.output
    rows = list(csv.DictReader((out / "short.m4a.timeline.csv").open()))
    assert len(rows) == 1 and rows[0]["start_s"] == "0.000"
    assert float(rows[0]["end_s"]) == pytest.approx(2.0, abs=0.05), "the window ends where the file does"
    assert not (out / "silent.mp4.timeline.csv").exists()


def test_a_file_without_a_modality_gets_the_best_model_reading_what_it_has() -> None:
    def reading(*sets: str) -> dict:
        return {"feature_sets": {s: {"config": {}, "fingerprint": ""} for s in sets}}

    document = {
        "models": {
            "integrated": reading("descriptors", "frames112"),
            "descriptors": reading("descriptors"),
            "mel": reading("mel"),
        },
        "cv_accuracy": {"integrated": 0.9, "descriptors": 0.6, "mel": 0.7},
    }
    saved = SavedFusionModel(Path("."), document, fitted={})
    assert _model_for(saved, "integrated", {"audio", "video"}, "c") == ("integrated", "")
    name, note = _model_for(saved, "integrated", {"audio"}, "c")
    assert name == "mel"
    assert (
        note == "the file has no video: the timeline reads its audio alone, with 'mel', the saved model reading audio"
        " only of the best cross-validated accuracy"
    ), "a model saved before scores were kept for every target reads as accuracy"
    document["cv_score"] = {"metric": "CCC", "models": {"integrated": 0.5, "descriptors": 0.4, "mel": 0.1}}
    name, note = _model_for(SavedFusionModel(Path("."), document, fitted={}), "integrated", {"audio"}, "c")
    assert name == "descriptors" and note.endswith("of the best cross-validated CCC"), (
        "a value model's score is its CCC"
    )


def test_files_of_one_name_in_several_folders_get_outputs_of_their_own(tmp_path: Path) -> None:
    files = [
        tmp_path / "a/live/song.mp4",
        tmp_path / "b/studio/song.mp4",
        tmp_path / "x/live/song.mp4",
        tmp_path / "o.mp4",
    ]
    assert output_stems([*files, files[-1]]) == [
        "a__live__song.mp4",
        "studio__song.mp4",
        "x__live__song.mp4",
        "o.mp4",
        "o.mp4",
    ], "a folder more where a name repeats; one file named twice is one output"


@pytest.fixture(scope="session")
def sound_and_picture_model() -> Path:
    """Saved models over 6-s windows: ``descriptors`` (sound), ``c3d`` (pictures) and ``descriptors+c3d`` (both)."""

    def build(root: Path) -> None:
        extract = ["--features", "descriptors", "--nets", "c3d", "--random-init", "c3d"]
        trained_model(root, clips_per_class=4, extract=extract, models="descriptors,c3d,descriptors+c3d")

    return built_once("timeline-av-model", build, code=BUILT_BY) / "fused" / "model"


@pytest.mark.heavy
def test_files_without_a_modality_and_streams_of_different_lengths_say_what_the_timeline_covers(
    sound_and_picture_model: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    sound, picture = draw_cues("Tension", rng)
    song = write_song_with_cover(tmp_path / "song.mp3", synthesize_audio(sound, 12.0, SR, rng), sr=SR)
    silent = write_media(tmp_path / "silent.mkv", frames=synthesize_video(picture, 9.0, 5, (32, 32), rng), fps=5)
    uneven = write_media(
        tmp_path / "uneven.mp4",
        frames=synthesize_video(picture, 8.0, 5, (32, 32), rng),
        fps=5,
        y=synthesize_audio(sound, 14.0, SR, rng),
        sr=SR,
    )
    out = tmp_path / "t"
    args = ["predict", str(sound_and_picture_model), str(song), str(silent), str(uneven), "--model", "descriptors+c3d"]
    result = CliRunner().invoke(cli, [*args, "--timeline", "--hop", str(HOP_S), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    by_file = {Path(r["file"]).name: r for r in json.loads(result.output)}
    audio_only = by_file["song.mp3"]
    assert audio_only["model"] == "descriptors"
    assert audio_only["notes"] == [
        "the file has no video: the timeline reads its audio alone, with 'descriptors', the saved model reading audio"
        " only of the best cross-validated accuracy"
    ]
    rows = list(csv.DictReader((out / "song.mp3.timeline.csv").open()))
    assert [r["start_s"] for r in rows[:3]] == ["0.000", "3.000", "6.000"], "a song with cover art is audio alone"
    assert float(rows[-1]["end_s"]) == pytest.approx(12.0, abs=0.1)
    video_only = by_file["silent.mkv"]
    assert (video_only["model"], video_only["windows"]) == ("c3d", 2)
    assert video_only["notes"] == [
        "the file has no audio: the timeline reads its video alone, with 'c3d', the saved model reading video"
        " only of the best cross-validated accuracy"
    ]
    both = by_file["uneven.mp4"]
    assert both["model"] == "descriptors+c3d"
    assert any(n.startswith("audio 14.0 s, video 8.0 s: the timeline covers the first 8.0 s") for n in both["notes"])
    rows = list(csv.DictReader((out / "uneven.mp4.timeline.csv").open()))
    assert [(r["start_s"], r["end_s"]) for r in rows] == [("0.000", "6.000"), ("2.000", "8.000")]


def test_a_hop_longer_than_the_window_is_refused_before_any_work(audio_model: Path, tmp_path: Path) -> None:
    song = write_media(tmp_path / "song.wav", y=np.zeros(SR * 20, dtype=np.float32), sr=SR)
    result = CliRunner().invoke(
        cli, ["predict", str(audio_model), str(song), "--timeline", "--hop", "7", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--hop 7: longer than the model's 6-s window" in result.output and "give --hop 6 or less" in result.output
    assert not list(tmp_path.glob("*.timeline.*"))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_windows_sound_and_pictures_come_from_the_same_seconds(tmp_path: Path, suffix: str) -> None:
    fps, switch_s, length_s = 10, 11.0, 6.0  # at 11 s the sound starts and the picture turns white
    frames = np.zeros((20 * fps, 32, 32, 3), dtype=np.uint8)
    frames[int(switch_s * fps) :] = 255
    t = np.arange(20 * SR) / SR
    y = np.where(t >= switch_s, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    path = write_media(tmp_path / f"switch{suffix}", frames=frames, fps=fps, y=y, sr=SR)
    specs = FeatureConfigs.of_window(AudioWindow(duration_s=length_s)).specs(("waveform", "frames112"))
    saved = {spec.name: spec.config for spec in specs}
    for start_s in (7.0, 9.5):
        arrays = ClipFeatures(Clip("switch", "", video=path, audio=path)).get(at_window(saved, start_s))
        sound_s = np.argmax(np.abs(arrays["waveform"].astype(np.float32)) > 0.1) / SR
        assert sound_s == pytest.approx(switch_s - start_s, abs=0.03), "the sound starts where it does in the file"
        n = len(arrays["frames112"])
        middles = (2 * np.arange(n) + 1) / (2 * n) * length_s  # each sampled frame's moment in the window
        white = int(np.argmax(arrays["frames112"].mean(axis=(1, 2, 3)) > 128))
        assert middles[white - 1] - 1 / fps <= sound_s <= middles[white] + 1 / fps, "the picture turns white then too"


@pytest.mark.parametrize(("frames_s", "expected_s"), [(10.0, 10.0), (None, 30.0)])
def test_a_window_moves_every_set_to_its_start_and_keeps_the_frames_length(frames_s, expected_s) -> None:
    trained = FeatureConfigs.of_window(AudioWindow(duration_s=30.0)).at(0.0)
    frames = replace(trained.frames, window_duration_s=frames_s)
    records = {spec.name: spec.config for spec in replace(trained, frames=frames).specs(("mel", "frames112"))}
    moved = at_window(records, 45.0)
    assert moved["mel"]["audio_window"]["offset_s"] == 45.0 and moved["mel"]["audio_window"]["duration_s"] == 30.0
    assert (moved["frames112"]["window_start_s"], moved["frames112"]["window_duration_s"]) == (45.0, expected_s)
