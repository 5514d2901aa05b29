"""Stage one's feature pass: decode each clip, compute its feature sets, write them through the cache.

Workers compute (through any executor with a ``map`` that yields results in
order: serial by default, a process pool or a Dask adapter from ``pipeline``);
this process is the cache's single writer. A clip that fails is recorded with
its reason and the run goes on; nothing non-finite reaches the cache.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from mvemo.cache.handle import CacheHandle
from mvemo.cache.layout import ABSENT, FACE_FEATURES, VIDEO_FEATURES, VIDEO_SETS, FeatureSpec, modality
from mvemo.cache.store import CacheWriter
from mvemo.extract.audio import (
    SIGNAL_CONFIGS,
    Audio48kConfig,
    LogMelConfig,
    MelConfig,
    WaveformConfig,
    audio_configs,
    audio_features,
    compute_audio_features,
    config_from_dict,
    feature_specs,
)
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.decode.nvdec import require_decoder
from mvemo.extract.decode.video import available_cores
from mvemo.extract.decode.worker import read_audio
from mvemo.extract.faces.sets import FaceConfig, face_specs
from mvemo.extract.frame_sets import FrameConfig, compute_video_features, sampling_record, video_feature_specs
from mvemo.extract.handcrafted.lld import LldConfig
from mvemo.extract.handcrafted.registry import HANDCRAFTED
from mvemo.extract.numba_once import compile_numba_once
from mvemo.manifests.errors import ConfigError, MvemoError, is_number
from mvemo.manifests.executor import Executor, Progress
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.steps import add, recording, step

FEATURE_GROUPS = {"frames": VIDEO_FEATURES, "faces": FACE_FEATURES}  # a name that stands for several sets
WRITE_EVERY_CLIPS = 8


@dataclass(frozen=True)
class FeatureConfigs:
    """The configs of every feature set stage one can compute. Audio sets share one analysis window.

    ``audio_timeout_s`` bounds the decoding of a clip's audio, in the decoder process that also
    samples its frames (None: in this process, unbounded); like ``FrameConfig.timeout_s`` it
    changes no output, so it is in no fingerprint.
    """

    mel: MelConfig = field(default_factory=MelConfig)
    lld: LldConfig = field(default_factory=LldConfig)
    waveform: WaveformConfig = field(default_factory=WaveformConfig)
    audio48k: Audio48kConfig = field(default_factory=Audio48kConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    audio_timeout_s: float | None = 60.0
    logmel: LogMelConfig = field(default_factory=LogMelConfig)
    # the configs of the handcrafted registry's sets (``extract.handcrafted.registry``), by set name
    handcrafted: Mapping[str, Any] = field(
        default_factory=lambda: {name: e.config() for name, e in HANDCRAFTED.items()}
    )
    faces: FaceConfig = field(default_factory=FaceConfig)

    def __post_init__(self) -> None:
        timeout = self.audio_timeout_s
        if timeout is not None and not (is_number(timeout) and timeout > 0):
            raise ConfigError(f"[audio] timeout_s={timeout!r}: expected seconds > 0")
        windows = {config.audio_window for config in self.audio.values()}
        if len(windows) > 1:
            raise ConfigError(
                f"the audio sets {list(audio_features())} must analyse the same audio window,"
                f" got {sorted(map(str, windows))}"
            )

    @property
    def audio(self) -> dict[str, Any]:
        """The config of every audio set, by set name."""
        return {name: getattr(self, name) for name in SIGNAL_CONFIGS} | dict(self.handcrafted)

    @property
    def audio_window(self) -> AudioWindow:
        return self.mel.audio_window

    @classmethod
    def of_window(cls, window: AudioWindow, **configs: Any) -> FeatureConfigs:
        """Every audio set's default config over ``window`` (the frames' too), the ``configs`` given (by set name, the
        handcrafted sets' among them) replacing them."""
        defaults = {name: config(audio_window=window) for name, config in audio_configs().items()} | configs
        frames = FrameConfig(window_start_s=window.offset_s, window_duration_s=window.duration_s)
        handcrafted = {name: defaults.pop(name) for name in HANDCRAFTED}
        return cls(**{"frames": frames, **defaults}, handcrafted=handcrafted)

    @classmethod
    def from_records(cls, records: Mapping[str, Mapping[str, Any]], weights_dir: str | None = None) -> FeatureConfigs:
        """The configs that feature sets were computed with, from the ``config`` each stored (in a cache or a saved
        model), by set name; the audio sets not named share the audio window of those named. ``weights_dir``: where
        the faces sets' weight files lie."""
        known = audio_features()
        unknown = sorted(set(records) - set(known) - set(VIDEO_SETS))
        if unknown:
            raise ConfigError(f"feature sets {unknown}: this version computes only {[*known, *VIDEO_SETS]}")
        audio = {name: config_from_dict(name, dict(records[name])) for name in known if name in records}
        window = next((config.audio_window for config in audio.values()), AudioWindow())
        video: dict[str, Any] = {}
        for name in VIDEO_SETS:
            video |= records.get(name, {})
        frames = FrameConfig(**{k: video[k] for k in FrameConfig.__dataclass_fields__ if k in video})
        faces = FaceConfig(
            **{k: video[k] for k in FaceConfig.__dataclass_fields__ if k in video}, weights_dir=weights_dir
        )
        return cls.of_window(window, frames=frames, faces=faces, **audio)

    def with_weights_dir(self, weights_dir: str | os.PathLike[str] | None) -> FeatureConfigs:
        """These configs with the faces sets' weight files looked for in ``weights_dir`` first (None: as they are)."""
        if weights_dir is None:
            return self
        folder = os.path.abspath(weights_dir)  # workers may run in another folder
        return dataclasses.replace(self, faces=dataclasses.replace(self.faces, weights_dir=folder))

    def at(self, offset_s: float) -> FeatureConfigs:
        """These configs over the window that starts ``offset_s`` seconds into the file: audio and frames alike, each
        as long as before (frames without a length: as long as the audio window, never to the file's end)."""
        window = dataclasses.replace(self.audio_window, offset_s=offset_s)
        audio = {name: dataclasses.replace(config, audio_window=window) for name, config in self.audio.items()}
        duration_s = self.frames.window_duration_s or window.duration_s
        frames = dataclasses.replace(self.frames, window_start_s=offset_s, window_duration_s=duration_s)
        handcrafted = {name: audio.pop(name) for name in self.handcrafted}
        return dataclasses.replace(self, frames=frames, handcrafted=handcrafted, **audio)

    def specs(self, names: Iterable[str]) -> list[FeatureSpec]:
        names = set(names)
        audio = feature_specs({name: config for name, config in self.audio.items() if name in names})
        video = [spec for spec in video_feature_specs(self.frames) if spec.name in names]
        if names & set(FACE_FEATURES):  # their specs need the weight files: only when asked for
            faces = face_specs(self.faces, self.frames.n_frames, sampling_record(self.frames))
            video += [spec for spec in faces if spec.name in names]
        return audio + video


def parse_features(text: str) -> tuple[str, ...]:
    """``"mel, frames"`` -> ("mel", "frames224", "frames112"); unknown names raise ``ConfigError``."""
    known = tuple(dict.fromkeys((*audio_features(), *VIDEO_SETS, *FEATURE_GROUPS)))
    names: list[str] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in known:
            raise ConfigError(f"--features: unknown feature {name!r}; choose from {', '.join(known)}")
        names.extend(FEATURE_GROUPS.get(name, (name,)))
    if not names:
        raise ConfigError("--features is empty; give e.g. mel,lld")
    return tuple(dict.fromkeys(names))


@dataclass
class SetSummary:
    done: int = 0
    computed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    absent: int = 0


@dataclass
class FeatureRunSummary:
    """What a feature pass did: per feature set, rows done, computed now, failed (clip -> reason), absent; its wall
    seconds, and the seconds of each step (``manifests.steps``): the workers' (``WORKER_STEPS``, summed over the
    clips) and this process's (``WRITER_STEPS``)."""

    sets: dict[str, SetSummary]
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, dict[str, str]]:
        return {name: s.failed for name, s in self.sets.items() if s.failed}


def compute_clip(clip: Clip, names: tuple[str, ...], configs: FeatureConfigs) -> dict[str, Any]:
    """Every requested feature set of one clip: an array, or a failure reason (str), or ``ABSENT``.

    Runs in a worker: it never raises for bad media, so one broken file cannot stop a run.
    A modality the manifest does not give the clip is ``ABSENT``; a file that lacks
    the stream the manifest promises is a failure naming the clip.
    """
    audio = tuple(n for n in names if modality(n) == "audio")  # FeatureConfigs.specs admits nothing else
    video = tuple(n for n in names if modality(n) == "video")

    def audio_features(path: Path) -> dict[str, np.ndarray]:
        with step("decode audio"):
            decoded = read_audio(path, configs.audio_window, clip_id=clip.clip_id, timeout_s=configs.audio_timeout_s)
        with step("audio features"):
            compile_numba_once()
            return compute_audio_features(decoded, audio, configs.audio)

    def video_features(_: Path) -> dict[str, np.ndarray]:
        return compute_video_features(clip, configs.frames, configs.faces if set(video) & set(FACE_FEATURES) else None)

    result: dict[str, Any] = {}
    for wanted, path, compute in ((audio, clip.audio, audio_features), (video, clip.video, video_features)):
        if wanted:
            result |= (
                dict.fromkeys(wanted, ABSENT)
                if path is None
                else _guarded(clip, wanted, functools.partial(compute, path))
            )
    return result


def _guarded(clip: Clip, names: tuple[str, ...], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, Any]:
    try:
        with threadpool_limits(1):  # BLAS threads change float sums: one thread makes every executor's cache identical
            values = compute()
    except MvemoError as err:
        return dict.fromkeys(names, str(err))
    except Exception as err:  # a decoder or library fault on one clip must not stop the run
        return dict.fromkeys(names, f"clip {clip.clip_id!r}: {type(err).__name__}: {err}")
    return {name: values[name] for name in names}


WORKER_STEPS = ("decode audio", "audio features", "decode video", "video features")
# the writer waits for the next clip's results (their transfer included; only where they are computed elsewhere),
# writes rows (their checksums included), waits for the nets that embed clips alongside (``extract.overlap``)
WRITER_STEPS = ("waiting", "writing", "checksums", "nets")


class ClipConsumer(Protocol):
    """What takes each clip's computed sets besides the cache (``extract.overlap``: the nets, alongside decoding)."""

    def take(self, row: int, result: Mapping[str, Any]) -> None:
        """A clip's result: per set, its array or why it has none."""

    def written(self) -> None:
        """The rows of every result taken so far are in the cache."""


def timed_clip(clip: Clip, names: tuple[str, ...], configs: FeatureConfigs) -> tuple[dict[str, Any], dict[str, float]]:
    """``compute_clip`` and the seconds of each of its steps, in the worker that runs it."""
    with recording() as seconds:
        return compute_clip(clip, names, configs), seconds


def compute_feature_sets(
    manifest: Manifest,
    cache: CacheHandle,
    names: Iterable[str],
    *,
    configs: FeatureConfigs | None = None,
    recompute: Iterable[str] = (),
    executor: Executor | None = None,
    progress: Progress | None = None,
    offsets: Mapping[str, float] | None = None,
    alongside: ClipConsumer | None = None,
) -> FeatureRunSummary:
    """Compute the feature sets ``names`` of every clip not yet done, into the cache.

    Parameters
    ----------
    manifest : Manifest
    cache : CacheHandle
        The cache, opened for ``manifest`` by the stage.
    names : iterable of str
        Feature sets: waveform, mel, lld, frames224, frames112.
    configs : FeatureConfigs, optional
        Defaults to the papers' settings.
    recompute : iterable of str
        Feature sets to start over.
    executor : object with ``map``, optional
        Where clips are computed; serial by default.
    progress : callable, optional
        Wraps the result iterator (e.g. a tqdm bar): ``progress(iterable, total)``.
    offsets : mapping of str to float, optional
        Per clip id, where its window starts in seconds (the rows of a window cache), instead of the configs' own.
    alongside : ClipConsumer, optional
        Takes each clip's result as it comes, and hears after each write that its rows are in the cache.
    """
    configs = shared_cores(configs or FeatureConfigs(), executor)
    names = tuple(dict.fromkeys(names))
    if set(names) & set(VIDEO_SETS):
        require_decoder(configs.frames.decoder)
    began = time.perf_counter()
    writer = cache.writer
    writer.prepare(configs.specs(names), recompute=recompute)
    todo: dict[int, list[str]] = defaultdict(list)
    for name in names:
        for row in writer.todo(name):
            todo[int(row)].append(name)
    row_of = {clip_id: row for row, clip_id in enumerate(writer.clip_ids)}
    clips = [c for c in manifest.clips if row_of[c.clip_id] in todo]
    jobs = [tuple(todo[row_of[c.clip_id]]) for c in clips]
    mapper = map if executor is None else executor.map
    per_clip = [configs if offsets is None else configs.at(offsets[c.clip_id]) for c in clips]
    results: Iterable[Any] = mapper(timed_clip, clips, jobs, per_clip)
    if progress is not None:
        results = progress(results, len(clips))
    summary = {name: SetSummary() for name in names}
    pending: dict[str, tuple[list[int], list[np.ndarray]]] = defaultdict(lambda: ([], []))
    steps: dict[str, float] = {}
    with recording() as writer_steps:
        in_process = executor is None or getattr(executor, "in_process", False)  # waiting there is the clips' own work
        for n, (outcome, clip) in enumerate(
            zip(results if in_process else _waited(results), clips, strict=True), start=1
        ):
            row = row_of[clip.clip_id]
            if isinstance(outcome, BaseException):  # the executor lost the job (a worker died on this clip)
                result = dict.fromkeys(
                    todo[row], f"clip {clip.clip_id!r}: its worker died ({type(outcome).__name__}: {outcome})"
                )
            else:
                result, seconds = outcome
                add(steps, seconds)
            _collect(writer, result, row, clip, summary, pending)
            if alongside is not None:
                alongside.take(row, result)
            if n % WRITE_EVERY_CLIPS == 0:
                _flush(writer, pending, alongside)
        _flush(writer, pending, alongside)
    add(steps, writer_steps)
    reader = cache.reopen()
    failures = reader.failures()
    for name, s in summary.items():
        status = reader.status(name)
        s.done = int(reader.done(name).sum())
        s.absent = int((status == ABSENT).sum())
        s.failed = {f["clip_id"]: f["reason"] for f in failures if f["feature_set"] == name}
    return FeatureRunSummary(summary, time.perf_counter() - began, steps)


def shared_cores(configs: FeatureConfigs, executor: Executor | None) -> FeatureConfigs:
    """``configs`` with each of the executor's ``local_workers`` decoding video on its share of this machine's
    cores, where the frames' ``decode_threads`` is left to mvemo (0): one decoder per core in every worker
    oversubscribes the cores as soon as two workers decode (720p, 2 workers on 2 cores: 0.89 of twice one core's rate,
    1.05 with the cores shared; ``mvemo bench stage-one``). The threads change no frame."""
    workers = getattr(executor, "local_workers", 0)
    if workers < 2 or configs.frames.decode_threads:
        return configs
    threads = max(1, available_cores() // workers)
    return dataclasses.replace(configs, frames=dataclasses.replace(configs.frames, decode_threads=threads))


def _waited(results: Iterable[Any]) -> Iterator[Any]:
    """``results`` one by one, the seconds spent waiting for each recorded as the step ``waiting``."""
    stream = iter(results)
    while True:
        with step("waiting"):
            outcome = next(stream, _END)
        if outcome is _END:
            return
        yield outcome


_END = object()


def _collect(
    writer: CacheWriter,
    result: dict[str, Any],
    row: int,
    clip: Clip,
    summary: dict[str, SetSummary],
    pending: dict[str, tuple[list[int], list[np.ndarray]]],
) -> None:
    """One clip's result: its arrays queued for the next write, its failures and absences recorded."""
    for name, value in result.items():
        if isinstance(value, np.ndarray):
            pending[name][0].append(row)
            pending[name][1].append(value)
            summary[name].computed += 1
        elif value is ABSENT:
            writer.fail(name, row, f"clip {clip.clip_id!r} has no {modality(name)} in the manifest", status=ABSENT)
        else:
            writer.fail(name, row, value)


def _flush(
    writer: CacheWriter, pending: dict[str, tuple[list[int], list[np.ndarray]]], alongside: ClipConsumer | None
) -> None:
    with step("writing"):
        for name, (rows, arrays) in pending.items():
            if rows:
                writer.write(name, rows, arrays)
    pending.clear()
    if alongside is not None:
        alongside.written()
