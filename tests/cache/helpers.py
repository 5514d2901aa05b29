"""A manifest of small stand-in media files, and a deterministic row generator, for cache tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.manifests import Clip, Manifest


def stand_in_manifest(folder: Path, n: int = 12, classes: tuple[str, ...] = ("calm", "tense")) -> Manifest:
    """Clips whose 'media' are small files of distinct bytes: the cache hashes them, never decodes them."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        path = folder / f"clip {i}.mp4"
        if not path.exists():
            path.write_bytes(f"media {i}".encode() * 50)
        clips.append(Clip(f"c/{i}", classes[i % len(classes)], video=path, audio=path, group=f"g{i}", fold=i % 3))
    return Manifest(classes, tuple(clips))


def row_values(spec: FeatureSpec, row: int) -> np.ndarray:
    values = np.random.default_rng(row).normal(size=spec.row_shape) * 100
    return values.astype(spec.dtype)


MEL = FeatureSpec("mel", (16, 40), "float32", "mel", "1", {"n_mels": 16, "hop_length": 256})
EMB = FeatureSpec("emb/net/fold0", (8,), "float16", "net", "1", {"lr": 1e-3}, weights_sha256="ab" * 32)


def first_segment(cache: Path, name: str) -> Path:
    """The file holding a set's rows from 0 on."""
    (path,) = (cache / "sets" / name).glob("rows-000000000-*.h5")
    return path
