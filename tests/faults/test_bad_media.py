"""The bad-media corpus, generated here, through `manifest check`, `extract` and `cache verify` end to end.

Every case either gives finite features of the right shape or is recorded as failed with a reason that names
the clip; the run goes on and exits 3; a rerun recomputes nothing. The 10-minute and 4K cases are slow.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache import layout
from mvemo.cache.read import Cache
from mvemo.manifests import Clip, Manifest, write_manifest
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.cli.main import cli
from tests.conftest import faststart, tiny_audio, tiny_frames
from tests.extract.test_video import X264_BFRAMES, counter_frames, write_video
from tests.extract.test_video_memory import _write_long

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

OK, FAILED, ABSENT = "ok", "failed", "absent"
AUDIO_SETS, VIDEO_SETS = ("mel", "lld"), ("frames224", "frames112")
FEATURES = "mel,lld,frames"
# Short windows keep the corpus quick; the papers' 30 s window changes nothing a case tests.
CONFIG = "[audio]\nduration_s = 4.0\n[frames]\nn_frames = 8\n"


@dataclass(frozen=True)
class Case:
    """One bad input: its file, what the manifest says it gives, and what each modality must end as."""

    clip_id: str
    file: str
    video: bool  # the manifest gives the file as the clip's video (and as its audio unless ``audio`` is ABSENT)
    audio: str  # OK, FAILED or ABSENT
    frames: str
    reason: str = ""  # a phrase every failure reason of the clip holds
    check_ok: bool = True  # `manifest check` finds nothing wrong


def music_video(path: Path, *, seconds: float = 2.0, channels: int = 2, sr: int = 16000, **options: object) -> Path:
    return write_media(
        path, frames=tiny_frames(int(25 * seconds)), y=tiny_audio(seconds, sr, channels), sr=sr, **options
    )  # type: ignore[arg-type]


def write_corpus(folder: Path) -> list[Case]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.mp4").write_bytes(b"")
    whole = music_video(folder / "whole.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    fast = faststart(folder / "whole.mp4", folder / "whole-fast.mp4").read_bytes()
    (folder / "truncated-index-first.mp4").write_bytes(fast[: len(fast) // 2])
    write_media(folder / "song.mp3", y=tiny_audio(2.0, 44100), sr=44100)
    shutil.move(folder / "song.mp3", folder / "mp3-named.mp4")
    write_media(folder / "no-audio.mp4", frames=tiny_frames(50))
    write_media(folder / "audio-only.mp4", y=tiny_audio(2.0), sr=16000)
    write_media(folder / "silent.mp4", frames=tiny_frames(50), y=np.zeros((32000, 2), np.float32), sr=16000)
    music_video(folder / "half-second.mp4", seconds=0.5)
    write_video(
        folder / "vfr.mp4",
        counter_frames(60),
        pts_ms=[int(1000 * (i / 30) ** 1.3) for i in range(60)],
        options=X264_BFRAMES,
    )
    music_video(folder / "rotated.mp4", rotation_deg=90)
    write_media(folder / "8k-mono.wav", y=tiny_audio(2.0, 8000, 1), sr=8000)
    music_video(folder / "six-channel.mp4", channels=6)
    music_video(folder / "mp3-inside.mp4", audio_codec="mp3", sr=44100)
    (folder / "not-media.mp4").write_text("this is a text file, not a video\n")
    music_video(folder / "spaces ünïcode (1).mp4")
    return [
        Case("zero", "zero.mp4", True, FAILED, FAILED, "file is empty (0 bytes); replace the file", check_ok=False),
        Case("truncated", "truncated.mp4", True, FAILED, FAILED, "truncated: it ends inside its data", check_ok=False),
        Case(
            "truncated-index-first",
            "truncated-index-first.mp4",
            True,
            FAILED,
            FAILED,
            "the file is truncated: its",
            check_ok=False,
        ),
        Case("mp3-named", "mp3-named.mp4", False, OK, ABSENT),
        Case(
            "no-audio",
            "no-audio.mp4",
            True,
            FAILED,
            OK,
            "has no audio stream; clear the clip's 'audio'",
            check_ok=False,
        ),
        Case("audio-only", "audio-only.mp4", False, OK, ABSENT),
        Case("silent", "silent.mp4", True, OK, OK),
        Case("half-second", "half-second.mp4", True, OK, OK),
        Case("vfr", "vfr.mp4", True, ABSENT, OK),
        Case("rotated", "rotated.mp4", True, OK, OK),
        Case("8k-mono", "8k-mono.wav", False, OK, ABSENT),
        Case("six-channel", "six-channel.mp4", True, OK, OK),
        Case("mp3-inside", "mp3-inside.mp4", True, OK, OK),
        Case("not-media", "not-media.mp4", True, FAILED, FAILED, "corrupt, truncated or not", check_ok=False),
        Case("unicode", "spaces ünïcode (1).mp4", True, OK, OK),
    ]


def corpus_manifest(folder: Path, cases: list[Case]) -> Path:
    clips = [
        Clip(
            c.clip_id,
            "ab"[i % 2],
            audio=None if c.audio == ABSENT else folder / c.file,
            video=folder / c.file if c.video else None,
            fold=i % 2,
        )
        for i, c in enumerate(cases)
    ]
    return write_manifest(Manifest(("a", "b"), tuple(clips)), folder / "manifest.csv")


def status_of(cache: Cache, name: str, row: int) -> str:
    if cache.done(name)[row]:
        return OK
    return {layout.FAILED: FAILED, layout.ABSENT: ABSENT}.get(int(cache.status(name)[row]), "to do")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("bad media")
    cases = write_corpus(folder)
    (folder / "config.toml").write_text(CONFIG)
    return corpus_manifest(folder, cases), cases


def test_manifest_check_reports_each_bad_file(corpus: tuple[Path, list[Case]]) -> None:
    manifest, cases = corpus
    result = CliRunner().invoke(cli, ["manifest", "check", str(manifest), "--json"])
    reports = {r["clip_id"]: r for r in json.loads(result.stdout)["reports"]}
    assert result.exit_code == 3
    for case in cases:
        assert (not reports[case.clip_id]["problems"]) == case.check_ok, (case.clip_id, reports[case.clip_id])


def test_extract_records_every_bad_clip_goes_on_and_leaves_a_clean_cache(corpus: tuple[Path, list[Case]]) -> None:
    manifest, cases = corpus
    cache_path = manifest.parent / "cache.h5"
    args = [
        "extract",
        str(manifest),
        "--cache",
        str(cache_path),
        "--features",
        FEATURES,
        "--config",
        str(manifest.parent / "config.toml"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3, result.output
    seen = {}
    with Cache(cache_path) as cache:
        row_of = {clip_id: row for row, clip_id in enumerate(cache.clip_ids)}
        reasons = {(f["feature_set"], f["clip_id"]): f["reason"] for f in cache.failures()}
        for case in cases:
            row = row_of[case.clip_id]
            for sets, expected in ((AUDIO_SETS, case.audio), (VIDEO_SETS, case.frames)):
                for name in sets:
                    seen[(case.clip_id, name)] = status_of(cache, name, row)
                    if expected == OK:
                        values = cache.read_matrix(name, np.array([row]))
                        assert np.isfinite(values).all(), (case.clip_id, name)
                    if expected == FAILED:
                        reason = reasons[(name, case.clip_id)]
                        assert case.clip_id in reason and case.reason in reason, (case.clip_id, name, reason)
                        assert f"failed: {name}, clip {case.clip_id!r}" in result.output
    expected = {
        (c.clip_id, n): e for c in cases for sets, e in ((AUDIO_SETS, c.audio), (VIDEO_SETS, c.frames)) for n in sets
    }
    assert seen == expected
    verify = CliRunner().invoke(cli, ["cache", "verify", str(cache_path)])
    assert verify.exit_code == 0, verify.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 3
    for name in (*AUDIO_SETS, *VIDEO_SETS):  # the table's "computed now" column: nothing computed twice
        assert re.search(rf"^{name}\s+0\s+\d+\s+\d+\s+\d+\s*$", again.stdout, re.M), again.stdout
    with Cache(cache_path) as cache:
        assert {
            (c.clip_id, n): status_of(cache, n, row_of[c.clip_id]) for c in cases for n in (*AUDIO_SETS, *VIDEO_SETS)
        } == seen


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), KiB; 0 once it is gone."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


@pytest.mark.slow(reason="writes and extracts a ten-minute and a 4K video, sampling the memory of every process")
@pytest.mark.parametrize("kind", ["ten-minutes", "4k"])
def test_extract_of_a_long_or_4k_clip_stays_under_2_gib(tmp_path: Path, kind: str) -> None:
    """`manifest check` reads the clip right, and the peak of `mvemo extract`'s memory, with the decoder process it
    starts (their resident sizes summed, sampled every 20 ms), stays under 2 GiB."""
    seconds, (height, width) = (600.0, (120, 160)) if kind == "ten-minutes" else (10.0, (2160, 3840))
    video = _write_long(tmp_path / f"{kind}.mp4", int(seconds), height=height, width=width)
    write_media(tmp_path / "audio.m4a", y=tiny_audio(seconds, 16000), sr=16000)
    manifest = write_manifest(
        Manifest(("a",), (Clip("clip", "a", video=video, audio=tmp_path / "audio.m4a"),)), tmp_path / "m.csv"
    )
    mvemo = Path(sys.executable).parent / "mvemo"
    check = subprocess.run([str(mvemo), "manifest", "check", str(manifest), "--json"], capture_output=True, text=True)
    (report,) = json.loads(check.stdout)["reports"]
    assert check.returncode == 0 and report["ok"], report
    assert (report["video"]["width"], report["video"]["height"]) == (width, height)
    assert abs(report["duration_s"] - seconds) < 1.0
    log = tmp_path / "extract.log"
    with log.open("w") as stderr:  # a file, not a pipe nobody reads while polling: a full pipe would block extract
        run = subprocess.Popen(
            [str(mvemo), "extract", str(manifest), "--cache", str(tmp_path / "c.h5"), "--features", FEATURES],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        peak_kib, deadline = 0, time.monotonic() + 900
        while run.poll() is None and time.monotonic() < deadline:
            peak_kib = max(peak_kib, tree_rss_kib(run.pid))
            time.sleep(0.02)
        if run.poll() is None:
            run.kill()
            pytest.fail(f"extract of the {kind} clip ran past 15 minutes")
    assert run.returncode == 0, log.read_text()
    assert peak_kib < 2 * 1024 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    print(f"{kind}: peak RSS of extract and its decoder {peak_kib / 1024:.0f} MiB")
    with Cache(tmp_path / "c.h5") as cache:
        for name in (*AUDIO_SETS, *VIDEO_SETS):
            assert cache.done(name).all() and np.isfinite(cache.read_matrix(name)).all()
