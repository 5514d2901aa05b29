"""``mvemo bench fuse``: the whole CV of every fusion model on a cache of paper-sized embeddings."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.store import CacheWriter
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.heads.families import make_head
from mvemo.manifests.schema import Clip, Manifest
from mvemo.pipeline.executors import build_executor

# Embedding sizes of the five nets (sum ~4,000): the fused matrix of the integrated model; and the cached inputs each
# net reads, which its set records (the integrated model fuses nets of both modalities)
NET_DIMS = {"onedcnn": 1024, "twodcnn": 160, "crnn": 1280, "c3d": 512, "i3d": 1024}
NET_INPUTS = {
    "onedcnn": ("waveform",),
    "twodcnn": ("mel",),
    "crnn": ("mel", "lld"),
    "c3d": ("frames112",),
    "i3d": ("frames224",),
}
CLASSES = ("Exciting", "Fear", "Neutral", "Relaxation", "Sad", "Tension")
# The models of the CV with fixed settings, as stage two had them before nested selection: each net, the paper's
# pairs, all nets concatenated, the late fusion of the pairs (the default `integrated` now chooses on inner folds).
PAIRS = "c3d+onedcnn,i3d+onedcnn,c3d+twodcnn,i3d+twodcnn"
FIXED_MODELS = f"{','.join(NET_DIMS)},{PAIRS},{'+'.join(NET_DIMS)},late({PAIRS})"


def embeddings(rng: np.random.Generator, y: np.ndarray, dims: int, rank: int = 32, signal: float = 0.25) -> np.ndarray:
    """Embeddings shaped like a net's: ``rank`` correlated latent factors (class means apart by ``signal``) spread
    over ``dims`` columns, plus noise. Independent noise columns made L-BFGS stop after one step, so the bench timed
    nothing like a real fit; these take 12-42 iterations (the nets' embeddings of mved-sample 22-41) and a net alone
    scores 53-63% (mved-sample 29-57%)."""
    latent = (rng.standard_normal((len(CLASSES), rank)) * signal)[y] + rng.standard_normal((len(y), rank))
    return latent @ rng.standard_normal((rank, dims)) + 0.3 * rng.standard_normal((len(y), dims))


def bench_fuse(*, n_clips: int = 3438, k: int = 6, head: str = "logistic", folder: str | None = None) -> dict[str, Any]:
    """Seconds for the CV of ``k`` folds: of ``FIXED_MODELS`` with each head's C fixed (serial, and fanned out over
    2 local processes), and of every default model nested (every choice on 5 inner folds, over 2 processes),
    beside one plain LogisticRegression fit on the integrated matrix."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = np.arange(n_clips) % len(CLASSES)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cache = Path(tmp) / "bench.h5"
        media = Path(tmp) / "media"
        media.mkdir()
        clips = []
        for i in range(n_clips):  # music videos
            video = media / f"{i}.mp4"
            video.write_bytes(i.to_bytes(4, "little"))
            clips.append(Clip(f"c{i}", CLASSES[y[i]], video=video, audio=video, fold=(i // len(CLASSES)) % k))
        blocks = {net: embeddings(rng, y, d) for net, d in NET_DIMS.items()}
        with CacheWriter(cache, Manifest(CLASSES, tuple(clips))) as writer:
            # a weights hash: embeddings of pretrained nets, which every default fusion reads
            specs = [
                FeatureSpec(f"emb/{net}/all", (d,), "float32", net, "1", {"inputs": NET_INPUTS[net]}, "bench")
                for net, d in NET_DIMS.items()
            ]
            writer.prepare(specs)
            for net, X in blocks.items():
                writer.write(f"emb/{net}/all", range(n_clips), X.astype(np.float32))
        fixed = make_head(head, None, **{"C": 0.1} if head == "logistic" else {"lr": 1e-3, "l2": 1e-3})
        began = time.perf_counter()
        result = cross_validate(cache, head=fixed, models=FIXED_MODELS)
        cv_s = time.perf_counter() - began
        with build_executor("processes", workers=2) as pool:
            list(pool.map(abs, [1, 2]))  # the workers started: a warm pool, as for the serial run
            began = time.perf_counter()
            cross_validate(cache, head=fixed, models=FIXED_MODELS, executor=pool)
            processes_s = time.perf_counter() - began
            began = time.perf_counter()
            nested = cross_validate(cache, head=make_head(head), executor=pool)
            nested_s = time.perf_counter() - began
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
        "cv_all_models_2_processes_s": round(processes_s, 2),
        "logreg_fit_s": round(logreg_s, 2),
        "cv_over_one_fit": round(cv_s / logreg_s, 1),
        "cv_2_processes_over_one_fit": round(processes_s / logreg_s, 1),
        "integrated_accuracy": round(result.metrics["+".join(NET_DIMS)]["accuracy"]["mean"], 3),
        "nested_cv_all_models_s": round(nested_s, 2),
        "nested_over_one_fit": round(nested_s / logreg_s, 1),
        "nested_integrated_accuracy": round(nested.metrics["integrated"]["accuracy"]["mean"], 3),
    }
