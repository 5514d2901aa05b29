"""``mvemo bench fuse``: the whole CV of every fusion model on a cache of paper-sized embeddings."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cache.layout import FeatureSpec
from cache.store import CacheWriter
from fuse.cv import cross_validate
from fuse.heads import make_head
from manifests.schema import Clip, Manifest

# Embedding sizes of the five nets (sum ~4,000): the fused matrix of the integrated model.
NET_DIMS = {"onedcnn": 1024, "twodcnn": 160, "crnn": 1280, "c3d": 512, "i3d": 1024}
CLASSES = ("Exciting", "Fear", "Neutral", "Relaxation", "Sad", "Tension")


def bench_fuse(*, n_clips: int = 3438, k: int = 6, head: str = "logistic", folder: str | None = None) -> dict[str, Any]:
    """Seconds for the CV of every model x ``k`` folds, beside one plain LogisticRegression fit on the integrated matrix."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = np.arange(n_clips) % len(CLASSES)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cache = Path(tmp) / "bench.h5"
        media = Path(tmp) / "media"
        media.mkdir()
        clips = []
        for i in range(n_clips):
            (media / f"{i}.wav").write_bytes(i.to_bytes(4, "little"))
            clips.append(Clip(f"c{i}", CLASSES[y[i]], audio=media / f"{i}.wav", fold=(i // len(CLASSES)) % k))
        blocks = {
            net: (rng.standard_normal((len(CLASSES), d)) * 0.3)[y] + rng.standard_normal((n_clips, d))
            for net, d in NET_DIMS.items()
        }
        with CacheWriter(cache, Manifest(CLASSES, tuple(clips))) as writer:
            writer.prepare([FeatureSpec(f"emb/{net}/all", (d,), "float32", net, "1") for net, d in NET_DIMS.items()])
            for net, X in blocks.items():
                writer.write(f"emb/{net}/all", range(n_clips), X.astype(np.float32))
        began = time.perf_counter()
        result = cross_validate(cache, head=make_head(head))
        cv_s = time.perf_counter() - began
    integrated = np.concatenate(list(blocks.values()), axis=1)
    train = (np.arange(n_clips) // len(CLASSES)) % k != 0
    began = time.perf_counter()
    LogisticRegression(max_iter=300).fit(integrated[train], y[train])
    logreg_s = time.perf_counter() - began
    return {
        "clips": n_clips,
        "folds": k,
        "integrated_dims": int(integrated.shape[1]),
        "head": head,
        "models": len(result.metrics),
        "cv_all_models_s": round(cv_s, 2),
        "logreg_fit_s": round(logreg_s, 2),
        "cv_over_one_fit": round(cv_s / logreg_s, 1),
        "integrated_accuracy": round(result.metrics["integrated"]["accuracy"]["mean"], 3),
    }
