"""Broken inputs give a ``MediaError`` naming the clip, the reason and the fix; hung or crashing decoders cost
one clip; a file without pictures is told apart from a broken one."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mvemo.extract.decode.packets import DecodeParams
from mvemo.extract.decode.worker import FrameWorker, WorkerError, kill_grace_s
from mvemo.extract.frame_sets import (
    DecodeTimeoutError,
    FrameConfig,
    NoVideoStreamError,
    compute_video_features,
    sample_frames,
)
from mvemo.manifests import Clip, MediaError
from mvemo.manifests.synthetic import write_media
from tests.conftest import tiny_audio
from tests.extract.test_video import counter_frames, write_video

IN_PROCESS = FrameConfig(n_frames=8, isolate=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("errors") / "ok.mp4", counter_frames(100))


def _truncate(path: Path, fraction: float = 0.6) -> Path:
    out = path.with_name("cut_" + path.name)
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def _error(path: Path, config: FrameConfig = IN_PROCESS) -> MediaError:
    with pytest.raises(MediaError) as info:
        sample_frames(path, config, clip_id="Sad/7.mp4")
    message = str(info.value)
    assert message.startswith("clip 'Sad/7.mp4' (") and ";" in message  # names the clip; a fix follows the reason
    return info.value


def test_missing_empty_directory_and_garbage(tmp_path: Path) -> None:
    assert "does not exist; fix the path" in str(_error(tmp_path / "nope.mp4"))
    (tmp_path / "empty.mp4").touch()
    assert "empty (0 bytes)" in str(_error(tmp_path / "empty.mp4"))
    assert "not a regular file" in str(_error(tmp_path))
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    assert "cannot open as media" in str(_error(tmp_path / "noise.mp4"))


def test_truncated_mp4_without_its_index(clip: Path) -> None:
    """A plain mp4 keeps its index (moov) at the end: cut, it does not open."""
    assert "the file is truncated: it ends inside its data, before its index" in str(_error(_truncate(clip)))


def test_truncated_faststart_mp4(tmp_path: Path) -> None:
    """With the index first, the cut file opens; the frames it lists are not all there."""
    path = write_video(tmp_path / "fast.mp4", counter_frames(100), container_options={"movflags": "faststart"})
    assert "truncated: its index lists 100 video frames" in str(_error(_truncate(path)))


def test_truncated_matroska(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", counter_frames(250, 32, 48))  # 10 s
    message = str(_error(_truncate(path, 0.5), FrameConfig(n_frames=8, isolate=False)))
    assert "truncated: its video ends at" in message and "declares 10.00 s" in message


def test_corrupt_data_in_the_middle(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", counter_frames(100))
    data = bytearray(path.read_bytes())
    at = int(len(data) * 0.3)  # inside the frames (the index sits at the end)
    data[at : at + 200] = np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    message = str(_error(tmp_path / "bad.mp4", FrameConfig(n_frames=100, isolate=False)))
    assert "corrupt video data near" in message and "Invalid data found" in message and "Errno" not in message


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_longer_than_the_video_is_not_truncation(tmp_path: Path, suffix: str) -> None:
    path = write_media(tmp_path / f"clip{suffix}", frames=counter_frames(50), fps=25, y=tiny_audio(6.0), sr=16000)
    sample = sample_frames(path, IN_PROCESS)
    assert sample.window_s == (0.0, 2.0)


@pytest.mark.parametrize("suffix", [".m4a", ".wav"])
def test_no_video_stream_is_its_own_error(tmp_path: Path, suffix: str) -> None:
    path = write_media(tmp_path / f"song{suffix}", y=tiny_audio(), sr=16000)
    error = _error(path)
    assert isinstance(error, NoVideoStreamError)
    assert "no video stream" in str(error) and "audio-only" in str(error)


def test_clip_without_video_in_the_manifest() -> None:
    with pytest.raises(NoVideoStreamError, match=r"'song1'.*no video file"):
        compute_video_features(Clip("song1", "Sad", audio=Path("song1.wav")), IN_PROCESS)


def test_window_past_the_end(clip: Path) -> None:
    assert "lies past the end of the video" in str(_error(clip, FrameConfig(window_start_s=10.0, isolate=False)))


def test_in_process_deadline_is_checked_between_packets(clip: Path) -> None:
    error = _error(clip, FrameConfig(timeout_s=1e-9, isolate=False))
    assert isinstance(error, DecodeTimeoutError) and "timeout_s=1e-09" in str(error)


def test_errors_cross_the_process_boundary_with_their_type(clip: Path, tmp_path: Path) -> None:
    worker = FrameWorker()
    try:
        audio = write_media(tmp_path / "song.m4a", y=tiny_audio(), sr=16000)
        with pytest.raises(NoVideoStreamError, match="'a1'"):
            worker.sample(audio, DecodeParams(timeout_s=30), clip_id="a1")
        pid = worker.pid
        with pytest.raises(DecodeTimeoutError):  # the child's own deadline: it answers and keeps serving
            worker.sample(clip, DecodeParams(timeout_s=1e-9))
        assert worker.pid == pid
        sample = worker.sample(clip, DecodeParams(n_frames=4, timeout_s=30))
        assert sample.frames.shape == (4, 256, 384, 3) and worker.pid == pid
    finally:
        worker.close()
    assert worker.pid is None


_READY = (
    "import json, os, struct, sys; b = json.dumps({'ready': True}).encode();"
    " sys.stdout.buffer.write(struct.pack('>I', len(b)) + b); sys.stdout.flush();"
)


@pytest.mark.heavy
@pytest.mark.timed
def test_a_hung_decoder_is_killed_at_the_timeout(clip: Path) -> None:
    """A child stuck inside a call (here: asleep) never answers; the parent kills it and the next clip gets a
    fresh child."""
    worker = FrameWorker([sys.executable, "-c", _READY + " import time; time.sleep(600)"])
    try:
        worker._ensure_started()
        pid = worker.pid
        assert pid is not None
        began = time.monotonic()
        with pytest.raises(DecodeTimeoutError, match=r"clip 'hung'.*timeout_s=0\.5.*process was stopped"):
            worker.sample(clip, DecodeParams(timeout_s=0.5), clip_id="hung")
        waited = time.monotonic() - began
        assert 0.5 + kill_grace_s(0.5) - 0.05 <= waited < 0.5 + kill_grace_s(0.5) + 2.0
        assert worker.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        worker.close(kill=True)


def test_a_crashing_decoder_fails_one_clip(clip: Path) -> None:
    crash = _READY + " import signal; sys.stdin.readline(); os.kill(os.getpid(), signal.SIGSEGV)"
    worker = FrameWorker([sys.executable, "-c", crash])
    try:
        with pytest.raises(MediaError, match=r"clip 'c9'.*decoder process died \(signal SIGSEGV\)"):
            worker.sample(clip, DecodeParams(timeout_s=10), clip_id="c9")
        assert worker.pid is None
    finally:
        worker.close(kill=True)


def test_a_worker_that_does_not_start_is_a_bug_report() -> None:
    worker = FrameWorker([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(WorkerError, match="did not start"):
        worker._ensure_started()


def test_an_interrupted_request_does_not_leave_a_half_read_answer(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = FrameWorker()
    try:
        worker._ensure_started()
        assert worker.pid is not None

        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr("mvemo.extract.decode.worker._read_into", interrupted)
        with pytest.raises(KeyboardInterrupt):
            worker.sample(clip, DecodeParams(n_frames=4, timeout_s=30))
        assert worker.pid is None  # killed: its answer will never be mistaken for the next clip's
        monkeypatch.undo()
        assert worker.sample(clip, DecodeParams(n_frames=4, timeout_s=30)).frames.shape[0] == 4
    finally:
        worker.close()


@pytest.mark.heavy
@pytest.mark.timed
def test_audio_decodes_in_the_decoder_process_as_here_and_a_hang_is_cut(tmp_path: Path) -> None:
    from mvemo.extract.decode.audio import AudioWindow, decode_audio
    from mvemo.extract.decode.worker import read_audio

    song = write_media(tmp_path / "song.mp4", y=tiny_audio(2.0, 44100), sr=44100)
    window = AudioWindow(duration_s=1.5)
    here, there = decode_audio(song, window), read_audio(song, window, clip_id="song", timeout_s=10)
    np.testing.assert_array_equal(there.y, here.y)
    assert (there.sr, there.valid_s) == (here.sr, here.valid_s)
    with pytest.raises(MediaError, match=r"clip 'gone'.*audio file does not exist"):
        read_audio(tmp_path / "gone.mp4", window, clip_id="gone", timeout_s=10)
    worker = FrameWorker([sys.executable, "-c", _READY + " import time; time.sleep(600)"])
    try:
        began = time.monotonic()
        with pytest.raises(DecodeTimeoutError, match=r"clip 'hung'.*timeout_s=0\.5.*process was stopped"):
            worker.decode_audio(song, window, clip_id="hung", timeout_s=0.5)
        assert time.monotonic() - began < 0.5 + kill_grace_s(0.5) + 2.0
        assert worker.pid is None
    finally:
        worker.close(kill=True)


def test_the_audio_timeout_is_configured_and_changes_no_fingerprint(tmp_path: Path) -> None:
    from mvemo.extract.features import FeatureConfigs
    from mvemo.manifests import ConfigError
    from mvemo.pipeline.config import feature_configs

    config = tmp_path / "c.toml"
    config.write_text("[audio]\nduration_s = 5.0\ntimeout_s = 7.5\n")
    configs = feature_configs(config)
    assert configs.audio_timeout_s == 7.5 and configs.mel.audio_window.duration_s == 5.0
    config.write_text("[audio]\nduration_s = 5.0\n")
    default = feature_configs(config)
    assert default.audio_timeout_s == 60.0
    assert [s.fingerprint for s in configs.specs(["mel", "lld"])] == [
        s.fingerprint for s in default.specs(["mel", "lld"])
    ]
    with pytest.raises(ConfigError, match=r"\[audio\] timeout_s=0"):
        FeatureConfigs(audio_timeout_s=0)
    config.write_text('[audio]\ntimeout_s = "60"\n')
    with pytest.raises(ConfigError, match=r"\[audio\] timeout_s='60': expected seconds > 0"):
        feature_configs(config)
    config.write_text("[audio]\ntimeout = 60\n")
    with pytest.raises(ConfigError, match=r"allowed keys are \['duration_s', 'offset_s', 'timeout_s'\]"):
        feature_configs(config)
