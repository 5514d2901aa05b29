"""Audio decoding: any container to a mono float32 window at an exact sample count.

PyAV decodes the audio track of any container (mp4, mkv, webm, mov, m4a, mp3);
soundfile reads wav/flac/ogg directly (faster, no codec). Channels are mixed to
mono by a weighted sum ``w @ x`` (a mean over a channel axis measured 30x
slower); the LFE channel of a surround layout gets weight 0. Resampling is
soxr's high-quality mode; the result is cut or zero-padded to exactly
``round(duration_s * sr)`` samples, so every clip has the same length.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
import soxr

from mvemo.extract.decode.packets import check_file, describe_clip
from mvemo.manifests.errors import ConfigError, MediaError
from mvemo.manifests.probe import (
    CUT_OFF_REASON,
    cut_short,
    declared_end_s,
    decoder_reason,
    iso_file_cut_off,
    truncated_reason,
)

SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
AUDIO48K_HZ = 48000  # the rate of the set ``audio48k``, CLAP's input (``extract.nets.clap``)


@dataclass(frozen=True)
class AudioWindow:
    """The part of each clip that is analysed: ``duration_s`` seconds from ``offset_s`` (paper 001: 30 s from 0)."""

    offset_s: float = 0.0
    duration_s: float = 30.0

    def __post_init__(self) -> None:
        if self.offset_s < 0 or not np.isfinite(self.offset_s):
            raise ConfigError(f"offset_s={self.offset_s}: must be a finite number >= 0")
        if not (0 < self.duration_s < 3600):
            raise ConfigError(f"duration_s={self.duration_s}: must lie in (0, 3600) seconds")

    def n_samples(self, sr: int) -> int:
        return round(self.duration_s * sr)


@dataclass(frozen=True)
class Decoded:
    """A decoded window: mono float32 ``y`` at the source rate ``sr``, and how much of it is real audio."""

    y: np.ndarray
    sr: int
    valid_s: float


def decode_audio(path: str | os.PathLike[str], window: AudioWindow, *, clip_id: str = "") -> Decoded:
    """Decode the window of a file's first audio track to mono float32 at its own sample rate.

    Non-finite samples become 0. A file shorter than the window gives what it has
    (``valid_s`` says how much); callers pad. The window lies on the file's presentation
    timeline, cut to where the track starts, as the video's frame window does. A window
    from ``SEEK_FROM_S`` on is read from a seek ``SEEK_MARGIN_S`` before it where the codec's
    frames are all of one size (``FIXED_FRAME_CODECS``), placed on the grid of the track's
    first frames (``FrameGrid``): the pts of mp3, webm
    and mkv frames after a seek alone put the window 48 to 1,105 samples off. The samples
    are those read from the start, up to the rounding of a restarted AAC decoder (2e-5)
    and AAC's noise substitution, whose random noise depends on where decoding began.

    Raises
    ------
    MediaError
        Naming the clip, when the file is missing, undecodable, has no audio stream or no sample in the window.
    """
    path = Path(path)
    check_file(path, clip_id, kind="audio")
    who = describe_clip(path, clip_id)
    try:
        x, sr, names = _read_audio(path, window, who)
    except (av.FFmpegError, sf.LibsndfileError, RuntimeError, ValueError) as err:
        if iso_file_cut_off(path):
            raise MediaError(f"{who}: {CUT_OFF_REASON}") from None
        raise MediaError(
            f"{who}: cannot decode audio ({decoder_reason(err)}): the file is corrupt, truncated or not media;"
            " re-encode or replace it"
        ) from None
    y = (mono_weights(names) @ x).astype(np.float32, copy=False)
    if y.size == 0:  # padding alone would be computed, trained on and labelled as if it were the clip
        where = f" from {window.offset_s:g} s on" if window.offset_s else ""
        raise MediaError(
            f"{who}: its audio holds no samples{where}; re-encode or replace the file, or leave its audio out"
        )
    if not np.isfinite(y).all():
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    return Decoded(y, sr, y.size / sr)


def _read_audio(path: Path, window: AudioWindow, who: str) -> tuple[np.ndarray, int, list[str]]:
    """libsndfile for wav, flac and ogg (faster, no codec), FFmpeg for the rest and for what libsndfile refuses: a
    misnamed file, some Ogg Opus files that FFmpeg wrote (3 of the MVED sample's tracks transcoded to Opus)."""
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            return _read_soundfile(path, window)
        except sf.LibsndfileError:
            pass
    return _read_pyav(path, window, who)


def _read_soundfile(path: Path, window: AudioWindow) -> tuple[np.ndarray, int, list[str]]:
    with sf.SoundFile(path) as f:
        sr = f.samplerate
        start = round(window.offset_s * sr)
        if start < f.frames:
            f.seek(start)
            x = f.read(window.n_samples(sr), dtype="float32", always_2d=True)
        else:
            x = np.zeros((0, f.channels), dtype=np.float32)
    return x.T, sr, [""] * x.shape[1]


# A window that starts this far into a track is read from a seek, not from the track's start: reading a 1-hour
# file's windows one by one from its start (the timeline, [clip] windows) cost time quadratic in its length.
SEEK_FROM_S = 10.0
# A seek lands this long before the window, so that the decoder's state (an AAC frame's overlap, an mp3's bit
# reservoir) has settled when the window begins.
SEEK_MARGIN_S = 1.0
# Codecs whose every frame holds the same number of samples, so that a frame's place after a seek follows from its
# pts on the grid of the track's first frames; others (Vorbis, FLAC, PCM) are read from the start.
FIXED_FRAME_CODECS = frozenset({"aac", "mp3", "mp3float", "mp2", "mp2float", "ac3", "eac3", "opus"})


def _read_pyav(path: Path, window: AudioWindow, who: str) -> tuple[np.ndarray, int, list[str]]:
    if window.offset_s >= SEEK_FROM_S:  # _decode_window reads from the start a codec of frames of many sizes
        sought = _decode_window(path, window, who, seek=True)
        if sought is not None:
            return sought
    decoded = _decode_window(path, window, who, seek=False)
    assert decoded is not None  # read from the start, every frame has its place
    return decoded


@dataclass(frozen=True)
class FrameGrid:
    """Where a track's frames lie, learnt from its first two frames read from its start: a frame's first sample is
    ``start + first_size + k * size`` for its k-th place after the first frame. A frame's pts after a seek only
    estimates its place (an mp3's first frame is shortened by its decoder delay, Matroska counts milliseconds):
    snapped to this grid it is exact, as reading from the start is."""

    start: int
    first_size: int
    second: int
    size: int

    @classmethod
    def of(cls, frames: list[Any], sr: int, time_base: Fraction) -> FrameGrid | None:
        if len(frames) < 2 or any(f.pts is None for f in frames):
            return None
        first, second = frames
        return cls(round(first.pts * time_base * sr), first.samples, round(second.pts * time_base * sr), second.samples)

    def place(self, frame: Any, sr: int, time_base: Fraction) -> int | None:
        """The timeline sample of a frame read after a seek; None for a frame off the grid's size (a codec of
        fixed frame sizes has none but its first)."""
        if frame.pts is None or frame.samples != self.size:
            return None
        k = round((round(frame.pts * time_base * sr) - self.second) / self.size)
        return self.start + self.first_size + k * self.size


def _decode_window(
    path: Path, window: AudioWindow, who: str, *, seek: bool
) -> tuple[np.ndarray, int, list[str]] | None:
    """The window of the file's first audio track, read from its start or (``seek``) from a seek before the window;
    None where a seek cannot place its frames exactly (read from the start then)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(
                f"{who}: the file has no audio stream; clear the clip's 'audio' column or give a file with sound"
            )
        stream = container.streams.audio[0]
        sr = int(stream.codec_context.sample_rate)
        layout = stream.codec_context.layout
        names = [c.name for c in layout.channels]
        begin = round(window.offset_s * sr)
        end = begin + window.n_samples(sr)
        time_base = stream.time_base or Fraction(1, sr)
        # where the track ends, where the file has an index that says so before any packet is read (an mp3's end
        # is estimated from its bitrate: no figure to hold a cut against)
        declared_s = declared_end_s(stream) if stream.index_entries else None
        grid = None
        if seek:
            if stream.codec_context.name not in FIXED_FRAME_CODECS:
                return None
            grid = FrameGrid.of(list(itertools.islice(container.decode(stream), 2)), sr, time_base)
            if grid is None:
                return None
            container.seek(int((window.offset_s - SEEK_MARGIN_S) / time_base), stream=stream, backward=True)
        start: int | None = None
        blocks: list[list[bytes]] = []
        decoded = dropped = 0
        to_track_layout = av.AudioResampler(format="fltp", layout=layout)
        for frame in _frames_until_cut(container.decode(stream), path if declared_s is not None else None):
            if start is None:  # later frames follow sample by sample: ms-resolution pts (mkv) would jitter
                if grid is None:
                    start = round(frame.pts * time_base * sr) if frame.pts is not None else 0
                else:
                    start = grid.place(frame, sr, time_base)
                    if start is None or start > begin:  # no grid, or the seek overshot: read from the start
                        return None
            for planes in _float_planes(frame, to_track_layout, len(names)):
                n = len(planes[0]) // 4
                if start + decoded + n > begin:  # blocks wholly before the window are not kept
                    blocks.append(planes)
                else:
                    dropped += n
                decoded += n
            if start + decoded >= end:
                break
        else:  # the track ended before the window did: where its header says, or cut off
            ended_s = (start or 0) / sr + decoded / sr
            if declared_s is not None and cut_short(ended_s, declared_s):
                raise MediaError(f"{who}: {truncated_reason('audio', ended_s, declared_s)}")
    if start is None:  # no frame at all
        return np.zeros((len(names), 0), dtype=np.float32), sr, names
    channel_by_channel = b"".join(itertools.chain.from_iterable(zip(*blocks)))
    x = np.frombuffer(channel_by_channel, dtype=np.float32).reshape(len(names), decoded - dropped)
    # The window [begin, end) of the timeline, cut to where the track starts, as the video's frame window is.
    first = max(begin - start - dropped, 0)
    return x[:, first : first + max(end - max(begin, start), 0)], sr, names


def _frames_until_cut(frames: Iterator[av.AudioFrame], indexed: Path | None) -> Iterator[av.AudioFrame]:
    """The decoded frames. A decoder error in a file that is cut off (``iso_file_cut_off``) and whose index declares
    the track's end (``indexed``: the file) ends them as the end of its data would, so that an mp4 cut inside its data,
    its index first, is reported by where its audio ends; any other decoder error is raised (a corrupt file)."""
    try:
        yield from frames
    except av.FFmpegError:
        if indexed is None or not iso_file_cut_off(indexed):
            raise


def _float_planes(frame: av.AudioFrame, to_track_layout: av.AudioResampler, n_channels: int) -> list[list[bytes]]:
    """The frame as blocks of float32 sample bytes, one per channel of the track, joined once per clip: planar
    float (AAC, MP3) in the track's layout is copied from its planes (a numpy view per plane and frame, filled
    into the window, cost 7 ms more per 30 s AAC track: 59 vs 53 ms); other formats, and frames whose layout
    strays from the track's, go through a resampler to it."""
    planes = frame.planes
    if len(planes) == n_channels and frame.format.name == "fltp":
        n_bytes = 4 * frame.samples
        return [[bytes(plane)[:n_bytes] for plane in planes]]
    return [[row.tobytes() for row in block.to_ndarray()] for block in to_track_layout.resample(frame)]


def mono_weights(channel_names: list[str]) -> np.ndarray:
    """Mixing weights, shape (channels,): equal and summing to 1, except 0 for a low-frequency effects channel."""
    weights = np.array([0.0 if name.upper().startswith("LFE") else 1.0 for name in channel_names], dtype=np.float32)
    if not weights.any():
        weights[:] = 1.0
    return weights / weights.sum()


def resample_exact(y: np.ndarray, sr_in: int, sr_out: int, n_out: int) -> np.ndarray:
    """Resample with soxr's high quality to ``sr_out``, then cut or zero-pad to exactly ``n_out`` samples."""
    if sr_in != sr_out and y.size:
        y = soxr.resample(y, sr_in, sr_out, quality="HQ")
    out = np.zeros(n_out, dtype=np.float32)
    n = min(n_out, y.size)
    out[:n] = y[:n]
    return out
