"""Repeated recordings: one recording under two names (cut a little apart, at another gain, through another codec)
reads above the threshold, two recordings of one style below it; `mvemo manifest folds --group-repeats` keeps the
pair in one fold, joined with the groups of --group-by, and lists what it joined."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from mvemo.extract.repeats import REPEAT_THRESHOLD, fingerprint, repeated_pairs, similarities
from mvemo.manifests import Clip, Manifest, read_manifest, write_manifest
from mvemo.manifests.folds import joined_groups
from mvemo.manifests.synthetic import AudioCues, synthesize_audio, write_media
from mvemo.pipeline.cli.main import cli

SR = 22050


def song(seed: int, seconds: float = 8.0) -> np.ndarray:
    """A generated song, each seed of its own tempo, mode, brightness and dissonance."""
    cues = AudioCues(
        tempo_bpm=80.0 + 10 * (seed % 6),
        minor=bool(seed % 2),
        loudness=0.6,
        brightness=0.3 + 0.1 * (seed % 5),
        regularity=0.8,
        dissonance=0.1 + 0.05 * (seed % 4),
    )
    return synthesize_audio(cues, seconds, SR, np.random.default_rng(seed))


def recordings(folder: Path) -> dict[str, Path]:
    """Four songs of one style, and the first again: 0.2 s later, at half the gain, as AAC."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for seed in range(4):
        files[f"song{seed}"] = folder / f"song{seed}.wav"
        sf.write(files[f"song{seed}"], song(seed), SR)
    again = 0.5 * song(0, 8.2)[round(0.2 * SR) :]
    files["again"] = write_media(folder / "again.m4a", y=np.stack([again, again], axis=1), sr=SR)
    return files


def test_one_recording_under_two_names_reads_above_the_threshold_and_other_songs_below(tmp_path: Path) -> None:
    files = recordings(tmp_path)
    prints = [fingerprint(path) for path in files.values()]
    found = similarities(prints)
    names = list(files)
    pair = found[names.index("song0"), names.index("again")]
    others = [found[a, b] for a in range(4) for b in range(a + 1, 4)]
    assert pair >= REPEAT_THRESHOLD > max(others), (pair, others)
    assert [(a, b) for a, b, _ in repeated_pairs(prints)] == [(names.index("song0"), names.index("again"))]


def test_groups_joined_by_pairs_join_transitively_and_keep_the_others() -> None:
    groups = ["a", "b", "c", "d", "b"]
    assert joined_groups(groups, [(0, 1), (3, 2)]) == ["a+b", "a+b", "c+d", "c+d", "a+b"]
    assert joined_groups(groups, []) == groups


def test_manifest_folds_keeps_a_repeated_recording_in_one_fold_and_lists_it(tmp_path: Path) -> None:
    files = recordings(tmp_path / "media")
    for seed in range(4, 12):  # more songs, so that ten clips split into folds
        files[f"song{seed}"] = tmp_path / "media" / f"song{seed}.wav"
        sf.write(files[f"song{seed}"], song(seed), SR)
    clips = [
        Clip(name, "ab"[i % 2], audio=path, group=f"artist{i // 2}" if name != "again" else "artist-z")
        for i, (name, path) in enumerate(files.items())
    ]
    manifest_path = tmp_path / "m.csv"
    write_manifest(Manifest(("a", "b"), tuple(clips)), manifest_path)
    result = CliRunner().invoke(cli, ["manifest", "folds", str(manifest_path), "--k", "3", "--group-repeats"])
    assert result.exit_code == 0, result.output
    assert "one recording: song0 and again (" in result.output
    written = {clip.clip_id: clip for clip in read_manifest(manifest_path).clips}
    assert written["song0"].fold == written["again"].fold and written["song1"].fold == written["song0"].fold
    assert written["again"].group == written["song0"].group == "artist-z+artist0", "joined with the artists' groups"
    with open(tmp_path / "m.repeats.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["clip_a"], r["clip_b"]) for r in rows] == [("song0", "again")] and float(rows[0]["similarity"]) > 0.98
