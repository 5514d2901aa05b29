"""``mvemo predict --timeline``: windows over a whole file, the timeline follows the music, bad inputs say why."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.manifests import Manifest, write_manifest
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.synthetic import (
    SyntheticConfig,
    draw_cues,
    synthesize_audio,
    synthesize_video,
    write_media,
    write_synthetic_set,
)
from mvemo.pipeline.cli.main import cli
from mvemo.pipeline.timeline import _model_for, output_stems

# Demo classes told apart by their sound (the others share it with one of these): a model reading audio separates them.
BY_SOUND = ("Exciting", "Neutral", "Sad", "Tension")
WINDOW_S, HOP_S, SR = 6.0, 3.0, 16000
SEGMENTS = [("Exciting", 45.0), ("Sad", 45.0), ("Tension", 45.0), ("Neutral", 45.0)]  # a 3-minute video


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``descriptors`` model over 6-s windows, trained on synthetic clips of the four classes told apart by sound."""
    root = tmp_path_factory.mktemp("timeline")
    write_synthetic_set(root / "data", SyntheticConfig(clips_per_class=12, duration_s=WINDOW_S, width=32, height=32, fps=5))
    scanned = scan_tree(root / "data")
    kept = Manifest(BY_SOUND, tuple(c for c in scanned.clips if c.label in BY_SOUND))
    manifest = write_manifest(assign_folds(kept, k=2, seed=0), root / "m.csv")
    (root / "c.toml").write_text(f"[audio]\nduration_s = {WINDOW_S}\n")
    runner = CliRunner()
    extract = [
        "extract",
        str(manifest),
        "--cache",
        str(root / "cache"),
        "--features",
        "descriptors",
        "--config",
        str(root / "c.toml"),
    ]
    assert runner.invoke(cli, extract).exit_code == 0
    result = runner.invoke(cli, ["fuse", str(root / "cache"), "--out", str(root / "fused"), "--models", "descriptors"])
    assert result.exit_code == 0, result.output
    return root / "fused" / "model"


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
    result = CliRunner().invoke(cli, ["predict", str(audio_model), str(short), str(silent), "--timeline", "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "is shorter than one 6-s window: one window, padded" in result.output
    assert "clip" in result.output and "has no audio and every saved model reads it" in result.output
    rows = list(csv.DictReader((out / "short.m4a.timeline.csv").open()))
    assert [(r["start_s"], r["end_s"]) for r in rows] == [("0.000", "6.000")]
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
    saved = SimpleNamespace(document=document)
    assert _model_for(saved, "integrated", {"audio", "video"}, "c") == ("integrated", "")
    name, note = _model_for(saved, "integrated", {"audio"}, "c")
    assert name == "mel"
    assert (
        note == "the file has no video: the timeline reads its audio alone, with 'mel', the best saved model reading audio only"
    )


def test_files_of_one_name_in_several_folders_get_outputs_of_their_own(tmp_path: Path) -> None:
    files = [tmp_path / "a/live/song.mp4", tmp_path / "b/studio/song.mp4", tmp_path / "x/live/song.mp4", tmp_path / "o.mp4"]
    assert output_stems([*files, files[-1]]) == [
        "a__live__song.mp4",
        "studio__song.mp4",
        "x__live__song.mp4",
        "o.mp4",
        "o.mp4",
    ], "a folder more where a name repeats; one file named twice is one output"
