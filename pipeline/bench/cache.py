"""``mvemo bench cache``: writing and reading a paper-sized cache, beside memcpy and numpy copies."""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.pipeline.bench.common import best_of, best_of_each, stand_in_manifest

EMBEDDING_DIMS = (512, 1024, 2048)
GROW_CLIPS = 1000
GROW_SET_DIM = 128


def bench_cache(
    *,
    n_clips: int = 3438,
    mel_shape: tuple[int, int] = (96, 1876),
    lld_shape: tuple[int, int] = (3000, 41),
    random_rows: int = 256,
    batch: int = 64,
    grow_gb: float = 0.2,
    folder: str | None = None,
) -> dict[str, Any]:
    """Write and read a synthetic cache of ``n_clips`` clips with the feature sizes of the papers.

    Returns the figures of ``mvemo bench cache --json``: ``write_s``,
    ``embeddings_read_gbps``, ``random_mel_read_ms``, ``memcpy_gbps`` and
    ``read_fraction_of_memcpy``, plus each baseline (a numpy copy of the same
    bytes). Reads come from the OS page cache, so they measure mvemo and HDF5,
    not the disk. Then ``bench_add_set`` with caches of ``grow_gb`` and ten times that.
    """
    specs = [
        FeatureSpec("mel", mel_shape, "float32", "bench", "1"),
        FeatureSpec("lld", lld_shape, "float32", "bench", "1", variable_length=True),
        *(FeatureSpec(f"emb/net{d}/all", (d,), "float32", "bench", "1") for d in EMBEDDING_DIMS),
    ]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        manifest = stand_in_manifest(Path(tmp), n_clips)
        path = Path(tmp) / "bench.h5"
        rows_of = {spec.name: rng.standard_normal((batch, *spec.row_shape), dtype=np.float32) for spec in specs}
        began = time.perf_counter()
        with CacheWriter(path, manifest) as writer:
            writer.prepare(specs)
            for spec in specs:
                for start in range(0, n_clips, batch):
                    rows = range(start, min(start + batch, n_clips))
                    writer.write(spec.name, rows, rows_of[spec.name][: len(rows)])
        write_s = time.perf_counter() - began
        total_bytes = sum(spec.row_bytes for spec in specs) * n_clips
        with Cache(path) as cache:
            names = [f"emb/net{d}/all" for d in EMBEDDING_DIMS]
            emb_bytes = sum(cache.read_matrix(n).nbytes for n in names)
            emb_read_s = best_of(lambda: [cache.read_matrix(n) for n in names])
            picks = rng.choice(n_clips, size=min(random_rows, n_clips), replace=False)
            mel_read_s = best_of(lambda: cache.read_matrix("mel", picks))
            in_memory_mel = cache.read_matrix("mel", np.arange(min(n_clips, 1024)))
    source = np.ones(emb_bytes // 4, dtype=np.float32)
    memcpy_s = best_of(lambda: source.copy())  # a new array, as read_matrix returns
    local_picks = picks % len(in_memory_mel)
    numpy_take_s = best_of(lambda: in_memory_mel[local_picks])
    big = np.ones(min(total_bytes, 2**30) // 4, dtype=np.float32)
    memcpy_write_gbps = big.nbytes / best_of(lambda: big.copy(), repeat=2) / 1e9
    emb_gbps = emb_bytes / emb_read_s / 1e9
    memcpy_gbps = source.nbytes / memcpy_s / 1e9
    return {
        "clips": n_clips,
        "cache_bytes": int(total_bytes),
        "write_s": round(write_s, 3),
        "write_gbps": round(total_bytes / write_s / 1e9, 3),
        "memcpy_write_gbps": round(memcpy_write_gbps, 3),
        "embeddings_read_gbps": round(emb_gbps, 3),
        "random_mel_read_ms": round(mel_read_s * 1e3, 3),
        "numpy_random_mel_copy_ms": round(numpy_take_s * 1e3, 3),
        "memcpy_gbps": round(memcpy_gbps, 3),
        "read_fraction_of_memcpy": round(emb_gbps / memcpy_gbps, 3),
        **bench_add_set(grow_gb, folder=folder),
    }


def bench_add_set(small_gb: float, *, repeat: int = 3, folder: str | None = None) -> dict[str, Any]:
    """Add one 128-d embedding set of 1,000 clips to caches whose sets hold ``small_gb`` and ten times that.

    ``add_set_bytes_ratio``: bytes the adding process wrote (``wchar`` of ``/proc/self/io``, so
    every write call counts, metadata and clip table included) over the set's own bytes; None
    where the kernel does not count them. ``add_set_time_ratio``: seconds to add it (open the
    writer, create the set, write every row, close) to the larger cache over the smaller, the
    best of ``repeat`` each, taking turns.
    """
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        manifest = stand_in_manifest(Path(tmp), GROW_CLIPS)
        layouts = (("small", 1), ("large", 10))
        caches = {size: _filled_cache(Path(tmp) / f"cache-{size}", manifest, small_gb, n) for size, n in layouts}
        values = np.random.default_rng(0).standard_normal((GROW_CLIPS, GROW_SET_DIM), dtype=np.float32)
        added = {size: 0 for size in caches}

        def add_set(size: str) -> int:
            added[size] += 1
            spec = FeatureSpec(f"emb/added{added[size]}/all", (GROW_SET_DIM,), "float32", "bench", "1")
            before = _bytes_written()
            with CacheWriter(caches[size], manifest) as writer:
                writer.prepare([spec])
                writer.write(spec.name, range(GROW_CLIPS), values)
            after = _bytes_written()
            return -1 if before is None or after is None else after - before

        written = add_set("small")
        times = best_of_each({size: functools.partial(add_set, size) for size in caches}, repeat=repeat)
    return {
        "add_set_cache_gb": [round(small_gb, 3), round(10 * small_gb, 3)],
        "add_set_ms": round(times["small"] * 1e3, 2),
        "add_set_bytes_ratio": round(written / values.nbytes, 3) if written >= 0 else None,
        "add_set_time_ratio": round(times["large"] / times["small"], 3),
    }


def _filled_cache(path: Path, manifest: Any, gb: float, n_sets: int) -> Path:
    """A cache of ``n_sets`` sets of ``gb`` each, every row written (not sparse)."""
    row_floats = max(1, int(gb * 1e9 / 4 / GROW_CLIPS))
    rows = np.ones((64, row_floats), dtype=np.float32)
    with CacheWriter(path, manifest) as writer:
        for k in range(n_sets):
            spec = FeatureSpec(f"existing{k}", (row_floats,), "float32", "bench", "1")
            writer.prepare([spec])
            for start in range(0, GROW_CLIPS, len(rows)):
                stop = min(start + len(rows), GROW_CLIPS)
                writer.write(spec.name, range(start, stop), rows[: stop - start])
    return path


def _bytes_written() -> int | None:
    """Bytes this process passed to write calls so far (Linux); None elsewhere."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
