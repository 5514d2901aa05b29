"""Decode only the video frames a uniform sample depends on, as RGB at a bounded size.

Two passes over one stream:

1. **Index**: demux (no decoding) from the window's start until no later packet
   can show inside the window. Each packet's presentation timestamp, keyframe
   flag and duration give the exact frame times, variable frame rate included.
   The packets themselves are kept when they total at most
   ``PACKET_BUFFER_BYTES`` (a 30 s 1080p clip is ~10-20 MB), so that the file is
   read once; a larger window is demuxed again in pass 2.
2. **Planned decode**: for each sampled frame, the packets from the keyframe
   that serves it (one keyframe earlier when it is a leading picture of an open
   GOP, shown before its keyframe) to the frame's own packet, in decode order,
   go to the decoder; every other packet never does. Inside those runs,
   non-reference frames other than the samples are skipped by the decoder
   (``skip_frame=NONREF``) for codecs where "non-reference" means that no
   other frame predicts from it (``NONREF_CODECS``), so the skip cannot change
   a kept frame. Only kept frames are scaled and converted (``Converter``:
   swscale bilinear to the working size in the source's pixel format, then to
   RGB), then turned to their display orientation.

Why this plan: with targets about 1 s apart and GOPs of 1-5 s (the shared
sample's x264 encodes average 81 frames), nearly every reference frame up to
the last target is needed, so per-target seeking re-decodes GOP prefixes and
OpenCV's ``grab`` decodes every frame; skipping the ~40 % non-reference frames
and the tails of GOPs is the exact saving left (``python -m mvemo.pipeline.bench.video
--strategies`` measures every strategy; its figures are in the README). Decoders with a
reduced-resolution mode (``lowres``: MPEG-1/2/4 part 2, MJPEG, DV) decode at
1/2-1/8 size when the working size allows; h264, hevc, vp9 and av1 have none,
so memory is bounded instead by never holding more than the decoder's own
reference frames, the read window's packets (at most ``PACKET_BUFFER_BYTES``)
and the kept frames at the working size.

If the plan loses a target (a keyframe flag that lies, a decoder that outputs
less than it should) or a kept frame is flagged corrupt, the window is decoded
again packet by packet without skipping; only what fails then is an error.

A stream whose packets carry no timestamps (raw ``.h264``, some AVI) is
decoded in full and its frames are timed by their output order at the stream's
nominal rate.
"""

from __future__ import annotations

import bisect
import itertools
import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from mvemo.extract.decode.frames import (
    DROP,
    KEEP,
    REFERENCE,
    Converter,
    VideoSource,
    configure_decoder,
    decode_packets,
    stack_second,
    video_source,
)
from mvemo.extract.decode.nvdec import nvdec_accel, on_nvdec
from mvemo.extract.decode.packets import (
    Cancelled,
    Deadline,
    DecodeParams,
    DecodeTimeoutError,
    PacketIndex,
    check_file,
    demux,
    describe_clip,
    open_container,
    read_index,
    seek_point,
    video_stream,
)
from mvemo.manifests.errors import MediaError
from mvemo.manifests.probe import decoder_reason

NONREF_CODECS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})
MAX_PARALLEL_DECODERS = 4


@dataclass(frozen=True)
class SampledFrames:
    """Frames sampled from one video.

    Attributes
    ----------
    frames : ndarray, shape (n_frames, height, width, 3), uint8
        RGB in display orientation and aspect, the shorter side equal to the
        config's ``short_side_224`` (the I3D resize), the longer side rounded.
    timestamps_s : ndarray, shape (n_frames,), float64
        Presentation time of each returned frame, in the file's clock.
    frame_indices : ndarray, shape (n_frames,), int64
        Index of each frame in presentation order, counted from the first frame
        read (the stream's first frame unless ``window_start_s`` > 0 made the
        reader seek; then from the keyframe it sought to).
    target_times_s : ndarray, shape (n_frames,), float64
        The uniform times the frames are nearest to.
    window_s : (float, float)
        The window actually sampled: the configured one cut to the video's span.
    source : VideoSource
    decoded_frames : int
        Frames the decoder produced (the work done; the stream may hold more).
    frames_second : ndarray or None, shape (n_frames, short, long, 3) or (n_frames, long, short, 3), uint8
        The same pictures at the second size (``second_size_px`` = (short, long) sides, the
        longer side along the display's longer side; aspect not kept): the C3D resize to 128x171.
    decoder : str
        What decoded the pictures: ``cpu`` (FFmpeg's decoders) or ``nvdec`` (the GPU's; the same pictures,
        ``extract.decode.nvdec``).
    """

    frames: np.ndarray
    timestamps_s: np.ndarray
    frame_indices: np.ndarray
    target_times_s: np.ndarray
    window_s: tuple[float, float]
    source: VideoSource
    decoded_frames: int = 0
    frames_second: np.ndarray | None = None
    decoder: str = "cpu"


def read_sample(path: str | os.PathLike[str], params: DecodeParams, *, clip_id: str = "") -> SampledFrames:
    """Sample ``params.n_frames`` frames at uniform times of a video's window, in this process.

    The frame returned for time t is the one whose presentation timestamp is
    nearest t (ties go to the earlier frame), among the frames shown in the
    window (from the one on screen at its start).

    Raises
    ------
    MediaError
        Naming the clip, the reason and the fix: missing, empty, corrupt or
        truncated file; ``NoVideoStreamError`` when it has no video stream;
        ``DecodeTimeoutError`` past ``params.timeout_s`` (checked between packets).
    """
    path = Path(path)
    check_file(path, clip_id)
    deadline = Deadline(params.timeout_s, path, clip_id)
    container = open_container(path, clip_id)
    try:
        stream = video_stream(container, path, clip_id)
        seek_pts = seek_point(container, stream, params.window_start_s)
        if seek_pts is None and params.window_start_s > 0:  # seeking failed: read from the start
            container.close()
            container = open_container(path, clip_id)
            stream = video_stream(container, path, clip_id)
        index = read_index(container, stream, seek_pts, params, deadline, path, clip_id)
        if not index.timed:
            return _sample_by_order(path, params, index, deadline, clip_id)
        if index.packets is not None:
            return _sample_timed(stream, index.packets, params, index, deadline, path, clip_id)
    finally:
        container.close()
    with open_container(path, clip_id) as container:  # the window was too large to buffer: read it again
        stream = video_stream(container, path, clip_id)
        packets = demux(container, stream, index.seek_pts, path, clip_id)
        return _sample_timed(stream, packets, params, index, deadline, path, clip_id)


def uniform_times(start: Fraction, end: Fraction, n: int) -> list[Fraction]:
    """Centres of ``n`` equal segments of [start, end) (TSN's test-time sampling), as exact rationals."""
    return [start + (end - start) * (2 * k + 1) / (2 * n) for k in range(n)]


def nearest(sorted_times: list[Any], targets: list[Any]) -> list[int]:
    """Position in ``sorted_times`` nearest each target; ties go to the earlier time."""
    out = []
    for t in targets:
        i = bisect.bisect_left(sorted_times, t)
        if i == 0:
            out.append(0)
        elif i == len(sorted_times):
            out.append(i - 1)
        else:
            out.append(i if sorted_times[i] - t < t - sorted_times[i - 1] else i - 1)
    return out


def _pick(
    ticks: list[int], window: tuple[Fraction, Fraction], n: int, tb: Fraction
) -> tuple[list[Fraction], list[int]]:
    """Uniform targets (seconds) in ``window`` and, for each, the position in sorted ``ticks`` (timestamps in
    units of ``tb``) of its frame. Candidates are the frames shown in the window: from the one on screen at
    its start to the last one starting before its end. Exact: rationals against integers."""
    start, stop = window[0] / tb, window[1] / tb
    lo = max(0, bisect.bisect_right(ticks, start) - 1)
    hi = max(lo + 1, bisect.bisect_left(ticks, stop))
    targets = uniform_times(window[0], window[1], n)
    return targets, [lo + i for i in nearest(ticks[lo:hi], [t / tb for t in targets])]


def _window(
    params: DecodeParams, first: Fraction, end: Fraction | None, path: Path, clip_id: str
) -> tuple[Fraction, Fraction]:
    """The configured window cut to the video's span [first, end); ``end`` is None when the read stopped
    at the window's end, so the video runs past it."""
    start = max(Fraction(params.window_start_s), first)
    if params.window_duration_s is None:
        if end is None:
            raise ValueError("an open window needs the video's end")  # read_index reads to the end then
        stop = end
    else:
        stop = Fraction(params.window_start_s) + Fraction(params.window_duration_s)
        stop = stop if end is None else min(stop, end)
    if stop <= start:
        raise MediaError(
            f"{describe_clip(path, clip_id)}: window_start_s={params.window_start_s:g} lies past the end of the video"
            f" ({float(end or 0):.2f} s); lower window_start_s in the frame config"
        )
    return start, stop


def _sample_timed(
    stream: Any, packets: Any, params: DecodeParams, index: PacketIndex, deadline: Deadline, path: Path, clip_id: str
) -> SampledFrames:
    tb = stream.time_base
    shown = sorted(p for p, s in zip(index.pts, index.shown) if s)
    last = index.pts.index(shown[-1])
    last_duration = index.duration[last] or (int(np.median(np.diff(shown))) if len(shown) > 1 else 0)
    end = (shown[-1] + last_duration) * tb if index.complete else None
    window = _window(params, shown[0] * tb, end, path, clip_id)
    targets, picks = _pick(shown, window, params.n_frames, tb)
    want = {shown[i] for i in picks}
    codec = stream.codec_context.name
    convert = Converter(params.short_side_px, params.second_size_px, stream)
    planned = _plan(index, want)
    skip_nonref = codec in NONREF_CODECS
    on_device = (
        _decode_on_device(path, packets, params, index, planned, want, convert, deadline, skip_nonref, clip_id)
        if on_nvdec(params.decoder, codec) and isinstance(packets, list)
        else None
    )
    groups = _parallel_groups(planned, index, params.threads) if isinstance(packets, list) and on_device is None else []
    if on_device is not None:
        got, decoded = on_device
    elif len(groups) > 1:
        got, decoded = _decode_parallel(
            path, packets, groups, params, index, planned, want, convert, deadline, skip_nonref, clip_id
        )
    else:
        configure_decoder(stream, params.threads, params.short_side_px)
        items = enumerate(packets)
        got, decoded = decode_packets(
            stream, items, index, planned, want, convert, deadline, skip_nonref, path, clip_id
        )
    if len(got) < len(want):
        # The plan lost a frame (a keyframe flag that lies, say): decode the window again, nothing skipped.
        got, more = _decode_again(path, params, index, want, convert, deadline, clip_id)
        decoded += more
    if len(got) < len(want):
        missing = sorted(want - set(got))
        first_missing_s = float(missing[0] * tb)
        raise MediaError(
            f"{describe_clip(path, clip_id)}: the decoder gave no picture for the frame at {first_missing_s:.2f} s"
            f" ({len(missing)} of the sampled frames): the stream is corrupt; re-encode or replace the file"
        )
    return SampledFrames(
        frames=np.stack([got[shown[i]][0] for i in picks]),
        frames_second=stack_second([got[shown[i]][1] for i in picks]),
        timestamps_s=np.array([float(shown[i] * tb) for i in picks]),
        frame_indices=np.array(picks, dtype=np.int64),
        target_times_s=np.array([float(t) for t in targets]),
        window_s=(float(window[0]), float(window[1])),
        source=video_source(convert, codec, np.array(shown, dtype=np.float64) * float(tb), float(last_duration * tb)),
        decoded_frames=decoded,
        decoder="cpu" if on_device is None else "nvdec",
    )


def _decode_on_device(
    path: Path,
    packets: list[Any],
    params: DecodeParams,
    index: PacketIndex,
    plan: np.ndarray,
    want: set[int],
    convert: Converter,
    deadline: Deadline,
    skip_nonref: bool,
    clip_id: str,
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray | None]], int] | None:
    """The buffered packets decoded on NVDEC (``extract.decode.nvdec``), through a container opened on the device; None
    where NVDEC refuses the clip (a profile or size it lacks, a device out of sessions, whatever PyAV raises for it):
    the CPU makes the same frames, and a fault of the file itself shows there with its own message."""
    try:
        with open_container(path, clip_id, nvdec_accel()) as container:
            stream = video_stream(container, path, clip_id)
            configure_decoder(stream, 1, params.short_side_px)
            return decode_packets(
                stream, enumerate(packets), index, plan, want, convert, deadline, skip_nonref, path, clip_id
            )
    except DecodeTimeoutError:
        raise
    except Exception:  # PyAV refuses in its own words (FFmpegError, RuntimeError, OSError): the CPU decodes instead
        return None


def _decode_again(
    path: Path,
    params: DecodeParams,
    index: PacketIndex,
    want: set[int],
    convert: Converter,
    deadline: Deadline,
    clip_id: str,
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray | None]], int]:
    plain = np.array([KEEP if p in want else REFERENCE for p in index.pts], dtype=np.uint8)
    with open_container(path, clip_id) as container:
        stream = video_stream(container, path, clip_id)
        configure_decoder(stream, params.threads, params.short_side_px)
        items = enumerate(demux(container, stream, index.seek_pts, path, clip_id))
        return decode_packets(stream, items, index, plain, want, convert, deadline, False, path, clip_id, strict=True)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _parallel_groups(plan: np.ndarray, index: PacketIndex, threads: int) -> list[tuple[int, int]]:
    """Split the plan's runs (stretches of packets to send, each starting at a keyframe, so independent) into
    up to ``threads`` (0: one per core, at most ``MAX_PARALLEL_DECODERS``) contiguous groups of about equal
    compressed size, one per decoder. Fewer than two runs: no split (FFmpeg's frame threads serve then)."""
    sent = plan != DROP
    starts = np.flatnonzero(sent & ~np.concatenate([[False], sent[:-1]]))
    wanted = min(threads or available_cores(), MAX_PARALLEL_DECODERS, len(starts))
    if wanted < 2:
        return []
    ends = np.flatnonzero(sent & ~np.concatenate([sent[1:], [False]]))
    sizes = np.array([p.size for p in index.packets or []]) * sent
    cost = np.array([sizes[a : b + 1].sum() for a, b in zip(starts, ends)], dtype=np.float64)
    done = np.cumsum(cost)[:-1]  # cost finished after each run but the last
    cuts = {int(np.argmin(np.abs(done - cost.sum() * k / wanted))) + 1 for k in range(1, wanted)}
    bounds = [0, *sorted(cuts), len(starts)]
    return [(int(starts[a]), int(ends[b - 1])) for a, b in itertools.pairwise(bounds)]


def _decode_parallel(
    path: Path,
    packets: list[Any],
    groups: list[tuple[int, int]],
    params: DecodeParams,
    index: PacketIndex,
    plan: np.ndarray,
    want: set[int],
    convert: Converter,
    deadline: Deadline,
    skip_nonref: bool,
    clip_id: str,
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray | None]], int]:
    """Each group on its own single-threaded decoder in its own thread (PyAV lets go of the GIL while FFmpeg
    decodes). Measured on 2 cores: 1.5-1.8x over one decoder, where FFmpeg's frame threads gave 1.14x."""

    def decode_group(bounds: tuple[int, int]) -> tuple[dict[int, tuple[np.ndarray, np.ndarray | None]], int]:
        first, last = bounds
        with open_container(path, clip_id) as container:
            stream = video_stream(container, path, clip_id)
            configure_decoder(stream, 1, params.short_side_px)
            items = ((i, packets[i]) for i in range(first, last + 1))
            return decode_packets(stream, items, index, plan, want, convert, deadline, skip_nonref, path, clip_id)

    got: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    decoded = 0
    with ThreadPoolExecutor(len(groups), thread_name_prefix="mvemo-decode") as pool:
        futures = [pool.submit(decode_group, bounds) for bounds in groups]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [e for f in futures if f.done() and (e := f.exception()) is not None]
        if failed:
            deadline.cancel()  # the other decoders stop at their next packet
            raise next((e for e in failed if not isinstance(e, Cancelled)), failed[0])
        for future in futures:
            part, n = future.result()
            got.update(part)
            decoded += n
    return got, decoded


def _plan(index: PacketIndex, want: set[int]) -> np.ndarray:
    """What to do with each packet, in decode order: DROP it, decode it as a REFERENCE (a non-reference
    frame may be skipped), or KEEP it (decode and convert)."""
    n = len(index.pts)
    plan = np.full(n, DROP, dtype=np.uint8)
    keys = [i for i in range(n) if index.key[i]]
    for i in (i for i in range(n) if index.pts[i] in want):
        j = bisect.bisect_right(keys, i) - 1
        if j >= 1 and index.pts[i] < index.pts[keys[j]]:  # a leading picture refers to the previous GOP
            j -= 1
        start = keys[j] if j >= 0 else 0  # no keyframe before it (the read began mid-GOP): from the first packet
        plan[start:i] = np.maximum(plan[start:i], REFERENCE)
        plan[i] = KEEP
    return plan


def _sample_by_order(
    path: Path, params: DecodeParams, index: PacketIndex, deadline: Deadline, clip_id: str
) -> SampledFrames:
    """Packets without timestamps: decode every frame and time it by its output order at the nominal rate."""
    count = sum(index.shown)
    with open_container(path, clip_id) as container:
        stream = video_stream(container, path, clip_id)
        step = 1 / Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate or 25)
        window = _window(params, Fraction(0), count * step, path, clip_id)
        targets, picks = _pick(list(range(count)), window, params.n_frames, step)
        wanted = set(picks)
        configure_decoder(stream, params.threads, params.short_side_px)
        convert = Converter(params.short_side_px, params.second_size_px, stream)
        got: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        n = 0
        try:
            for packet in demux(container, stream, None, path, clip_id):
                deadline.check(n, step)
                for frame in stream.codec_context.decode(packet):
                    if n in wanted:
                        got[n] = convert(frame)
                    n += 1
            for frame in stream.codec_context.decode(None):
                if n in wanted:
                    got[n] = convert(frame)
                n += 1
        except av.FFmpegError as err:
            raise MediaError(
                f"{describe_clip(path, clip_id)}: corrupt video data after frame {n} ({decoder_reason(err)});"
                " re-encode or replace the file"
            ) from None
        codec = stream.codec_context.name
    if len(got) < len(wanted):
        raise MediaError(
            f"{describe_clip(path, clip_id)}: the stream gave {n} pictures for {count} packets;"
            " re-encode or replace the file"
        )
    return SampledFrames(
        frames=np.stack([got[k][0] for k in picks]),
        frames_second=stack_second([got[k][1] for k in picks]),
        timestamps_s=np.array([float(k * step) for k in picks]),
        frame_indices=np.array(picks, dtype=np.int64),
        target_times_s=np.array([float(t) for t in targets]),
        window_s=(float(window[0]), float(window[1])),
        source=video_source(convert, codec, np.arange(count) * float(step), float(step), timestamps_from_order=True),
        decoded_frames=n,
    )
