"""Media probing for ``mvemo manifest check``: what each file holds, and what is wrong."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import av

from mvemo.manifests.errors import ManifestError
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.targets import read_annotations

# A stream may end this much before its declared duration (AAC priming, rounding) without counting as cut off.
TRUNCATION_SLACK_S = 0.1
TRUNCATION_SLACK_SHARE = 0.02


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate_hz: int
    channels: int
    duration_s: float
    end_s: float = 0.0


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    fps: float
    width: int
    height: int
    frame_count: int
    rotation_deg: int
    duration_s: float
    frame_count_estimated: bool = False
    end_s: float = 0.0


@dataclass(frozen=True)
class MediaInfo:
    """What one file holds; ``error`` is set when it cannot be opened or decoded."""

    path: str
    audio: AudioInfo | None = None
    video: VideoInfo | None = None
    error: str = ""

    @property
    def duration_s(self) -> float:
        return max([s.duration_s for s in (self.audio, self.video) if s is not None], default=0.0)


@dataclass(frozen=True)
class ClipReport:
    """The probe of one clip's files and the problems found, each a sentence with its fix."""

    clip_id: str
    label: str
    audio: AudioInfo | None
    video: VideoInfo | None
    duration_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def probe_file(path: str | os.PathLike[str]) -> MediaInfo:
    """Open ``path`` with PyAV, decode the first frame of its first audio and video stream (cover art is no video)
    and demux every packet: each stream's ``end_s`` is where it ends on the file's timeline.

    Never raises for a bad file: the reason is in ``MediaInfo.error``.
    """
    path = Path(path)
    if not path.is_file():
        return MediaInfo(str(path), error="file does not exist")
    if path.stat().st_size == 0:
        return MediaInfo(str(path), error="file is empty (0 bytes); replace the file")
    try:
        with av.open(str(path)) as container:
            container_s = container.duration / av.time_base if container.duration else 0.0
            audio_stream = container.streams.audio[0] if container.streams.audio else None
            video_stream = next(iter(picture_streams(container)), None)
            audio = _probe_audio(container, audio_stream, container_s) if audio_stream else None
            video = _probe_video(container, video_stream, container_s) if video_stream else None
            ends, truncated = _stream_ends(container)
    except (av.FFmpegError, UnicodeDecodeError, StopIteration, ValueError) as err:
        return MediaInfo(str(path), error=CUT_OFF_REASON if iso_file_cut_off(path) else undecodable_reason(err))
    if audio is None and video is None:
        return MediaInfo(str(path), error="no audio or video stream; replace the file")
    if audio is not None:
        audio = replace(audio, end_s=_end_s(audio_stream, ends))
    if video is not None:
        video = replace(video, end_s=_end_s(video_stream, ends))
    return MediaInfo(str(path), audio=audio, video=video, error=truncated)


def _end_s(stream: Any, ends: dict[int, float]) -> float:
    """Where the stream ends on the file's timeline: where its header says (MP4's edit lists trim an AAC track's
    priming and padding there), else where its packets end (a Matroska file without DURATION tags)."""
    declared_s = declared_end_s(stream)
    return round(declared_s if declared_s is not None else ends[stream.index], 3)


def picture_streams(container: Any) -> list[Any]:
    """The file's video streams, without cover art (a still picture attached to a song is no video)."""
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def declared_end_s(stream: Any) -> float | None:
    """Where a stream's header says it ends, in seconds on the file's timeline: its duration after its start,
    or a Matroska ``DURATION`` tag; None when the header says neither."""
    if stream.duration:
        return float((stream.duration + (stream.start_time or 0)) * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION", "")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def cut_short(end_s: float, declared_s: float | None) -> bool:
    """Whether a stream that ends at ``end_s`` falls short of the end its header declares (AAC priming, rounding and
    mp3 padding stay within the slack)."""
    return declared_s is not None and end_s < declared_s - max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_SHARE * declared_s)


def truncated_reason(kind: str, end_s: float, declared_s: float) -> str:
    return (
        f"the file is truncated: its {kind} ends at {end_s:.2f} s, its header declares {declared_s:.2f} s;"
        " re-download or re-encode it"
    )


def iso_file_cut_off(path: str | os.PathLike[str]) -> bool:
    """Whether an ISO media file (mp4, m4a, mov: its first box ``ftyp``) ends inside one of its top-level boxes: a
    download cut off. An mp4 whose index (``moov``) comes last then has none, and no demuxer opens it."""
    try:
        return _boxes_run_past_the_end(path)
    except OSError:  # asked after a failed open: a file that vanished or cannot be read is no cut-off file
        return False


def _boxes_run_past_the_end(path: str | os.PathLike[str]) -> bool:
    size = os.path.getsize(path)
    offset = 0
    with open(path, "rb") as f:
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if offset == 0 and kind != b"ftyp":
                return False
            if box_size == 1 and len(header) == 16:  # a 64-bit size follows
                box_size = struct.unpack(">Q", header[8:16])[0]
            elif box_size == 0:  # the box runs to the end of the file
                return False
            if box_size < 8:
                return False
            offset += box_size
    return offset > size


CUT_OFF_REASON = "the file is truncated: it ends inside its data, before its index; re-download or re-encode it"


def _stream_ends(container: Any) -> tuple[dict[int, float], str]:
    """Where each audio and video stream's packets end on the file's timeline (seconds, by stream index), and why
    the file is cut off ("" when it is whole): a stream whose packets end well before its declared end.

    Demuxing reads every packet without decoding one: about the cost of reading the file.
    """
    streams = [*container.streams.audio, *picture_streams(container)]
    ends = dict.fromkeys((s.index for s in streams), 0.0)
    container.seek(0)
    try:
        for packet in container.demux(*streams):
            if packet.pts is not None and packet.time_base is not None:
                end_s = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                ends[packet.stream.index] = max(ends[packet.stream.index], end_s)
    except av.FFmpegError as err:
        return (
            ends,
            f"the file is truncated or corrupt: reading it stopped ({decoder_reason(err)}); re-download or re-encode"
            " it",
        )
    for stream in streams:
        declared_s = declared_end_s(stream)
        if declared_s is not None and cut_short(ends[stream.index], declared_s):
            return ends, truncated_reason(stream.type, ends[stream.index], declared_s)
    return ends, ""


def _stream_duration(stream: Any, container_s: float) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container_s


def _probe_audio(container: Any, stream: Any, container_s: float) -> AudioInfo:
    ctx = stream.codec_context
    _first_frame(container, stream)
    return AudioInfo(
        codec=ctx.name,
        sample_rate_hz=int(ctx.sample_rate or 0),
        channels=int(ctx.channels or 0),
        duration_s=round(_stream_duration(stream, container_s), 3),
    )


def _probe_video(container: Any, stream: Any, container_s: float) -> VideoInfo:
    frame = _first_frame(container, stream)
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    duration_s = _stream_duration(stream, container_s)
    frames = int(stream.frames or 0)
    return VideoInfo(
        codec=stream.codec_context.name,
        fps=round(fps, 3),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        frame_count=frames or round(duration_s * fps),
        rotation_deg=int(getattr(frame, "rotation", 0) or 0),
        duration_s=round(duration_s, 3),
        frame_count_estimated=not frames,
    )


def _first_frame(container: Any, stream: Any) -> Any:
    container.seek(0)
    return next(container.decode(stream))


def decoder_reason(err: BaseException) -> str:
    """FFmpeg's words for an error, without its errno and the path or function it appends."""
    if isinstance(err, StopIteration):
        return "the stream has no decodable frame"
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    return str(text).split(": '")[0]


def undecodable_reason(err: BaseException) -> str:
    """Why a file no decoder reads failed, and the fix."""
    return (
        f"cannot decode ({decoder_reason(err)}): the file is corrupt, truncated or not media; re-encode or replace it"
    )


def check_clip(
    clip: Clip,
    probe: dict[Path, MediaInfo] | None = None,
    *,
    values: Sequence[str] = (),
    scale: tuple[float, float] | None = None,
) -> ClipReport:
    """Probe every file of ``clip`` and list its problems.

    Problems: a missing or undecodable file, a modality the manifest promises
    that the file lacks, zero duration, an annotation file of the manifest's value
    columns ``values`` on ``scale`` that cannot be read (``targets.read_annotations``).
    Facts such as a short duration, a low sample rate or mono audio are reported, not problems.
    """
    probe = {} if probe is None else probe
    problems = []
    found: dict[str, Any] = {"audio": None, "video": None}
    duration_s = 0.0
    for modality in clip.modalities:
        path = getattr(clip, modality)
        if path not in probe:
            probe[path] = probe_file(path)
        info = probe[path]
        if info.error:
            columns = clip.media_columns[path]
            if modality == columns[0]:  # a video that gives the sound too: its problem once
                fix = "" if path.exists() else "; fix the path (relative to the manifest's folder) or drop the row"
                problems.append(f"{' and '.join(columns)} file {str(path)!r}: {info.error}{fix}")
            continue
        stream = getattr(info, modality)
        if stream is None:
            problems.append(
                f"{modality} file {str(path)!r} has no {modality} stream;"
                f" clear the clip's {modality!r} column or give a file that has one"
            )
            continue
        found[modality] = stream
        duration_s = max(duration_s, stream.duration_s)
        if stream.duration_s <= 0:
            problems.append(f"{modality} stream of {str(path)!r} has zero duration; replace the file")
    if clip.annotations is not None and scale is not None:
        try:
            read_annotations(clip.annotations, clip_id=clip.clip_id, names=values, scale=scale)
        except ManifestError as err:  # a report's problems are its clip's: its id is said once, by the report
            problems.append(str(err).removeprefix(f"clip {clip.clip_id!r}: "))
    return ClipReport(clip.clip_id, clip.label, found["audio"], found["video"], duration_s, problems)


def check_manifest(manifest: Manifest) -> list[ClipReport]:
    """One ``ClipReport`` per clip, in manifest order; each file is probed once."""
    probe: dict[Path, MediaInfo] = {}
    return [check_clip(clip, probe, values=manifest.value_names, scale=manifest.scale) for clip in manifest.clips]
