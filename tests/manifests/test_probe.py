from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvemo.manifests import Clip, Manifest
from mvemo.manifests.probe import check_clip, check_manifest, iso_file_cut_off, probe_file
from mvemo.manifests.synthetic import write_media
from tests.conftest import faststart, tiny_audio, tiny_frames, write_song_with_cover, write_tiny


def test_probe_reports_stream_facts(tmp_path: Path) -> None:
    path = write_media(
        tmp_path / "v.mp4",
        frames=tiny_frames(n=20),
        fps=25,
        y=tiny_audio(1.0, sr=22050, channels=1),
        sr=22050,
        rotation_deg=90,
    )
    info = probe_file(path)
    assert not info.error
    assert (info.audio.codec, info.audio.sample_rate_hz, info.audio.channels) == ("aac", 22050, 1)
    assert abs(info.audio.duration_s - 1.0) < 0.05
    video = info.video
    assert (video.codec, video.width, video.height, video.fps, video.frame_count) == ("h264", 48, 32, 25.0, 20)
    assert video.rotation_deg in (90, -90, 270)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_each_stream_ends_where_it_ends_on_the_timeline_though_the_container_holds_no_stream_length(
    tmp_path: Path, suffix: str
) -> None:
    sr = 16000
    path = write_media(tmp_path / f"v{suffix}", frames=tiny_frames(n=40), fps=5, y=tiny_audio(12.0, sr=sr), sr=sr)
    info = probe_file(path)
    assert info.video.end_s == pytest.approx(8.0, abs=0.05), "8 s of frames"
    assert info.audio.end_s == pytest.approx(12.0, abs=0.1), "12 s of sound (AAC pads its last frame in Matroska)"


def test_cover_art_is_no_video(tmp_path: Path) -> None:
    info = probe_file(write_song_with_cover(tmp_path / "song.mp3", tiny_audio(2.0, channels=1), sr=16000))
    assert not info.error and info.video is None
    assert info.audio.end_s == pytest.approx(2.0, abs=0.1)


def test_probe_never_raises_on_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video at all " * 100)
    truncated = tmp_path / "cut.mp4"
    whole = write_tiny(tmp_path / "whole.mp4").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 3])
    assert "does not exist" in probe_file(tmp_path / "nope.mp4").error
    assert "empty" in probe_file(empty).error
    assert "cannot decode" in probe_file(text).error
    assert probe_file(truncated).error.startswith("the file is truncated: it ends inside its data, before its index")
    assert not iso_file_cut_off(tmp_path / "whole.mp4") and not iso_file_cut_off(text)


def test_check_lists_every_problem_and_reports_facts_as_facts(tmp_path: Path) -> None:
    good = write_tiny(tmp_path / "good.mp4")
    silent_video = write_tiny(tmp_path / "novoice.mp4", audio=False)
    mono_8k = write_media(tmp_path / "mono.wav", y=tiny_audio(0.5, sr=8000, channels=1), sr=8000)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    clips = (
        Clip("good", "A", video=good, audio=good),
        Clip("novoice", "A", video=silent_video, audio=silent_video),
        Clip("mono", "A", audio=mono_8k),
        Clip("junk", "A", video=junk),
        Clip("gone", "A", audio=tmp_path / "gone.wav"),
    )
    reports = {r.clip_id: r for r in check_manifest(Manifest(("A",), clips))}
    assert reports["good"].ok and reports["good"].video is not None and reports["good"].audio is not None
    assert reports["mono"].ok and reports["mono"].audio.sample_rate_hz == 8000 and reports["mono"].audio.channels == 1
    assert [p for p in reports["novoice"].problems if "has no audio stream" in p and "clear the clip's 'audio'" in p]
    assert "cannot decode" in reports["junk"].problems[0]
    assert "does not exist" in reports["gone"].problems[0]
    assert sum(not r.ok for r in reports.values()) == 3


def test_check_probes_a_shared_file_once(tmp_path: Path, monkeypatch) -> None:
    path = write_tiny(tmp_path / "v.mp4")
    calls = []
    import mvemo.manifests.probe as probe

    real = probe.probe_file
    monkeypatch.setattr(probe, "probe_file", lambda p: calls.append(p) or real(p))
    report = check_clip(Clip("x", "A", video=path, audio=path))
    assert report.ok and calls == [path]


def test_a_broken_file_that_gives_both_modalities_is_one_problem_in_ffmpegs_words_without_its_errno(
    tmp_path: Path,
) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video at all " * 100)
    report = check_clip(Clip("x", "A", video=text, audio=text))
    assert report.problems == [
        f"video and audio file {str(text)!r}: cannot decode (Invalid data found when processing input): the file is"
        " corrupt, truncated or not media; re-encode or replace it"
    ]
    gone = check_clip(Clip("y", "A", video=text, audio=tmp_path / "gone.wav")).problems
    assert len(gone) == 2 and gone[1].startswith("audio file") and "does not exist; fix the path" in gone[1]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_file_cut_after_its_header_is_truncated_and_a_whole_one_is_not(tmp_path: Path, suffix: str) -> None:
    written = write_media(tmp_path / f"w{suffix}", frames=tiny_frames(50), y=tiny_audio(2.0), sr=16000)
    whole = faststart(written, tmp_path / f"fast{suffix}") if suffix == ".mp4" else written
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert probe_file(whole).error == ""
    info = probe_file(cut)
    assert info.video is not None, "the header opens: only reading to the end shows the cut"
    assert "truncated" in info.error and "re-download or re-encode" in info.error
    report = check_clip(Clip("cut", "a", video=cut, audio=cut))
    assert not report.ok and "truncated" in report.problems[0]
