"""``mvemo bench memory``: the peak memory of stage two over caches of many clips.

- ``mvemo-cv --models lldstats`` over LLDs of the real shape (1,292 frames x 63 columns, float32: 326 KB a clip);
- ``mvemo fuse`` (the CV, then the final model) over musicnn's activations at ``cnn2_cut`` (10 patches of 13,346
  values, float32: 534 KB a clip), the layers above fine-tuned from the published weights for one epoch of one
  setting (``[fuse] upper_*``): the time is not what is measured, the memory is.

Each cache is written a chunk at a time for stand-in clips, and each command runs in a process of its own, so its
peak resident memory (of its largest process) is its alone. The same run over a tenth of the clips gives the
baseline: memory that does not grow with the clips stays near it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.store import CacheWriter
from mvemo.extract.features import FeatureConfigs
from mvemo.manifests.schema import Clip, Manifest
from mvemo.pipeline.bench.common import BENCH_CLASSES

GOAL_PEAK_MB = 4096
GOAL_FUSE_CUT_PEAK_MB = 3072
WRITE_CHUNK_CLIPS = 500
CUT, CUT_PATCHES = "cnn2_cut", 10
CUT_INPUT = "musicnn.cut"
ONE_EPOCH = "[fuse]\nupper_max_epochs = 1\nupper_lr_grid = [3e-4]\nupper_weight_decay_grid = [1e-3]\n"


def bench_memory(
    *,
    n_clips: int = 20_000,
    cut_clips: int = 5_000,
    k: int = 6,
    folder: str | None = None,
    weights_dir: str | None = None,
) -> dict[str, Any]:
    """Peak RSS of ``mvemo-cv --models lldstats`` over ``n_clips`` clips with LLDs and of ``mvemo fuse`` over
    ``cut_clips`` clips of cut activations (module doc), each beside the same run over a tenth of the clips and the
    bytes of the input that run would hold if it read it whole; the second ``{"skipped": why}`` without musicnn's
    weights (``weights_dir``). Each cache is removed once its command has run."""
    lld_bytes = int(np.prod(_lld_spec().row_shape)) * 4
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cv_lld = _growth(n_clips, lld_bytes, lambda n: _cv(lld_cache(Path(tmp) / f"lld{n}", n, k=k)))
        file = _musicnn_weights(weights_dir)
        if file is None:
            fuse_cut: dict[str, Any] = {"skipped": "musicnn_msd_musicnn.npz not found: give --weights-dir"}
        else:
            width = _cut_width(file)
            fuse_cut = _growth(
                cut_clips,
                CUT_PATCHES * width * 4,
                lambda n: _fuse(cut_cache(Path(tmp) / f"cut{n}", n, file, width, k=k), file.parent),
            )
    return {
        "cv_lldstats": cv_lld | {"goal_peak_mb": GOAL_PEAK_MB},
        "fuse_cut": fuse_cut
        if "skipped" in fuse_cut
        else fuse_cut | {"cut": f"musicnn {CUT}", "goal_peak_mb": GOAL_FUSE_CUT_PEAK_MB},
    }


def _growth(n_clips: int, row_bytes: int, run: Any) -> dict[str, Any]:
    """``run(n)``'s peak RSS over ``n_clips`` clips beside a tenth of them, against the bytes of the input's rows."""
    small, large = (run(n) for n in (max(n_clips // 10, 10 * len(BENCH_CLASSES)), n_clips))
    input_bytes = n_clips * row_bytes
    return {
        "clips": n_clips,
        "input_gb": round(input_bytes / 1e9, 2),
        "peak_rss_mb": large["peak_rss_mb"],
        "peak_rss_mb_tenth_of_the_clips": small["peak_rss_mb"],
        "peak_ratio_10x_clips": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
        "peak_over_input_bytes": round(large["peak_rss_mb"] * 2**20 / input_bytes, 3),
        "wall_s": round(large["wall_s"], 1),
    }


def _lld_spec() -> Any:
    return next(spec for spec in FeatureConfigs().specs(["lld"]) if spec.name == "lld")


def lld_cache(path: Path, n_clips: int, *, k: int) -> Path:
    """A cache of ``n_clips`` stand-in clips in ``k`` folds with LLDs of the real shape, class means apart."""
    spec = _lld_spec()
    frames, columns = spec.row_shape
    rng = np.random.default_rng(0)
    means = rng.standard_normal((len(BENCH_CLASSES), columns)).astype(np.float32) * 0.2
    with _writer(path, n_clips, k, [spec]) as writer:
        for start in range(0, n_clips, WRITE_CHUNK_CLIPS):
            rows = range(start, min(start + WRITE_CHUNK_CLIPS, n_clips))
            noise = rng.standard_normal((len(rows), frames, columns), dtype=np.float32)
            writer.write("lld", rows, noise + means[[r % len(BENCH_CLASSES) for r in rows]][:, None, :])
    return path


def _writer(path: Path, n_clips: int, k: int, specs: list[FeatureSpec]) -> CacheWriter:
    """A writer of a cache of ``n_clips`` stand-in clips (files of a few bytes) in ``k`` folds, ``specs`` prepared."""
    media = path.parent / f"{path.name}-media"
    media.mkdir(parents=True)
    clips = []
    for i in range(n_clips):
        (media / f"{i}.wav").write_bytes(i.to_bytes(4, "little"))
        clips.append(
            Clip(f"clip{i}", BENCH_CLASSES[i % len(BENCH_CLASSES)], audio=media / f"{i}.wav", fold=(i // 6) % k)
        )
    writer = CacheWriter(path, Manifest(BENCH_CLASSES, tuple(clips)))
    try:
        writer.prepare(specs)
    except BaseException:
        writer.close()
        raise
    return writer


def _musicnn_weights(weights_dir: str | None) -> Path | None:
    from mvemo.extract.nets import pretrained_file
    from mvemo.extract.weights.registry import find_weights

    return find_weights(str(pretrained_file("musicnn")), weights_dir)


def _cut_width(file: Path) -> int:
    """The values per patch of musicnn's activations at the cut."""
    from mvemo.extract.nets import get_net

    return (
        get_net("musicnn", num_classes=2, weights=file, layer=CUT, pool="patches", patches=CUT_PATCHES).embedding_dim
        // CUT_PATCHES
    )


def cut_cache(path: Path, n_clips: int, weights: Path, width: int, *, k: int) -> Path:
    """A cache of ``n_clips`` stand-in clips in ``k`` folds with activations at musicnn's cut as stage one writes
    them (``emb/musicnn.cut/all``, the weights' sha256 recorded), non-negative as after a ReLU, class means apart."""
    from mvemo.extract.weights.registry import sha256_of

    config = {
        "net": "musicnn",
        "layer": CUT,
        "pool": "patches",
        "patches": CUT_PATCHES,
        "finetune": "none",
        "protocol": "leakfree",
    }
    spec = FeatureSpec(
        f"emb/{CUT_INPUT}/all",
        (CUT_PATCHES * width,),
        "float32",
        "musicnn",
        "1",
        config,
        sha256_of(weights),
        weights_file=weights.name,
    )
    rng = np.random.default_rng(0)
    means = np.abs(rng.standard_normal((len(BENCH_CLASSES), width))).astype(np.float32)
    with _writer(path, n_clips, k, [spec]) as writer:
        for start in range(0, n_clips, WRITE_CHUNK_CLIPS):
            rows = range(start, min(start + WRITE_CHUNK_CLIPS, n_clips))
            noise = np.abs(rng.standard_normal((len(rows), CUT_PATCHES, width), dtype=np.float32))
            X = noise + means[[r % len(BENCH_CLASSES) for r in rows]][:, None, :]
            writer.write(spec.name, rows, X.reshape(len(rows), -1))
    return path


def _fuse(cache: Path, weights_dir: Path) -> dict[str, Any]:
    config = cache.with_suffix(".toml")
    config.write_text(ONE_EPOCH)
    arguments = ["--models", CUT_INPUT, "--weights-dir", str(weights_dir), "--config", str(config)]
    return _stage_two(cache, "main", ["fuse", str(cache), "--out", f"{cache}-out", *arguments])


def _cv(cache: Path) -> dict[str, Any]:
    return _stage_two(cache, "cv_main", ["--cache", str(cache), "--out", f"{cache}-out", "--models", "lldstats"])


def _stage_two(cache: Path, entry: str, arguments: list[str]) -> dict[str, Any]:
    """Wall time and peak RSS of an mvemo command over ``cache`` run in a process of its own; then the cache and
    what the command wrote beside it are removed (the caches of a run take gigabytes each)."""
    try:
        return _measured([sys.executable, "-c", f"from mvemo.pipeline.cli.entry import {entry}; {entry}()", *arguments])
    finally:
        for path in (cache, Path(f"{cache}-media"), Path(f"{cache}-out")):
            shutil.rmtree(path, ignore_errors=True)
        cache.with_suffix(".toml").unlink(missing_ok=True)


def _measured(command: list[str]) -> dict[str, Any]:
    began = time.perf_counter()
    pid = os.posix_spawn(
        sys.executable, command, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    )
    _, status, usage = os.wait4(pid, 0)  # the rusage of that process and its children alone
    if status:
        raise RuntimeError(f"stage two failed (status {status}): {' '.join(command)}")
    return {"wall_s": time.perf_counter() - began, "peak_rss_mb": round(usage.ru_maxrss / 1024)}
