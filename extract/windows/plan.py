"""A whole file as overlapping windows on one time axis, and the clip-level vector pooled from them.

A window is ``length_s`` seconds (the ``[audio] duration_s`` every set analyses, 30 s by
default) every ``hop_s`` seconds from the file's time zero; the last window is moved to
end where the file ends, so no second is left out (but a last half second: ``TAIL_S``) and
none is padded; a file shorter than one window is one window, padded as a short clip is.
Audio and video share the axis: a window's samples and frames come from the same
presentation seconds, each stream cut to where it starts: a container's start times and
edit lists are applied by the decoders, so a window reads from each stream the seconds it
has of the window (an audio track that starts 0.5 s late gives the first window its sound
from 0.5 s on, zero-padded at the end, as a video that starts late gives frames sampled
from its first one). A file's length is where its earlier-ending stream ends, so every
window has both.

Stage one with ``[clip] windows = true`` computes every set of every window into the
window cache (``CACHE/windows``: one row per window, its clip's label, group and fold,
``window_times`` holding each row's start and end) and writes each vector set pooled over
the clip's windows into the cache itself, under the set's own name: stage two trains on
clip-level vectors as it always does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mvemo.cache.layout import WINDOWS_FOLDER
from mvemo.manifests.errors import ConfigError, is_number
from mvemo.manifests.probe import probe_file
from mvemo.manifests.schema import Clip, Manifest, group_id
from mvemo.manifests.targets import read_annotations, window_values

POOLINGS = ("mean", "max", "mean+std")
TAIL_S = 0.5  # seconds at a file's end worth a window of their own (fewer: an AAC frame's padding, a start offset)
TIMES_SET = "window_times"


@dataclass(frozen=True)
class WindowConfig:
    """The ``[clip]`` table: whether stage one reads whole files as windows, their hop and the pooling.

    Parameters
    ----------
    windows : bool
        False (default): one window per clip, ``[audio] offset_s`` and ``duration_s``. True: the
        whole file, in windows of ``[audio] duration_s`` every ``hop_s``.
    hop_s : float
        Seconds from one window's start to the next (15 s: windows of 30 s overlap by half).
    pooling : {"mean", "max", "mean+std"}
        How a clip's window vectors become its clip-level vector (``mean+std`` doubles its width).
    """

    windows: bool = False
    hop_s: float = 15.0
    pooling: str = "mean"

    def __post_init__(self) -> None:
        if not isinstance(self.windows, bool):
            raise ConfigError(f"[clip] windows={self.windows!r}: expected true or false")
        if not (is_number(self.hop_s) and self.hop_s > 0):
            raise ConfigError(f"[clip] hop_s={self.hop_s!r}: expected seconds > 0")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"[clip] pooling={self.pooling!r}: expected one of {list(POOLINGS)}")


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float


def plan_windows(duration_s: float, length_s: float, hop_s: float) -> list[Window]:
    """Windows of ``length_s`` every ``hop_s`` from 0 and one more ending at ``duration_s``, unless the seconds
    left after the others are fewer than ``TAIL_S`` (that window would be a near copy of the one before, counted
    twice in a pooled vector); one window of ``length_s`` from 0 when the file is not longer than that."""
    if hop_s <= 0 or length_s <= 0:
        raise ConfigError(f"a hop of {hop_s} s and a window of {length_s} s: both must be positive")
    if duration_s <= length_s:
        return [Window(0.0, length_s)]
    starts = [round(float(s), 3) for s in np.arange(0.0, duration_s - length_s + 1e-9, hop_s)]  # ms: a window's id
    last = round(duration_s - length_s, 3)
    if last - starts[-1] >= TAIL_S:
        starts.append(last)
    return [Window(s, round(s + length_s, 3)) for s in starts]


def pool(vectors: np.ndarray, pooling: str) -> np.ndarray:
    """One clip's vector from its windows' ``vectors`` (n_windows, d): (d,) for mean and max, (2d,) for mean+std."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if pooling == "mean":
        return vectors.mean(axis=0)
    if pooling == "max":
        return vectors.max(axis=0)
    if pooling == "mean+std":
        return np.concatenate([vectors.mean(axis=0), vectors.std(axis=0)])
    raise ConfigError(f"pooling {pooling!r}: expected one of {list(POOLINGS)}")


def pooled_width(width: int, pooling: str) -> int:
    return 2 * width if pooling == "mean+std" else width


def stream_ends(clip: Clip) -> tuple[dict[str, float], str]:
    """Where each modality the clip has ends on its file's timeline, in seconds from time zero (read from the
    stream's packets: its start time included, and right for containers such as Matroska whose header gives no
    stream length; its audio from ``clip.audio``, its video from ``clip.video``, each distinct file probed once),
    or {} and why not: a file that cannot be read whole (missing, undecodable, cut off) has no length to lay
    windows over."""
    ends = {}
    probed = {path: probe_file(path) for path in dict.fromkeys(p for p in (clip.audio, clip.video) if p is not None)}
    for kind, path in (("audio", clip.audio), ("video", clip.video)):
        if path is None:
            continue
        info = probed[path]
        if info.error:
            return {}, f"clip {clip.clip_id!r}: {path}: {info.error}"
        stream = info.audio if kind == "audio" else info.video
        if stream is not None:
            ends[kind] = stream.end_s
    if not ends:
        return {}, f"clip {clip.clip_id!r}: its files hold none of the streams the manifest gives it"
    return ends, ""


def media_length_s(clip: Clip, modalities: Iterable[str] = ("audio", "video")) -> tuple[float | None, str]:
    """Seconds from time zero that every stream of ``modalities`` the clip has covers, or None and why not
    (``stream_ends``)."""
    ends, problem = stream_ends(clip)
    covered = [end for kind, end in ends.items() if kind in modalities]
    if not covered and not problem:
        problem = f"clip {clip.clip_id!r}: its files hold no {' or '.join(modalities)} stream"
    return (min(covered) if covered else None), problem


def window_id(clip_id: str, window: Window) -> str:
    """A window's row id in the window cache: its clip's id and its start, e.g. ``song@15.000``."""
    return f"{clip_id}@{window.start_s:.3f}"


@dataclass(frozen=True)
class WindowPlan:
    """Every clip's windows: ``manifest`` lists them as clips (their clip's label, group and fold), ``windows``
    gives each window row's times and ``clip_of`` its clip's id; ``problems`` the clips whose length could not be
    read, each with why (they get one window from 0, whose sets fail or not as the decoders find, and fail as
    clips: a clip vector is never pooled from part of a clip)."""

    manifest: Manifest
    windows: Mapping[str, Window]
    clip_of: Mapping[str, str]
    problems: Mapping[str, str] = field(default_factory=dict)

    def offsets(self) -> dict[str, float]:
        return {row_id: window.start_s for row_id, window in self.windows.items()}

    def rows_of(self, clip_ids: Iterable[str], row_ids: list[str]) -> dict[str, list[int]]:
        """The window-cache rows of each clip (``row_ids``: the window cache's ids)."""
        rows: dict[str, list[int]] = {clip_id: [] for clip_id in clip_ids}
        for row, row_id in enumerate(row_ids):
            if row_id in self.clip_of:
                rows[self.clip_of[row_id]].append(row)
        return rows


def plan_clips(manifest: Manifest, *, length_s: float, hop_s: float) -> WindowPlan:
    """Each clip's windows over its whole length, as a manifest whose rows are windows (a clip's windows share its
    group, so folds and inner folds never split them). A clip with annotations over time gives each window the mean
    of its annotated values within it (``manifests.targets.window_values``), so that stage two over the window
    cache (``mvemo-cv --cache CACHE/windows --target valence,arousal``) trains and scores windows against them."""
    clips, windows, clip_of, problems = [], {}, {}, {}
    names = manifest.value_names
    for clip in manifest.clips:
        duration_s, problem = media_length_s(clip)
        if problem:
            problems[clip.clip_id] = problem
        annotated = None
        if clip.annotations is not None:
            annotated = read_annotations(
                clip.annotations,
                clip_id=clip.clip_id,
                names=names,
                scale=manifest.scale,  # type: ignore[arg-type]
            )
        for window in plan_windows(duration_s or 0.0, length_s, hop_s):
            row_id = window_id(clip.clip_id, window)
            row = replace(clip, clip_id=row_id, group=group_id(clip.group, clip.clip_id))
            if annotated is not None:
                means = window_values(*annotated, window.start_s, window.end_s, clip_id=clip.clip_id)
                mean = dict(zip(names, map(float, means)))
                row = replace(row, valence=mean.get("valence", row.valence), arousal=mean.get("arousal", row.arousal))
            clips.append(row)
            windows[row_id], clip_of[row_id] = window, clip.clip_id
    return WindowPlan(replace(manifest, clips=tuple(clips)), windows, clip_of, problems)


def window_cache(cache_path: str | os.PathLike[str]) -> Path:
    """The cache of a cache's windows: a cache folder of its own inside it."""
    return Path(cache_path) / WINDOWS_FOLDER
