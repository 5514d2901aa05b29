"""``mvemo bench cache``: writing and reading a paper-sized cache, beside memcpy and numpy copies."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.pipeline.bench.common import best_of, stand_in_manifest

EMBEDDING_DIMS = (512, 1024, 2048)


def bench_cache(
    *,
    n_clips: int = 3438,
    mel_shape: tuple[int, int] = (96, 1876),
    lld_shape: tuple[int, int] = (3000, 41),
    random_rows: int = 256,
    batch: int = 64,
    folder: str | None = None,
) -> dict[str, Any]:
    """Write and read a synthetic cache of ``n_clips`` clips with the feature sizes of the papers.

    Returns the figures of ``mvemo bench cache --json``: ``write_s``,
    ``embeddings_read_gbps``, ``random_mel_read_ms``, ``memcpy_gbps`` and
    ``read_fraction_of_memcpy``, plus each baseline (a numpy copy of the same
    bytes). Reads come from the OS page cache, so they measure mvemo and HDF5,
    not the disk.
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
    }
