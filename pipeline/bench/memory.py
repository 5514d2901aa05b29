"""``mvemo bench memory``: the peak memory of ``mvemo-cv`` over a cache of many clips with LLDs.

The cache holds LLDs of the real shape (1,292 frames x 63 columns, float32: 326 KB a clip) for
``n_clips`` stand-in clips, written a chunk at a time, and ``mvemo-cv --models lldstats`` runs in a process
of its own, so its peak resident memory (of its largest process) is its alone. The same run over a
tenth of the clips gives the baseline: memory that does not grow with the clips stays near it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.store import CacheWriter
from mvemo.extract.features import FeatureConfigs
from mvemo.manifests.schema import Clip, Manifest
from mvemo.pipeline.bench.common import BENCH_CLASSES

GOAL_PEAK_MB = 4096
WRITE_CHUNK_CLIPS = 500


def bench_memory(*, n_clips: int = 20_000, k: int = 6, folder: str | None = None) -> dict[str, Any]:
    """Peak RSS of ``mvemo-cv --models lldstats`` over ``n_clips`` clips with LLDs, beside the same run over a tenth
    of them, and the bytes of the LLD tensor either run would hold if it read it whole."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        runs = {}
        for n in (max(n_clips // 10, 10 * len(BENCH_CLASSES)), n_clips):
            cache = lld_cache(Path(tmp) / f"cache{n}", n, k=k)
            runs[n] = _cv(cache, Path(tmp) / f"report{n}")
    small, large = (runs[n] for n in sorted(runs))
    lld_bytes = n_clips * int(np.prod(_lld_spec().row_shape)) * 4
    return {
        "clips": n_clips,
        "lld_gb": round(lld_bytes / 1e9, 2),
        "peak_rss_mb": large["peak_rss_mb"],
        "goal_peak_mb": GOAL_PEAK_MB,
        "peak_rss_mb_tenth_of_the_clips": small["peak_rss_mb"],
        "peak_ratio_10x_clips": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
        "peak_over_lld_bytes": round(large["peak_rss_mb"] * 2**20 / lld_bytes, 3),
        "cv_wall_s": round(large["wall_s"], 1),
    }


def _lld_spec() -> Any:
    return next(spec for spec in FeatureConfigs().specs(["lld"]) if spec.name == "lld")


def lld_cache(path: Path, n_clips: int, *, k: int) -> Path:
    """A cache of ``n_clips`` stand-in clips in ``k`` folds with LLDs of the real shape, class means apart."""
    spec = _lld_spec()
    frames, columns = spec.row_shape
    media = path.parent / f"{path.name}-media"
    media.mkdir(parents=True)
    clips = []
    for i in range(n_clips):
        (media / f"{i}.wav").write_bytes(i.to_bytes(4, "little"))
        clips.append(Clip(f"clip{i}", BENCH_CLASSES[i % len(BENCH_CLASSES)], audio=media / f"{i}.wav", fold=(i // 6) % k))
    rng = np.random.default_rng(0)
    means = rng.standard_normal((len(BENCH_CLASSES), columns)).astype(np.float32) * 0.2
    with CacheWriter(path, Manifest(BENCH_CLASSES, tuple(clips))) as writer:
        writer.prepare([spec])
        for start in range(0, n_clips, WRITE_CHUNK_CLIPS):
            rows = range(start, min(start + WRITE_CHUNK_CLIPS, n_clips))
            noise = rng.standard_normal((len(rows), frames, columns), dtype=np.float32)
            writer.write("lld", rows, noise + means[[r % len(BENCH_CLASSES) for r in rows]][:, None, :])
    return path


def _cv(cache: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, "-c", "from mvemo.pipeline.cli.main import cv_main; cv_main()"]
    command += ["--cache", str(cache), "--out", str(out), "--models", "lldstats"]
    began = time.perf_counter()
    pid = os.posix_spawn(sys.executable, command, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)  # the rusage of that process and its children alone
    if status:
        raise RuntimeError(f"mvemo-cv failed (status {status}): {' '.join(command)}")
    return {"wall_s": time.perf_counter() - began, "peak_rss_mb": round(usage.ru_maxrss / 1024)}
