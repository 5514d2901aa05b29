"""Frame sampling: which frames come back, exactly, for every kind of file; also the fixture helpers of the
other ``test_video_*`` modules.

Every fixture video carries its frame number in its pixels (bits as black and
white stripes in the top half; the bottom half is grey), so a test reads back
WHICH frame it got rather than trusting timestamps.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import cv2
import numpy as np
import pytest

from mvemo.extract.decode import video as video_decode
from mvemo.extract.decode.packets import DecodeParams, PacketIndex
from mvemo.extract.decode.video import read_sample
from mvemo.extract.frame_sets import FrameConfig, sample_frames

BITS = 10
CONFIG = FrameConfig(isolate=False)


def counter_frames(n: int, height: int = 64, width: int = 96) -> np.ndarray:
    """(n, height, width, 3) uint8: frame i shows i in binary, bit b as stripe b of the top half (white = 1)."""
    frames = np.full((n, height, width, 3), 128, dtype=np.uint8)
    edges = np.linspace(0, width, BITS + 1).round().astype(int)
    for i in range(n):
        for b in range(BITS):
            frames[i, : height // 2, edges[b] : edges[b + 1]] = 255 if (i >> b) & 1 else 0
    return frames


def read_counter(frame: np.ndarray) -> int:
    """The number drawn by ``counter_frames`` in an upright RGB frame of any size."""
    height, width = frame.shape[:2]
    edges = np.linspace(0, width, BITS + 1)
    value = 0
    for b in range(BITS):
        left, right = (
            int(edges[b] + 0.3 * (edges[b + 1] - edges[b])),
            int(edges[b + 1] - 0.3 * (edges[b + 1] - edges[b])),
        )
        level = frame[height // 8 : 3 * height // 8, left : max(right, left + 1)].mean()
        if not (level < 60 or level > 195):
            raise AssertionError(
                f"stripe {b} is neither black nor white (mean {level:.0f}): not an upright counter frame"
            )
        value |= int(level > 128) << b
    return value


def write_video(
    path: Path,
    frames: np.ndarray,
    *,
    fps: float = 25.0,
    pts_ms: list[int] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    rotation_deg: int = 0,
    sample_aspect_ratio: Fraction | None = None,
) -> Path:
    """Encode RGB frames with PyAV. ``pts_ms`` gives each frame's time in ms (variable frame rate)."""
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream: Any = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options or {})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if sample_aspect_ratio is not None:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if rotation_deg:
            stream.set_display_rotation(rotation_deg)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


X264_BFRAMES = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:b-pyramid=normal"}


def expected_indices(times_s: list[Fraction], window: tuple[Fraction, Fraction], n: int) -> list[int]:
    """Plain reference: for each segment centre, the frame with the nearest time (earliest on ties), among
    frames from the one on screen at the window's start to the last starting before its end."""
    start, end = window
    first = max(i for i, t in enumerate(times_s) if t <= start) if times_s[0] <= start else 0
    candidates = [i for i in range(first, len(times_s)) if times_s[i] < end]
    out = []
    for k in range(n):
        t = start + (end - start) * (2 * k + 1) / (2 * n)
        out.append(min(candidates, key=lambda i: (abs(times_s[i] - t), i)))
    return out


def plain_reference(path: Path, sample_times_s: np.ndarray, short_side_px: int = 256) -> np.ndarray:
    """Plain reference decode: every frame, no skipping; keep those at ``sample_times_s``, converted as mvemo
    documents (swscale bilinear in the source format to the working size, then rgb24, then rotation)."""
    kept: dict[float, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream: Any = container.streams.video[0]
        wanted = {round(float(t), 6) for t in sample_times_s}
        sar = stream.sample_aspect_ratio or Fraction(1)
        for frame in container.decode(stream):
            t = round(float(frame.pts * stream.time_base), 6)
            if t in wanted and t not in kept:
                display_w = frame.width * Fraction(sar)
                scale = Fraction(short_side_px) / min(display_w, Fraction(frame.height))
                size = (round(display_w * scale), round(frame.height * scale))
                scaled = frame.reformat(
                    width=size[0], height=size[1], format=frame.format.name, interpolation="BILINEAR"
                )
                rgb = scaled.reformat(
                    format="rgb24", src_colorspace=frame.colorspace, src_color_range=frame.color_range
                )
                kept[t] = np.rot90(rgb.to_ndarray(), round((frame.rotation or 0) / 90) % 4)
    return np.stack([kept[round(float(t), 6)] for t in sample_times_s])


@pytest.fixture(scope="module")
def cfr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 frames at 25 fps (4 s), GOPs of 12 with 3 B-frames in a pyramid (some B-frames are not references)."""
    return write_video(tmp_path_factory.mktemp("video") / "cfr.mp4", counter_frames(100), options=X264_BFRAMES)


def test_cfr_indices_are_exact_and_read_back(cfr_clip: Path) -> None:
    sample = sample_frames(cfr_clip, CONFIG)
    times = [Fraction(i, 25) for i in range(100)]
    expected = expected_indices(times, (Fraction(0), Fraction(4)), 32)
    assert sample.window_s == (0.0, 4.0)
    assert sample.frame_indices.tolist() == expected
    assert [read_counter(f) for f in sample.frames] == expected
    np.testing.assert_allclose(sample.timestamps_s, np.array(expected) / 25)
    np.testing.assert_allclose(sample.target_times_s, (np.arange(32) + 0.5) * 4 / 32)
    assert sample.frames.shape == (32, 256, 384, 3) and sample.frames.dtype == np.uint8
    assert sample.source.frame_count == 100 and sample.source.fps == 25.0 and not sample.source.variable_frame_rate
    assert sample.decoded_frames < 100  # the plan skipped work: non-reference B-frames, GOP tails


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_planned_decode_equals_plain_decode_pixel_for_pixel(
    cfr_clip: Path, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decoder (FFmpeg's frame threads), or independent runs split over 2 or 3 decoders in threads."""
    calls: list[int] = []
    split = video_decode._parallel_groups

    def counted(*args: Any) -> list[tuple[int, int]]:
        groups = split(*args)
        calls.append(len(groups))
        return groups

    monkeypatch.setattr(video_decode, "_parallel_groups", counted)
    sample = sample_frames(cfr_clip, FrameConfig(decode_threads=threads, isolate=False))
    assert calls == [0 if threads == 1 else threads]
    np.testing.assert_array_equal(sample.frames, plain_reference(cfr_clip, sample.timestamps_s))


def test_a_plan_that_loses_frames_falls_back_to_decoding_everything(
    cfr_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the plan is wrong (here: targets sent without their reference frames), the decoder drops or flags
    those pictures, and the window is decoded again in full: the result is still exact."""
    good = sample_frames(cfr_clip, CONFIG)

    def targets_only(index: PacketIndex, want: set[int]) -> np.ndarray:
        return np.array([video_decode.KEEP if p in want else video_decode.DROP for p in index.pts], dtype=np.uint8)

    monkeypatch.setattr(video_decode, "_plan", targets_only)
    again = sample_frames(cfr_clip, CONFIG)
    np.testing.assert_array_equal(again.frames, good.frames)
    assert again.decoded_frames > 100  # the lossy attempt, then all 100 frames


def test_parallel_groups_are_contiguous_balanced_and_start_at_runs() -> None:
    plan = np.array([2, 1, 1, 0, 0, 1, 2, 0, 1, 1, 1, 2, 0, 1, 2, 0], dtype=np.uint8)
    index = PacketIndex(packets=[SimpleNamespace(size=100)] * len(plan))
    runs = [(0, 2), (5, 6), (8, 11), (13, 14)]
    assert video_decode._parallel_groups(plan, index, 1) == []
    assert video_decode._parallel_groups(plan, index, 8) == runs  # no more groups than runs
    two = video_decode._parallel_groups(plan, index, 2)
    assert two == [(0, 6), (8, 14)]  # 5 + 6 packets on either side


def test_a_window_too_large_to_buffer_is_read_twice_with_the_same_result(
    cfr_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffered = sample_frames(cfr_clip, CONFIG)
    monkeypatch.setattr("mvemo.extract.decode.packets.PACKET_BUFFER_BYTES", 1000)
    again = sample_frames(cfr_clip, CONFIG)
    np.testing.assert_array_equal(again.frames, buffered.frames)
    assert again.frame_indices.tolist() == buffered.frame_indices.tolist()


def test_every_frame_when_as_many_samples_as_frames(cfr_clip: Path) -> None:
    """Segment centres fall exactly between two frames here: the tie goes to the earlier, so frame k."""
    sample = sample_frames(cfr_clip, FrameConfig(n_frames=100, isolate=False))
    assert sample.frame_indices.tolist() == list(range(100))
    assert [read_counter(f) for f in sample.frames] == list(range(100))


def test_fewer_frames_than_samples_repeat_the_nearest(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", counter_frames(10), fps=5)
    sample = sample_frames(path, CONFIG)
    expected = expected_indices([Fraction(i, 5) for i in range(10)], (Fraction(0), Fraction(2)), 32)
    assert [read_counter(f) for f in sample.frames] == expected == sample.frame_indices.tolist()
    assert np.all(np.diff(sample.frame_indices) >= 0) and len(set(expected)) == 10


def test_variable_frame_rate_is_sampled_by_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pts_ms = np.concatenate([[0], np.cumsum(rng.integers(10, 120, 59))]).tolist()
    path = write_video(tmp_path / "vfr.mp4", counter_frames(60), pts_ms=pts_ms, options=X264_BFRAMES)
    window_s = 2.0
    assert pts_ms[-1] > 2500
    sample = sample_frames(path, FrameConfig(n_frames=16, window_duration_s=window_s, isolate=False))
    expected = expected_indices([Fraction(p, 1000) for p in pts_ms], (Fraction(0), Fraction(2)), 16)
    in_window = sum(p < 2000 for p in pts_ms)
    by_index = [(2 * k + 1) * in_window // 32 for k in range(16)]  # what sampling by frame index would pick
    assert expected != by_index
    assert [read_counter(f) for f in sample.frames] == expected == sample.frame_indices.tolist()
    np.testing.assert_allclose(sample.timestamps_s, [pts_ms[i] / 1000 for i in expected])
    assert sample.source.variable_frame_rate


@pytest.mark.parametrize("rotation_deg", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation_deg: int) -> None:
    path = write_video(tmp_path / f"rot{rotation_deg}.mp4", counter_frames(50), rotation_deg=rotation_deg)
    sample = sample_frames(path, FrameConfig(n_frames=8, isolate=False))
    k = rotation_deg // 90
    assert sample.frames.shape[1:3] == ((384, 256) if k % 2 else (256, 384))
    assert sample.source.rotation_deg == rotation_deg
    upright = [np.rot90(f, -k) for f in sample.frames]  # undo a counterclockwise turn of k quarters
    assert [read_counter(f) for f in upright] == sample.frame_indices.tolist()
    # OpenCV's FFmpeg backend applies the display matrix on its own: the same picture comes out.
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, int(sample.frame_indices[0]))
    ok, bgr = capture.read()
    capture.release()
    assert ok and bgr.shape[:2] == (96, 64)[:: 1 if k % 2 else -1]
    theirs = cv2.resize(bgr[..., ::-1], sample.frames.shape[2:0:-1], interpolation=cv2.INTER_LINEAR)
    assert np.abs(theirs.astype(int) - sample.frames[0]).mean() < 12


def test_odd_width_444(tmp_path: Path) -> None:
    path = write_video(tmp_path / "odd.mp4", counter_frames(30, width=95), pix_fmt="yuv444p")
    sample = sample_frames(path, FrameConfig(n_frames=6, isolate=False))
    assert sample.frames.shape == (6, 256, 380, 3) and sample.source.width_px == 95
    assert [read_counter(f) for f in sample.frames] == sample.frame_indices.tolist()


def test_grayscale_stream(tmp_path: Path) -> None:
    path = write_video(tmp_path / "gray.mkv", counter_frames(30), codec="ffv1", pix_fmt="gray")
    sample = sample_frames(path, FrameConfig(n_frames=6, isolate=False))
    assert sample.source.pix_fmt == "gray"
    assert np.array_equal(sample.frames[..., 0], sample.frames[..., 1]) and np.array_equal(
        sample.frames[..., 1], sample.frames[..., 2]
    )
    assert [read_counter(f) for f in sample.frames] == sample.frame_indices.tolist()


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "suffix", "options"),
    [
        ("libx264", "yuv420p10le", ".mp4", X264_BFRAMES),
        ("libx265", "yuv420p", ".mp4", {"x265-params": "keyint=12:min-keyint=12:bframes=3:log-level=error"}),
        ("mpeg4", "yuv420p", ".avi", {"bf": "2", "g": "12"}),
        ("mpeg2video", "yuv420p", ".mpg", {"bf": "2", "g": "12"}),
        ("libvpx-vp9", "yuv420p", ".webm", {"g": "12", "deadline": "realtime", "cpu-used": "8"}),
    ],
)
def test_codecs_give_the_exact_frames(
    tmp_path: Path, codec: str, pix_fmt: str, suffix: str, options: dict[str, str]
) -> None:
    path = write_video(tmp_path / f"clip{suffix}", counter_frames(60), codec=codec, pix_fmt=pix_fmt, options=options)
    sample = sample_frames(path, FrameConfig(n_frames=20, isolate=False))
    assert [read_counter(f) for f in sample.frames] == sample.frame_indices.tolist()
    assert sample.frame_indices.tolist() == expected_indices(
        [Fraction(i, 25) for i in range(60)], (Fraction(0), Fraction(60, 25)), 20
    )
    np.testing.assert_array_equal(sample.frames, plain_reference(path, sample.timestamps_s))


def test_reduced_resolution_decode_where_the_codec_has_one(tmp_path: Path) -> None:
    """MPEG-4 part 2 at 1024x576 decodes at 1/2 (short side 288 >= 256): the right frames, at the working size."""
    path = write_video(
        tmp_path / "big.avi", counter_frames(30, 576, 1024), codec="mpeg4", options={"bf": "2", "g": "12"}
    )
    sample = sample_frames(path, FrameConfig(n_frames=6, isolate=False))
    assert sample.frames.shape == (6, 256, 455, 3) and (sample.source.width_px, sample.source.height_px) == (1024, 576)
    assert [read_counter(f) for f in sample.frames] == sample.frame_indices.tolist()
    full = plain_reference(path, sample.timestamps_s)
    assert 0 < np.abs(full.astype(int) - sample.frames).mean() < 3  # a different, equally valid downscale


def test_open_gop_leading_pictures(tmp_path: Path) -> None:
    """Open GOPs: B-frames shown before their keyframe refer to the previous GOP. Every frame, and single
    frames reached by seeking, must come out exact."""
    options = {"x264-params": "keyint=10:min-keyint=10:scenecut=0:bframes=3:b-adapt=0:open-gop=1"}
    path = write_video(tmp_path / "open.mp4", counter_frames(60), options=options)
    with av.open(str(path)) as container:
        packets = [(int(p.pts or 0), p.is_keyframe) for p in container.demux(video=0) if p.size]
    keys = [i for i, (_, key) in enumerate(packets) if key]
    leading = [pts for i, (pts, _) in enumerate(packets) if any(k < i and pts < packets[k][0] for k in keys[1:])]
    assert leading, "the encoder made no leading pictures: the fixture tests nothing"
    every = sample_frames(path, FrameConfig(n_frames=60, isolate=False))
    assert [read_counter(f) for f in every.frames] == list(range(60))
    tb = Fraction(1, 12800)  # libx264 in mp4 at 25 fps
    for frame in sorted({round(p * tb * 25) for p in leading})[:4]:
        one = read_sample(path, DecodeParams(n_frames=1, window_start_s=(frame - 0.4) / 25, window_duration_s=0.8 / 25))
        assert read_counter(one.frames[0]) == frame
        np.testing.assert_allclose(one.timestamps_s, [frame / 25])


def test_window_start_seeks_and_keeps_exact_times(cfr_clip: Path) -> None:
    sample = sample_frames(cfr_clip, FrameConfig(n_frames=10, window_start_s=2.0, window_duration_s=1.0, isolate=False))
    assert sample.window_s == (2.0, 3.0)
    expected = expected_indices([Fraction(i, 25) for i in range(100)], (Fraction(2), Fraction(3)), 10)
    assert [read_counter(f) for f in sample.frames] == expected
    np.testing.assert_allclose(sample.timestamps_s, np.array(expected) / 25)


def test_reading_stops_at_the_window_end(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", counter_frames(600, 32, 48), fps=10)  # 60 s
    sample = sample_frames(path, FrameConfig(n_frames=8, isolate=False))
    assert sample.window_s == (0.0, 30.0)
    assert 300 <= sample.source.frame_count < 320  # the 30 s window, plus the B-frame reorder delay
    expected = expected_indices([Fraction(i, 10) for i in range(600)], (Fraction(0), Fraction(30)), 8)
    assert [read_counter(f) for f in sample.frames] == expected
    whole = sample_frames(path, FrameConfig(n_frames=8, window_duration_s=None, isolate=False))
    assert whole.window_s == (0.0, 60.0) and whole.source.frame_count == 600


def test_untimed_raw_stream_is_timed_by_order(tmp_path: Path) -> None:
    path = write_video(tmp_path / "raw.h264", counter_frames(40), options=X264_BFRAMES)
    sample = sample_frames(path, FrameConfig(n_frames=8, isolate=False))
    assert sample.source.timestamps_from_order
    expected = expected_indices([Fraction(i, 25) for i in range(40)], (Fraction(0), Fraction(40, 25)), 8)
    assert [read_counter(f) for f in sample.frames] == expected == sample.frame_indices.tolist()


def test_non_square_pixels_are_shown_at_their_display_aspect(tmp_path: Path) -> None:
    path = write_video(tmp_path / "anamorphic.mp4", counter_frames(20, 64, 64), sample_aspect_ratio=Fraction(16, 9))
    sample = sample_frames(path, FrameConfig(n_frames=4, isolate=False))
    assert sample.frames.shape[1:3] == (256, 455)  # 64x64 coded, 16:9 displayed
    assert sample.source.sample_aspect_ratio == pytest.approx(16 / 9)


def test_real_clip_isolated_equals_in_process_and_plain_reference(mved_sample: Path) -> None:
    path = sorted(mved_sample.glob("*/*.mp4"))[0]
    ours = sample_frames(path, FrameConfig(isolate=False))
    isolated = sample_frames(path, FrameConfig())
    np.testing.assert_array_equal(ours.frames, isolated.frames)
    np.testing.assert_array_equal(ours.frames_second, isolated.frames_second)
    np.testing.assert_array_equal(ours.timestamps_s, isolated.timestamps_s)
    assert ours.source == isolated.source and ours.window_s == isolated.window_s
    np.testing.assert_array_equal(ours.frames, plain_reference(path, ours.timestamps_s))
    assert ours.decoded_frames < ours.source.frame_count
