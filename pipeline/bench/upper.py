"""``mvemo bench upper``: one outer fold's fine-tuning of musicnn's upper layers over cached activations."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PATCHES, WIDTH = 10, 1506


def bench_upper(n_clips: int = 900, *, weights_dir: str | None = None, k: int = 6) -> dict[str, Any]:
    """Seconds of one outer fold's ``UpperHead`` fit (the training rows of fold 1 of ``k`` over ``n_clips`` clips of
    6 classes, its inner-fold choices included) on one thread, as a CV runs a fold per core, beside the logistic
    head on the frozen penultimate of the same rows; the layers are musicnn's published ones where its weights
    are found, else random ones of their shapes (``layers``). Goal: 300 s, so that a 10-fold CV fits in an hour on
    2 cores."""
    from mvemo.extract.nets import get_net, pretrained_file
    from mvemo.extract.nets.musicnn import upper_layers
    from mvemo.extract.weights.registry import find_weights
    from mvemo.fuse.heads import LogisticHead
    from mvemo.fuse.upper import UpperHead, UpperLayers, one_thread, upper_net

    file = find_weights(str(pretrained_file("musicnn")), weights_dir)
    net = get_net("musicnn", num_classes=2, weights=file)
    layers = UpperLayers(upper_layers(net), PATCHES)
    rng = np.random.default_rng(0)
    y = np.arange(n_clips) % 6
    X = rng.gamma(2.0, 0.5, (n_clips, PATCHES, WIDTH)).astype(np.float32)
    X[:, :, :60] += 0.8 * (y[:, None, None] == np.arange(60)[None, None, :] % 6)
    train = np.arange(n_clips) % k != 0
    began = time.perf_counter()
    head = UpperHead(layers).fit(X[train].reshape(int(train.sum()), -1), y[train], groups=np.flatnonzero(train))
    upper_s = time.perf_counter() - began
    import torch

    began = time.perf_counter()
    with one_thread(), torch.no_grad():
        frozen = upper_net(layers.arrays, 6, 0.0).eval().embed(torch.from_numpy(X[train])).numpy()
    LogisticHead().fit(frozen, y[train])
    frozen_s = time.perf_counter() - began
    return {
        "clips": n_clips,
        "training_clips": int(train.sum()),
        "layers": f"musicnn published ({file.name})" if file else "random, of musicnn's shapes (weights not found)",
        "upper_fold_s": round(upper_s, 1),
        "frozen_fold_s": round(frozen_s, 2),
        "upper_over_frozen": round(upper_s / frozen_s, 1),
        "chosen": head.selected_,
        "goal_s": 300,
    }
