"""``mvemo bench scale``: audio-feature throughput serial vs local processes vs a local Dask cluster."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.handle import CacheHandle
from mvemo.extract.features import compute_feature_sets
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.executors import build_executor


def bench_scale(
    *, n_clips: int = 200, workers: int = 2, duration_s: float = 30.0, folder: str | None = None
) -> dict[str, Any]:
    """Seconds to compute mel and LLDs of ``n_clips`` AAC clips serially, and the speedups of
    ``workers`` local processes and of a ``workers``-worker Dask LocalCluster, measured in one run.

    Each executor is started and warmed up (imports, first clips) before it is timed.
    """
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        manifest = _clips(Path(tmp), n_clips, duration_s)
        seconds = {}
        for kind in ("serial", "processes", "dask"):
            with build_executor(kind, workers=workers) as executor:
                # throughput, not start-up: workers import and warm up on a few clips first
                warm = Manifest(manifest.classes, manifest.clips[: 2 * workers])
                with CacheHandle(Path(tmp) / f"warm-{kind}.h5", warm) as cache:
                    compute_feature_sets(warm, cache, ("mel", "lld"), executor=executor)
                began = time.perf_counter()
                with CacheHandle(Path(tmp) / f"{kind}.h5", manifest) as cache:
                    compute_feature_sets(manifest, cache, ("mel", "lld"), executor=executor)
                seconds[kind] = time.perf_counter() - began
    return {
        "clips": n_clips,
        "workers": workers,
        "serial_s": round(seconds["serial"], 2),
        "processes_s": round(seconds["processes"], 2),
        "dask_s": round(seconds["dask"], 2),
        "speedup_processes": round(seconds["serial"] / seconds["processes"], 2),
        "speedup_dask": round(seconds["serial"] / seconds["dask"], 2),
        "clips_per_s_serial": round(n_clips / seconds["serial"], 2),
    }


def _clips(folder: Path, n_clips: int, duration_s: float) -> Manifest:
    """One 30 s AAC music clip, copied ``n_clips`` times (each copy is its own clip to the cache)."""
    rng = np.random.default_rng(0)
    t = np.arange(round(44100 * duration_s)) / 44100
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.5 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    source = write_media(folder / "source.m4a", y=np.stack([y, y], axis=1), sr=44100)
    clips = []
    for i in range(n_clips):
        path = folder / f"clip{i:04d}.m4a"
        shutil.copyfile(source, path)
        clips.append(Clip(f"clip{i:04d}", "music", audio=path))
    return Manifest(("music",), tuple(clips))
