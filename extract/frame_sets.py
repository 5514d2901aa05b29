"""Stage one's video input: frames at uniform times of each clip, preprocessed for I3D and C3D.

Sources of the defaults:

- Paper 001 (Pandeya et al., Sensors 2021) feeds C3D and I3D 32 RGB frames taken
  at uniform intervals across each ~30 s music video.
- I3D (Carreira & Zisserman 2017; ``deepmind/kinetics-i3d`` README, and
  ``../shared/weights/README.md``): resize so the shorter side is 256
  (bilinear), centre crop 224x224; the net then scales pixels to [-1, 1].
- C3D (Tran et al. 2015, section 3.1): frames resized to 128x171, crops of
  112x112 (centre crop at test time). The Sports-1M port takes 0-255 RGB with no
  mean subtraction.

The cache keeps uint8 RGB (``frames224``: 32x224x224x3 = 4.8 MB a clip;
``frames112``: 1.2 MB): any scaling or mean subtraction belongs to the weights
in use, so it lives in the net's config, and fine-tuning never decodes video
again. Decoding (which frames, how fast, how robustly) is in
``extract.decode.video``; the per-clip timeout's child process in
``extract.decode.worker``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.extract.decode.frames import VideoSource
from mvemo.extract.decode.nvdec import DECODERS
from mvemo.extract.decode.packets import DecodeParams, DecodeTimeoutError, NoVideoStreamError
from mvemo.extract.decode.video import SampledFrames, read_sample
from mvemo.extract.decode.worker import worker_for_this_thread
from mvemo.extract.faces.sets import FaceConfig, compute_face_sets
from mvemo.manifests.errors import require
from mvemo.manifests.schema import Clip
from mvemo.manifests.steps import step

__all__ = [
    "DecodeTimeoutError",
    "FrameConfig",
    "NoVideoStreamError",
    "SampledFrames",
    "VideoSource",
    "center_crop",
    "compute_video_features",
    "frames112",
    "frames224",
    "sample_frames",
    "sampling_record",
    "video_feature_specs",
]

EXTRACTOR_VERSION = "1"
CROP_224_PX = 224
CROP_112_PX = 112


@dataclass(frozen=True)
class FrameConfig:
    """Which frames of a clip are sampled and how they are shaped for the video nets.

    Parameters
    ----------
    n_frames : int
        Frames per clip (paper 001: 32), taken at the centres of ``n_frames``
        equal segments of the window (TSN's test-time sampling: uniform, and
        never the first or last frame, which are often black fades). Each is the
        frame whose presentation time is nearest, so variable frame rates are
        sampled by time, not by index.
    window_start_s : float
        Start of the sampled window, seconds from the file's time zero.
    window_duration_s : float or None
        Its length; cut to the video's end. The default 30 s equals the audio
        window (``extract.decode.audio.AudioWindow``), so both modalities see the same
        part of a long video; None (``inf`` in a TOML file, which has no null)
        samples to the end of the video.
    short_side_224_px : int
        I3D: the shorter display side is resized to this (bilinear), then the
        centre 224x224 is cropped (Carreira & Zisserman: 256).
    resize_112_short_px, resize_112_long_px : int
        C3D: frames are resized to these sides, then the centre 112x112 is
        cropped. Tran et al.: 128x171 (height x width, aspect not kept, as the
        Sports-1M weights were trained); a portrait video gets 171x128.
    timeout_s : float
        Per-clip limit on decoding, after which the clip fails with
        ``DecodeTimeoutError`` and the run goes on. Decoding a 30 s 1080p clip
        takes about 1-3 s of one core here; 4K or a long window more.
    decode_threads : int
        Threads decoding one clip; 0: one per core (at most 4). The sampled
        runs of packets that start at a keyframe are independent, so they are
        split over that many single-threaded decoders (1.5-1.8x on 2 cores,
        where FFmpeg's frame threads gave 1.14x); a plan of one run uses
        FFmpeg's frame threads instead. Use 1 when a process pool already
        keeps every core busy.
    isolate : bool
        Decode in a child process (default): a hung decoder is killed at
        ``timeout_s`` and a decoder crash fails one clip. False decodes in this
        process, checking the clock between packets only (tests, benchmarks).
    decoder : str
        ``cpu`` (default): every clip on the CPU; ``auto``: h264, hevc and vp9 on the GPU's video decoder
        (NVDEC) where it works in the process that decodes, everything else on the CPU; ``nvdec``: as ``auto``,
        and refused where NVDEC does not work. NVDEC's pictures of these codecs are FFmpeg's to the bit
        (``extract.decode.nvdec``; equal on an H200 for every clip tried), so the frames are the same either way.
        The CPU is the default because it measured faster: on an H200 box a sampled clip took 0.17 s on NVDEC
        against 0.08 s on the CPU (docs/results.md).

    ``timeout_s``, ``decode_threads``, ``isolate`` and ``decoder`` do not change the frames,
    so they stay out of the cache's fingerprints.
    """

    n_frames: int = 32
    window_start_s: float = 0.0
    window_duration_s: float | None = 30.0
    short_side_224_px: int = 256
    resize_112_short_px: int = 128
    resize_112_long_px: int = 171
    timeout_s: float = 60.0
    decode_threads: int = 0
    isolate: bool = True
    decoder: str = "cpu"

    def __post_init__(self) -> None:
        require(
            isinstance(self.n_frames, int) and 1 <= self.n_frames <= 1024,
            f"n_frames={self.n_frames!r}: expected an integer in 1..1024 (paper 001: 32)",
        )
        require(
            math.isfinite(self.window_start_s) and self.window_start_s >= 0,
            f"window_start_s={self.window_start_s}: expected a finite number of seconds >= 0",
        )
        require(
            self.window_duration_s is None or (math.isfinite(self.window_duration_s) and self.window_duration_s > 0),
            f"window_duration_s={self.window_duration_s}: expected seconds > 0, or None for the whole video",
        )
        require(
            isinstance(self.short_side_224_px, int) and CROP_224_PX <= self.short_side_224_px <= 4096,
            f"short_side_224_px={self.short_side_224_px!r}: expected an integer in {CROP_224_PX}..4096 (I3D: 256)",
        )
        require(
            isinstance(self.resize_112_short_px, int)
            and isinstance(self.resize_112_long_px, int)
            and CROP_112_PX <= self.resize_112_short_px <= self.resize_112_long_px <= 4096,
            f"resize_112_short_px={self.resize_112_short_px!r}, resize_112_long_px={self.resize_112_long_px!r}:"
            f" expected integers with {CROP_112_PX} <= short <= long <= 4096 (C3D: 128 and 171)",
        )
        require(
            math.isfinite(self.timeout_s) and self.timeout_s > 0,
            f"timeout_s={self.timeout_s}: expected seconds > 0",
        )
        require(
            isinstance(self.decode_threads, int) and 0 <= self.decode_threads <= 64,
            f"decode_threads={self.decode_threads!r}: expected an integer in 0..64 (0: FFmpeg chooses)",
        )
        require(self.decoder in DECODERS, f"decoder={self.decoder!r}: expected one of {', '.join(DECODERS)}")

    @property
    def decode_params(self) -> DecodeParams:
        return DecodeParams(
            n_frames=self.n_frames,
            window_start_s=self.window_start_s,
            window_duration_s=self.window_duration_s,
            short_side_px=self.short_side_224_px,
            second_size_px=(self.resize_112_short_px, self.resize_112_long_px),
            threads=self.decode_threads,
            timeout_s=self.timeout_s,
            decoder=self.decoder,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameConfig:
        """The inverse of ``to_json`` (also reads a TOML table: ``window_duration_s = inf`` is None);
        unknown keys raise ``ConfigError``."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        require(not unknown, f"frame config: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        values = dict(data)
        if values.get("window_duration_s") == math.inf:
            values["window_duration_s"] = None
        return cls(**values)


def sampling_record(config: FrameConfig) -> dict[str, Any]:
    """The fields that decide which frames are sampled and at what working size (fingerprinted)."""
    return {
        "n_frames": config.n_frames,
        "window_start_s": config.window_start_s,
        "window_duration_s": config.window_duration_s,
        "sampling": "segment centres, nearest presentation time",
        "short_side_224_px": config.short_side_224_px,
        "decode_resize": "lowres where the codec has it, then swscale bilinear in the source pixel format, then rgb24",
    }


def video_feature_specs(config: FrameConfig) -> list[FeatureSpec]:
    """The cache's feature sets ``frames224`` (n_frames x 224 x 224 x 3 uint8) and ``frames112`` (x 112 x 112)."""
    record = sampling_record(config)
    return [
        FeatureSpec(
            "frames224",
            (config.n_frames, CROP_224_PX, CROP_224_PX, 3),
            "uint8",
            "mvemo.frames224",
            EXTRACTOR_VERSION,
            {**record, "crop_px": CROP_224_PX},
        ),
        FeatureSpec(
            "frames112",
            (config.n_frames, CROP_112_PX, CROP_112_PX, 3),
            "uint8",
            "mvemo.frames112",
            EXTRACTOR_VERSION,
            {
                **record,
                "resize_112_short_px": config.resize_112_short_px,
                "resize_112_long_px": config.resize_112_long_px,
                "resize_112": "swscale bilinear from the working-size picture, then rgb24",
                "crop_px": CROP_112_PX,
            },
        ),
    ]


def sample_frames(path: str | os.PathLike[str], config: FrameConfig, *, clip_id: str = "") -> SampledFrames:
    """``config.n_frames`` RGB frames at uniform times of the video's window, with their timestamps.

    Parameters
    ----------
    path : path-like
        A media file with a video stream (any container and codec FFmpeg reads).
    config : FrameConfig
    clip_id : str
        Named in error messages.

    Returns
    -------
    SampledFrames
        ``frames`` (n_frames, H, W, 3) uint8 RGB in display orientation and
        aspect with min(H, W) == ``config.short_side_224_px``; ``frames_second``
        the same pictures at 128x171 (``resize_112_*_px``); ``timestamps_s``
        (n_frames,) presentation times in seconds; ``frame_indices``; the source's facts.

    Raises
    ------
    MediaError
        Naming the clip, the reason and the fix, for a missing, empty, corrupt
        or truncated file. ``NoVideoStreamError`` (a ``MediaError``) when the file
        has no video stream; ``DecodeTimeoutError`` past ``config.timeout_s``.
    """
    if config.isolate:
        return worker_for_this_thread().sample(path, config.decode_params, clip_id=clip_id)
    return read_sample(path, config.decode_params, clip_id=clip_id)


def center_crop(frames: np.ndarray, size_px: int) -> np.ndarray:
    """The centre ``size_px`` x ``size_px`` of frames (..., H, W, C); offsets floor((H - size) / 2) as FFmpeg's crop."""
    height, width = frames.shape[-3:-1]
    if height < size_px or width < size_px:
        raise ValueError(f"cannot crop {size_px}x{size_px} from {height}x{width} frames")
    top, left = (height - size_px) // 2, (width - size_px) // 2
    return frames[..., top : top + size_px, left : left + size_px, :]


def frames224(sample: SampledFrames) -> np.ndarray:
    """I3D input as cached: (n_frames, 224, 224, 3) uint8 RGB (the working frames already have the 256 short side)."""
    return np.ascontiguousarray(center_crop(sample.frames, CROP_224_PX))


def frames112(sample: SampledFrames) -> np.ndarray:
    """C3D input as cached: (n_frames, 112, 112, 3) uint8 RGB, the centre of each frame resized to 128x171
    (171x128 when portrait; ``sample.frames_second``, made by the decoder's swscale from the working-size
    picture, bilinear and antialiased)."""
    if sample.frames_second is None:
        raise ValueError("the sample has no second size: sample it with a FrameConfig (resize_112_*_px)")
    return np.ascontiguousarray(center_crop(sample.frames_second, CROP_112_PX))


def compute_video_features(clip: Clip, config: FrameConfig, faces: FaceConfig | None = None) -> dict[str, np.ndarray]:
    """The cached video feature sets of one clip: {"frames224": (n, 224, 224, 3), "frames112": (n, 112, 112, 3)} uint8,
    and with ``faces`` the sets of ``extract.faces.sets`` from the same frames at their working size.

    Raises
    ------
    MediaError
        As ``sample_frames``; ``NoVideoStreamError`` also when the manifest gives the clip no video file.
    """
    if clip.video is None:
        raise NoVideoStreamError(
            f"clip {clip.clip_id!r}: the manifest gives no video file; it is audio-only, so skip its video features"
        )
    with step("decode video"):
        sample = sample_frames(clip.video, config, clip_id=clip.clip_id)
    with step("video features"):
        sets = {"frames224": frames224(sample), "frames112": frames112(sample)}
        return sets if faces is None else sets | compute_face_sets(sample.frames, faces)
