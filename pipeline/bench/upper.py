"""``mvemo bench upper``: one outer fold's fine-tuning of a music encoder's layers above a cut over cached
activations."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PATCHES = 10


def bench_upper(
    n_clips: int = 900,
    *,
    cut: str = "pooled",
    weights_dir: str | None = None,
    k: int = 6,
    one_epoch: bool = False,
) -> dict[str, Any]:
    """Seconds of one outer fold's ``UpperHead`` fit above ``cut`` (the training rows of fold 1 of ``k`` over
    ``n_clips`` clips of 6 classes, its inner-fold choices included) on one thread, as a CV runs a fold per core,
    beside the logistic head on the frozen penultimate of the same rows; the layers are the published ones where
    the encoder's weights are found, else random ones of their shapes (``layers``). Goal: 300 s, so that a
    10-fold CV fits in an hour on 2 cores. ``one_epoch``: one setting trained one epoch, a check
    that it runs."""
    from mvemo.extract.nets import get_net, pretrained_file
    from mvemo.extract.nets.musicnn import upper_layers
    from mvemo.extract.nets.musicnn_patches import UPPER_CUTS
    from mvemo.extract.weights.registry import find_weights
    from mvemo.fuse.heads.linear import LogisticHead
    from mvemo.fuse.heads.upper import UpperHead
    from mvemo.fuse.heads.upper_net import UpperLayers, frozen_penultimate, one_thread

    name = next(net for net, cuts in UPPER_CUTS.items() if cut in cuts)
    file = find_weights(str(pretrained_file(name)), weights_dir)
    net = get_net(name, num_classes=2, weights=file, layer=cut, pool="patches", patches=PATCHES)
    width = net.embedding_dim // PATCHES
    layers = UpperLayers(upper_layers(net), PATCHES, width)
    rng = np.random.default_rng(0)
    y = np.arange(n_clips) % 6
    X = rng.gamma(2.0, 0.5, (n_clips, PATCHES, width)).astype(np.float32)
    X[:, :, :60] += 0.8 * (y[:, None, None] == np.arange(60)[None, None, :] % 6)
    X = X.reshape(n_clips, -1)
    train = np.flatnonzero(np.arange(n_clips) % k != 0)
    began = time.perf_counter()
    head = (
        UpperHead(layers, lr_grid=(3e-4,), weight_decay_grid=(1e-3,), max_epochs=1) if one_epoch else UpperHead(layers)
    )
    head.fit(X[train], y[train], groups=train)
    upper_s = time.perf_counter() - began
    began = time.perf_counter()
    with one_thread():
        LogisticHead().fit(frozen_penultimate(layers, X, train), y[train])
    frozen_s = time.perf_counter() - began
    return {
        "clips": n_clips,
        "training_clips": len(train),
        "cut": f"{name} {cut}",
        "layers": f"published ({file.name})" if file else f"random, of {name}'s shapes (weights not found)",
        "upper_fold_s": round(upper_s, 1),
        "frozen_fold_s": round(frozen_s, 2),
        "upper_over_frozen": round(upper_s / frozen_s, 1),
        "chosen": head.selected_,
        "goal_s": 300,
    }
