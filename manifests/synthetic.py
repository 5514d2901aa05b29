"""Writing real media files from arrays: the ground of the synthetic demo set and of test fixtures."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from manifests.errors import ConfigError


def write_media(
    path: str | os.PathLike[str],
    *,
    frames: np.ndarray | None = None,
    fps: float = 25.0,
    y: np.ndarray | None = None,
    sr: int = 44100,
    video_codec: str = "libx264",
    audio_codec: str | None = None,
    pix_fmt: str = "yuv420p",
    rotation_deg: int = 0,
) -> Path:
    """Encode frames and/or audio into one container chosen by the file's suffix.

    Parameters
    ----------
    path : path-like
        Output file (``.mp4``, ``.mkv``, ``.m4a``, ``.wav``, ...).
    frames : ndarray, optional
        Video, shape (n_frames, height, width, 3), RGB uint8.
    fps : float
        Frame rate of ``frames``.
    y : ndarray, optional
        Audio, shape (n_samples,) or (n_samples, channels), float32 in [-1, 1].
    sr : int
        Sample rate of ``y`` in Hz.
    video_codec, pix_fmt : str
        Video encoder and the encoded pixel format.
    audio_codec : str, optional
        Audio encoder; default by suffix (PCM for .wav, FLAC for .flac and .ogg, MP3 for .mp3, AAC otherwise).
    rotation_deg : int
        Display rotation written into the video stream's metadata.
    """
    if frames is None and y is None:
        raise ConfigError(f"write_media({str(path)!r}): give frames, audio (y) or both")
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = _add_video(container, frames, fps, video_codec, pix_fmt, rotation_deg) if frames is not None else None
        audio = (
            _add_audio(container, y, sr, audio_codec or _AUDIO_CODECS.get(path.suffix.lower(), "aac")) if y is not None else None
        )
        if video is not None and frames is not None:
            for image in frames:
                container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
            container.mux(video.encode())
        if audio is not None and y is not None:
            _encode_audio(container, audio, y, sr)
    return path


_AUDIO_CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".ogg": "flac", ".mp3": "libmp3lame"}


def _add_video(container: Any, frames: np.ndarray, fps: float, codec: str, pix_fmt: str, rotation_deg: int) -> Any:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be (n, height, width, 3) uint8, got {frames.shape} {frames.dtype}")
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = pix_fmt
    if rotation_deg:
        stream.set_display_rotation(rotation_deg)
    return stream


def _add_audio(container: Any, y: np.ndarray, sr: int, codec: str) -> Any:
    channels = 1 if y.ndim == 1 else y.shape[1]
    stream = container.add_stream(codec, rate=sr)
    stream.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")
    return stream


def _encode_audio(container: Any, stream: Any, y: np.ndarray, sr: int) -> None:
    samples = np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0)
    planar = samples[None, :] if samples.ndim == 1 else samples.T
    block = 4096
    for start in range(0, planar.shape[1], block):
        chunk = np.ascontiguousarray(planar[:, start : start + block])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
        frame.sample_rate = sr
        frame.pts = start
        frame.time_base = Fraction(1, sr)
        for packet in stream.encode(frame):
            container.mux(packet)
    container.mux(stream.encode())


DEMO_CLASSES = ("Exciting", "Fear", "Neutral", "Relaxation", "Sad", "Tension")


def write_demo_set(
    root: str | os.PathLike[str],
    *,
    clips_per_class: int = 4,
    duration_s: float = 2.0,
    fps: float = 25.0,
    size: tuple[int, int] = (160, 120),
    sr: int = 16000,
    seed: int = 0,
) -> list[Path]:
    """Write ``root/<class>/<n>.mp4`` music videos (h264 + AAC) for the six classes of paper 001.

    Each class has its own tone pitch and its own frame colour, jittered per clip
    by a seeded generator, so the files are real media with a learnable label.

    Returns
    -------
    list of Path
        The files written, class by class.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    n_frames = max(1, round(duration_s * fps))
    t = np.arange(round(duration_s * sr)) / sr
    written = []
    for c, name in enumerate(DEMO_CLASSES):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(clips_per_class):
            pitch_hz = 220.0 * 2 ** (c / 2 + rng.normal(0, 0.15))
            y = (0.3 * np.sin(2 * np.pi * pitch_hz * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            colour = np.clip(np.array([40 * c, 255 - 40 * c, 128]) + rng.normal(0, 20, 3), 0, 255)
            frames = np.broadcast_to(colour.astype(np.uint8), (n_frames, height, width, 3))
            written.append(write_media(folder / f"{i}.mp4", frames=frames, fps=fps, y=y, sr=sr))
    return written
