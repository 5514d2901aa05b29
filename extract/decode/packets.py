"""The first pass over a video file: open it, find its video stream, and index its packets (no decoding).

Also the errors and the per-clip deadline every decoding step shares. The index gives each
packet's presentation time, keyframe flag and duration, so the sample can be planned exactly,
and shows a file cut off before the end its header declares.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from mvemo.manifests.errors import MediaError
from mvemo.manifests.probe import CUT_OFF_REASON, declared_end_s, decoder_reason, iso_file_cut_off, picture_streams


@dataclass(frozen=True)
class DecodeParams:
    """What ``read_sample`` needs; ``extract.frame_sets.FrameConfig`` documents each field."""

    n_frames: int = 32
    window_start_s: float = 0.0
    window_duration_s: float | None = 30.0
    short_side_px: int = 256
    second_size_px: tuple[int, int] | None = (128, 171)
    threads: int = 0
    timeout_s: float | None = None
    decoder: str = "cpu"


PACKET_BUFFER_BYTES = 64 * 2**20


class NoVideoStreamError(MediaError):
    """The file opens but has no video stream (cover art does not count): the clip is audio-only or wrong."""


class DecodeTimeoutError(MediaError):
    """Decoding one clip took longer than the configured ``timeout_s``."""


def describe_clip(path: str | os.PathLike[str], clip_id: str = "") -> str:
    return f"clip {clip_id!r} ({path})" if clip_id else str(path)


def check_file(path: Path, clip_id: str = "", kind: str = "video") -> None:
    """Raise ``MediaError`` for a missing, non-regular or empty ``kind`` file, before any decoder sees it."""
    if not path.exists():
        raise MediaError(f"{describe_clip(path, clip_id)}: {kind} file does not exist; fix the path")
    if not path.is_file():
        raise MediaError(f"{describe_clip(path, clip_id)}: not a regular file; give the {kind} file's path")
    if path.stat().st_size == 0:
        raise MediaError(f"{describe_clip(path, clip_id)}: {kind} file is empty (0 bytes); replace the file")


class Cancelled(Exception):
    """Raised in a parallel decoder after another one failed; never leaves ``read_sample``."""


class Deadline:
    def __init__(self, timeout_s: float | None, path: Path, clip_id: str) -> None:
        self.timeout_s = timeout_s
        self.end = math.inf if timeout_s is None else time.monotonic() + timeout_s
        self.path, self.clip_id = path, clip_id
        self.cancelled = False

    def cancel(self) -> None:
        """Make every later ``check`` raise (a parallel decoder failed; the others stop)."""
        self.cancelled = True

    def check(self, ticks: int | None = None, tb: Fraction | None = None) -> None:
        """Raise ``DecodeTimeoutError`` once past the deadline; ``ticks * tb`` says where in the video."""
        if self.cancelled:
            raise Cancelled
        if time.monotonic() > self.end:
            where = (
                f" (stopped near {float(ticks * tb):.1f} s of the video)"
                if ticks is not None and tb is not None
                else ""
            )
            raise DecodeTimeoutError(
                f"{describe_clip(self.path, self.clip_id)}:"
                f" decoding took longer than timeout_s={self.timeout_s:g}{where};"
                " raise timeout_s if the file is fine but long or large, else re-encode or replace it"
            )


def open_container(path: Path, clip_id: str, hwaccel: Any = None) -> Any:
    """The file opened for reading (its video decoded on ``hwaccel``'s device, where given)."""
    try:
        return av.open(str(path), metadata_errors="ignore", hwaccel=hwaccel)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        if iso_file_cut_off(path):
            raise MediaError(f"{describe_clip(path, clip_id)}: {CUT_OFF_REASON}") from None
        raise MediaError(
            f"{describe_clip(path, clip_id)}: cannot open as media ({decoder_reason(err)}):"
            " the file is corrupt, truncated or not a video; re-encode or replace it"
        ) from None


def video_stream(container: Any, path: Path, clip_id: str) -> Any:
    streams = picture_streams(container)
    if not streams:
        cover = " (only cover art)" if container.streams.video else ""
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise NoVideoStreamError(
            f"{describe_clip(path, clip_id)}: the file has no video stream{cover} (streams: {kinds}); clear the clip's"
            " 'video' column to use it as audio-only, or give a file with pictures"
        )
    return streams[0]


def seek_point(container: Any, stream: Any, window_start_s: float) -> int | None:
    """Where to start reading for a window that starts at ``window_start_s``: None for the stream's start,
    else a seek target (stream ticks) from which the first packet is a keyframe shown at or before the
    window's start. Demuxers seek by decode time (mp4) or keyframe time (mkv): a keyframe decoded before
    the start may be shown after it, and its leading pictures would miss their references; so the target
    steps back until the first keyframe read is shown in time, or falls back to the stream's start."""
    if window_start_s <= 0 or stream.time_base is None:
        return None
    start = int(Fraction(window_start_s) / stream.time_base)
    step = max(1, int(1 / stream.time_base))  # one second
    target = start
    for attempt in range(6):
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            first = next((p for p in container.demux(stream) if p.size), None)
        except av.FFmpegError:
            return None
        if first is None or first.pts is None:
            return None
        if first.pts <= start and first.is_keyframe:
            return target
        target = min(target, first.dts if first.dts is not None else first.pts) - step * (2**attempt)
    return None


def demux(container: Any, stream: Any, seek_pts: int | None, path: Path, clip_id: str) -> Iterator[Any]:
    """Packets with a payload, from the keyframe at or before ``seek_pts`` (or the start)."""
    try:
        if seek_pts is not None:
            container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            if packet.size:
                yield packet
    except av.FFmpegError as err:
        raise MediaError(
            f"{describe_clip(path, clip_id)}: corrupt container ({decoder_reason(err)}); re-encode or replace the file"
        ) from None


@dataclass
class PacketIndex:
    """Pass 1: one entry per packet with a payload, in decode order."""

    pts: list[int] = field(default_factory=list)
    key: list[bool] = field(default_factory=list)
    shown: list[bool] = field(default_factory=list)  # False: an edit list discards it (it may still be a reference)
    duration: list[int] = field(default_factory=list)
    packets: list[Any] | None = field(default_factory=list)
    buffered_bytes: int = 0
    complete: bool = False  # the stream's end was reached (not cut at the window's end)
    seek_pts: int | None = None  # where reading started (None: the stream's start)
    timed: bool = True  # every packet has a pts


def read_index(
    container: Any,
    stream: Any,
    seek_pts: int | None,
    params: DecodeParams,
    deadline: Deadline,
    path: Path,
    clip_id: str,
) -> PacketIndex:
    tb = stream.time_base or Fraction(1, 90000)
    stop: int | None = None
    if params.window_duration_s is not None:
        stop = math.ceil((Fraction(params.window_start_s) + Fraction(params.window_duration_s)) / tb)
    index = PacketIndex(seek_pts=seek_pts)
    for n, packet in enumerate(demux(container, stream, seek_pts, path, clip_id)):
        if n % 64 == 0:
            deadline.check()
        # dts <= pts and dts only grows: once dts reaches the window's end no later packet shows inside it.
        if stop is not None and packet.dts is not None and packet.dts >= stop and index.pts:
            break
        if packet.pts is None:
            index.timed = False
        index.pts.append(packet.pts if packet.pts is not None else -1)
        index.key.append(bool(packet.is_keyframe))
        index.shown.append(not packet.is_discard)
        index.duration.append(int(packet.duration or 0))
        if index.packets is not None:
            index.buffered_bytes += packet.size
            if index.buffered_bytes <= PACKET_BUFFER_BYTES:
                index.packets.append(packet)
            else:
                index.packets = None
    else:
        index.complete = True
    if not any(index.shown):
        raise MediaError(f"{describe_clip(path, clip_id)}: the video stream holds no frames; replace the file")
    if index.complete:
        check_not_truncated(container, stream, index, seek_pts is None, path, clip_id)
    return index


def check_not_truncated(
    container: Any, stream: Any, index: PacketIndex, from_start: bool, path: Path, clip_id: str
) -> None:
    """A read that reached the end must find what the header promises: every sample of the demuxer's table
    (mp4, mov), and frames up to the declared duration of the video (the stream's, or its Matroska
    DURATION tag) within 1 s. Where only the container's duration is known and other streams may be longer,
    only a shortfall of over 2 s and 10 % counts."""
    if from_start and stream.index_entries is not None and len(stream.index_entries) > 1:
        listed = sum(1 for entry in stream.index_entries if not entry.is_discard)
        found = sum(index.shown)
        if found < listed:
            raise MediaError(
                f"{describe_clip(path, clip_id)}: the file is truncated:"
                f" its index lists {listed} video frames, the data holds {found}; re-download or re-encode it"
            )
    if not index.timed:
        return
    tb = stream.time_base
    end_s = float(max(p + d for p, d, s in zip(index.pts, index.duration, index.shown) if s) * tb)
    slack_s = 1.0
    declared_s = declared_end_s(stream)
    if declared_s is None and container.duration:
        declared_s = (container.duration + (container.start_time or 0)) / av.time_base
        if len([s for s in container.streams if s.type in ("audio", "video")]) > 1:
            slack_s = max(2.0, 0.1 * declared_s)
    if declared_s is not None and end_s < declared_s - slack_s:
        raise MediaError(
            f"{describe_clip(path, clip_id)}: the file is truncated: its video ends at {end_s:.2f} s, its header"
            f" declares {declared_s:.2f} s; re-download or re-encode it"
        )
