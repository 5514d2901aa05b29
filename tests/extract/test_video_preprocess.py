"""Frame config, cache specs and the per-net preprocessing (I3D 256 -> 224, C3D 128x171 -> 112)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from mvemo.extract.frame_sets import (
    FrameConfig,
    SampledFrames,
    VideoSource,
    center_crop,
    compute_video_features,
    frames112,
    frames224,
    sample_frames,
    video_feature_specs,
)
from mvemo.manifests import Clip, ConfigError
from tests.extract.test_video import counter_frames, read_counter, write_video


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_frames", 0),
        ("n_frames", 2.5),
        ("window_start_s", -1.0),
        ("window_start_s", float("nan")),
        ("window_duration_s", 0.0),
        ("window_duration_s", float("inf")),
        ("short_side_224_px", 200),
        ("resize_112_short_px", 100),
        ("resize_112_long_px", 120),
        ("timeout_s", 0.0),
        ("decode_threads", -1),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        FrameConfig(**{field: value})  # type: ignore[arg-type]


def test_config_round_trips_through_json() -> None:
    config = FrameConfig(n_frames=16, window_duration_s=None, timeout_s=5.0)
    assert FrameConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(ConfigError, match="unknown keys"):
        FrameConfig.from_json({"n_frame": 32})
    toml = tomllib.loads("n_frames = 16\nwindow_duration_s = inf\n")
    assert FrameConfig.from_json(toml) == FrameConfig(n_frames=16, window_duration_s=None)


def test_specs_shapes_and_fingerprints() -> None:
    specs = {s.name: s for s in video_feature_specs(FrameConfig())}
    assert specs["frames224"].row_shape == (32, 224, 224, 3) and specs["frames224"].dtype == "uint8"
    assert specs["frames112"].row_shape == (32, 112, 112, 3)
    assert specs["frames224"].row_bytes == 4_816_896  # the ~4.8 MB a clip that `cache info` states

    def prints(**changes: object) -> dict[str, str]:
        return {s.name: s.fingerprint for s in video_feature_specs(FrameConfig(**changes))}  # type: ignore[arg-type]

    base = prints()
    assert prints(timeout_s=5.0, decode_threads=1, isolate=False) == base  # no effect on the values
    assert prints(n_frames=16)["frames224"] != base["frames224"]
    assert prints(window_duration_s=None)["frames112"] != base["frames112"]
    changed = prints(resize_112_long_px=150)
    assert changed["frames224"] == base["frames224"] and changed["frames112"] != base["frames112"]
    assert prints(short_side_224_px=288)["frames224"] != base["frames224"]


def test_center_crop_offsets_match_ffmpeg_crop() -> None:
    """455x256 -> 224x224 at x=115, y=16: the crop of the I3D reference (``crop=224:224:115:16``)."""
    rows, cols = np.meshgrid(np.arange(256), np.arange(455), indexing="ij")
    frames = np.stack([rows % 256, cols % 256, (cols // 256) * 100], axis=-1).astype(np.uint8)[None]
    crop = center_crop(frames, 224)
    assert crop.shape == (1, 224, 224, 3)
    assert crop[0, 0, 0].tolist() == [16, 115, 0]
    with pytest.raises(ValueError):
        center_crop(frames[:, :200], 224)


def _sample(frames: np.ndarray) -> SampledFrames:
    n = len(frames)
    source = VideoSource("h264", "yuv420p", 1280, 720, 1.0, 0, 25.0, 750, 0.0, 30.0, False)
    return SampledFrames(frames, np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n), (0.0, 30.0), source)


@pytest.mark.parametrize("rotation_deg", [0, 90])
def test_frames112_is_the_centre_of_the_128_by_171_resize(tmp_path: Path, rotation_deg: int) -> None:
    path = write_video(tmp_path / "clip.mp4", counter_frames(50, 72, 128), rotation_deg=rotation_deg)
    sample = sample_frames(path, FrameConfig(n_frames=8, isolate=False))
    portrait = rotation_deg == 90
    assert sample.frames_second is not None
    assert sample.frames_second.shape == ((8, 171, 128, 3) if portrait else (8, 128, 171, 3))
    upright = [np.rot90(f, -1) if portrait else f for f in sample.frames_second]
    assert [read_counter(f) for f in upright] == sample.frame_indices.tolist()
    out = frames112(sample)
    assert out.shape == (8, 112, 112, 3) and out.flags.c_contiguous
    top, left = (sample.frames_second.shape[1] - 112) // 2, (sample.frames_second.shape[2] - 112) // 2
    np.testing.assert_array_equal(out, sample.frames_second[:, top : top + 112, left : left + 112])
    # The same as resizing the working frames with OpenCV's area averaging, give or take the filters.
    size_wh = sample.frames_second.shape[2:0:-1]
    area = np.stack([cv2.resize(f, size_wh, interpolation=cv2.INTER_AREA) for f in sample.frames])
    assert np.abs(area.astype(int) - sample.frames_second).mean() < 4


def test_frames112_needs_the_second_size() -> None:
    with pytest.raises(ValueError, match="second size"):
        frames112(_sample(np.zeros((2, 256, 455, 3), dtype=np.uint8)))


def test_compute_video_features_of_a_clip(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", counter_frames(100, 72, 128))
    config = FrameConfig(isolate=False)
    out = compute_video_features(Clip("c1", "Sad", video=path), config)
    assert set(out) == {"frames224", "frames112"}
    assert out["frames224"].shape == (32, 224, 224, 3) and out["frames112"].shape == (32, 112, 112, 3)
    assert out["frames224"].dtype == out["frames112"].dtype == np.uint8
    assert out["frames224"].flags.c_contiguous
    sample = sample_frames(path, config)
    np.testing.assert_array_equal(out["frames224"], frames224(sample))
    assert sample.frames.shape == (32, 256, 455, 3)
    # A mid-grey bottom half stays mid-grey through both paths (no range or matrix mix-up).
    assert (
        abs(float(out["frames224"][:, -40:].mean()) - 128) < 3
        and abs(float(out["frames112"][:, -20:].mean()) - 128) < 3
    )
