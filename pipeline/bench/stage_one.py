"""``mvemo bench stage-one``: stage one's decoding and features in steady state, by worker count.

For each size of generated clip (30-s h264 + AAC, ``bench.video.generate_clip``) and each count of local worker
processes, a pool is started and warmed on ``WARM_CLIPS_PER_WORKER`` clips per worker (its start-up, to the end
of that warm-up, measured apart: ``warmed_run``), then ``clips_per_worker`` clips per worker are decoded into the
default sets (``SETS``: the frames for C3D and I3D, log-mel, mel, LLDs, descriptors) through ``extract_features``'
own loop, ``compute_feature_sets``, into a fresh cache. The run of one worker decodes on one thread, so that it
measures one core's work (more workers share the cores as ``extract`` shares them: ``features.shared_cores``).
Reported per run: clips/s, the scaling efficiency (rate over workers times that one worker's rate), and where the
wall time went, by the run's own step timers (``manifests.steps``): the workers' share of their time decoding and
computing (the rest they waited to hand a clip over or for the next one), and the writer's share of the wall time
waiting for clips, checksumming and writing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mvemo.cache.handle import CacheHandle
from mvemo.extract.decode.video import available_cores
from mvemo.extract.features import WORKER_STEPS, FeatureConfigs, FeatureRunSummary, compute_feature_sets
from mvemo.extract.frame_sets import FrameConfig
from mvemo.manifests.executor import Executor
from mvemo.manifests.schema import Clip, Manifest
from mvemo.pipeline.bench.video import SIZES, generate_clip
from mvemo.pipeline.executors import build_executor

SETS = ("frames224", "frames112", "logmel", "mel", "lld", "descriptors")
STARTUP_WORKERS = 16  # the GPU box's cores: how long a pool of them takes to start, apart from any clip
WARM_CLIPS_PER_WORKER = 2
AUDIO_SR = 44100


def bench_stage_one(
    *,
    workers: tuple[int, ...] = (1, 2),
    clips_per_worker: int = 8,
    sizes: tuple[str, ...] = ("240p", "720p"),
    seconds: int = 30,
    startup_workers: int = STARTUP_WORKERS,
    folder: str | None = None,
) -> dict[str, Any]:
    """The figures of ``mvemo bench stage-one --json``: the start-up of a pool of ``startup_workers``, then per size
    of clip (``seconds`` long) a run per worker count."""
    document: dict[str, Any] = {"sets": list(SETS), "clips_per_worker": clips_per_worker, "cores": available_cores()}
    document["pool_startup_s"] = {str(startup_workers): round(pool_startup_s(startup_workers), 2)}
    document["sizes"] = {}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for size in sizes:
            source = generate_clip(Path(tmp) / f"{size}.mp4", *SIZES[size], seconds=seconds, audio_sr=AUDIO_SR)
            runs = [_run(Path(tmp), source, n, clips_per_worker) for n in workers]
            one = next((r["clips_per_s"] / r["workers"] for r in runs if r["workers"] == 1), None)
            for r in runs:
                r["scaling_efficiency"] = None if one is None else round(r["clips_per_s"] / (r["workers"] * one), 2)
            document["sizes"][size] = runs
    return document


def _run(tmp: Path, source: Path, workers: int, clips_per_worker: int) -> dict[str, Any]:
    warm = _copies(tmp / f"warm-{source.stem}-{workers}", source, WARM_CLIPS_PER_WORKER * workers)
    timed = _copies(tmp / f"timed-{source.stem}-{workers}", source, clips_per_worker * workers)
    configs = FeatureConfigs(frames=FrameConfig(decode_threads=1)) if workers == 1 else None

    def run(manifest: Manifest, name: str, executor: Executor) -> FeatureRunSummary:
        with CacheHandle(tmp / f"{name}-{source.stem}-{workers}.cache", manifest) as cache:
            return compute_feature_sets(manifest, cache, SETS, configs=configs, executor=executor)

    startup, summary = warmed_run(workers, warm, timed, run)
    return {"workers": workers, "startup_s": round(startup, 2), **figures(summary, len(timed.clips), workers)}


def warmed_run(
    workers: int, warm: Manifest, timed: Manifest, run: Callable[[Manifest, str, Executor], FeatureRunSummary]
) -> tuple[float, FeatureRunSummary]:
    """A pool of ``workers`` local processes started and warmed on ``warm`` (``run(warm, "warm", pool)``), then
    ``run(timed, "timed", pool)``: the seconds from the pool's start to the end of the warm-up (its start-up, the
    imports and the first clips), and the timed run's summary, in steady state."""
    began = time.perf_counter()
    with build_executor("processes", workers=workers) as executor:
        run(warm, "warm", executor)
        startup = time.perf_counter() - began
        return startup, run(timed, "timed", executor)


def pool_startup_s(workers: int) -> float:
    """Seconds from starting a pool of ``workers`` to the end of two jobs per worker that import what a stage-one job
    imports, less the two jobs' own hold: the workers' start-up and imports."""
    began = time.perf_counter()
    with build_executor("processes", workers=workers) as executor:
        list(executor.map(_hold, [STARTUP_HOLD_S] * 2 * workers))
    return time.perf_counter() - began - 2 * STARTUP_HOLD_S


STARTUP_HOLD_S = 0.25  # each job holds its worker this long, so that every worker gets one


def _hold(seconds: float) -> None:
    """A job that imports what a stage-one job imports and holds its worker for ``seconds``."""
    import mvemo.extract.features  # noqa: F401

    time.sleep(seconds)


def figures(summary: FeatureRunSummary, n_clips: int, workers: int) -> dict[str, Any]:
    """Clips/s, the workers' share of their time in each step, the writer's share of the wall time, and the writer's
    milliseconds per clip (checksums included) with the rate at which they would bound the run."""
    wall, steps = summary.seconds, summary.steps
    worker_time = workers * wall
    busy = {name: steps.get(name, 0.0) / worker_time for name in WORKER_STEPS}
    writing = steps.get("writing", 0.0)
    checksums = steps.get("checksums", 0.0)
    writer = {
        "waiting for clips": steps.get("waiting", 0.0) / wall,
        "checksums": checksums / wall,
        "writing rows": (writing - checksums) / wall,
    }
    shares = {f"workers: {name}": share for name, share in busy.items()} | {
        "workers: idle or handing over": max(0.0, 1 - sum(busy.values()))
    }
    shares |= {f"writer: {name}": share for name, share in writer.items()}
    working = {name: share for name, share in shares.items() if name != "writer: waiting for clips"}
    largest = max(working, key=lambda name: working[name])
    writer_ms = 1000 * writing / n_clips
    return {
        "clips": n_clips,
        "wall_s": round(wall, 2),
        "clips_per_s": round(n_clips / wall, 2),
        "shares": {name: round(share, 3) for name, share in shares.items()},
        "largest_share": largest,
        "writer_ms_per_clip": round(writer_ms, 1),
        # where the one writer, busy all the time, would cap the run: more workers than that rate allows wait on it
        "writer_bound_clips_per_s": round(1000 / writer_ms, 1) if writer_ms > 0 else None,
    }


def _copies(folder: Path, source: Path, n: int) -> Manifest:
    """``n`` copies of ``source`` as clips of their own (each its own file, so each is decoded)."""
    folder.mkdir(parents=True)
    clips = []
    for i in range(n):
        path = folder / f"clip{i:03d}.mp4"
        shutil.copyfile(source, path)
        clips.append(Clip(f"clip{i:03d}", "music", video=path, audio=path))
    return Manifest(("music",), tuple(clips))


def table(document: dict[str, Any]) -> list[list[str]]:
    """Rows of the bench's table: size, workers, start-up, clips/s, efficiency, and the largest share."""
    rows = []
    for size, runs in document["sizes"].items():
        for r in runs:
            share = r["shares"][r["largest_share"]]
            efficiency = "-" if r["scaling_efficiency"] is None else f"{r['scaling_efficiency']:.2f}"
            rows.append(
                [
                    size,
                    str(r["workers"]),
                    f"{r['startup_s']:.1f}",
                    f"{r['clips_per_s']:.2f}",
                    efficiency,
                    f"{r['largest_share']} {share:.0%}",
                ]
            )
    return rows
