"""What a report says of a cache's embeddings: the weights each net started from, how it was fine-tuned and
under which protocol, and the top tags of tag-probability sets."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mvemo.cache.layout import IMPORTED
from mvemo.cache.read import Cache
from mvemo.fuse.models import cached_nets, vector_sets, weights_origin


def fine_tuned_nets(cache: Cache, sets: Iterable[str] | None = None) -> list[str]:
    """The nets whose embeddings in the cache (in ``sets``, default every set) come from fine-tuning (not from the
    weights as they are)."""
    sets = [name for name in (cache.feature_sets() if sets is None else sets) if name.startswith("emb/")]
    return sorted({name.split("/")[1] for name in sets if cache.config(name).get("finetune", "none") != "none"})


def provenance(cache: Cache, sets: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Per net of ``sets`` (default every set): the weights its embeddings started from (file and sha256, or "random
    init"; fine-tuned sets start from their ``pretrained_sha256``), how it was fine-tuned and the protocol (modes of its
    sets joined by "/"); per vector set computed with pretrained nets (``faces``): its weight files and their sha256;
    per imported set (``mvemo cache import``): its file and sha256. No other set is opened."""
    sets = list(cache.feature_sets() if sets is None else sets)
    vectors = vector_sets(cache, sets)
    described = {
        name: {"weights": weights_origin(cache, name), "finetune": "none", "protocol": "-"}
        for name in vectors
        if cache.weights_sha256(name)
    }
    for name in vectors:
        if imported := cache.config(name).get(IMPORTED):
            origin = f"imported from {imported['file']} (sha256 {imported['sha256'][:12]})"
            described[name] = {"weights": origin, "finetune": "none", "protocol": "-"}
    for net in cached_nets(cache):
        net_sets = [name for name in sets if name.startswith(f"emb/{net}/")]
        if net_sets:
            described[net] = {
                "weights": " / ".join(sorted({weights_origin(cache, n) for n in net_sets})),
                "finetune": "/".join(sorted({cache.config(n).get("finetune", "none") for n in net_sets})),
                "protocol": "/".join(sorted({cache.config(n).get("protocol", "leakfree") for n in net_sets})),
            }
    return described


def top_tags(cache: Cache, sets: Iterable[str] | None = None, k: int = 3) -> dict[str, list[list[str]]]:
    """Per embedding set of named tag probabilities (``[net.musicnn] layer = "taggram"``) among ``sets`` (default every
    set), each clip's ``k`` most probable tags with their mean probability over its patches (the max where only the
    max is cached), or [] for a clip the set lacks."""
    tagged = {}
    for set_name in cache.feature_sets() if sets is None else sets:
        columns = cache.columns(set_name) if set_name.startswith("emb/") else []
        kind = " (mean)" if any(c.endswith(" (mean)") for c in columns) else " (max)"
        picked = [i for i, c in enumerate(columns) if c.endswith(kind)]
        if not picked:
            continue
        values, done = cache.read_rows(set_name)
        proba = values[:, picked]
        names = [columns[i].removesuffix(kind) for i in picked]
        tagged[set_name] = [
            [f"{names[j]} {row[j]:.2f}" for j in np.argsort(-row)[:k]] if ok else [] for row, ok in zip(proba, done)
        ]
    return tagged


def protocol(cache: Cache, sets: Iterable[str] | None = None) -> str:
    """``paper`` if any embedding set (of ``sets``, default every set) was fine-tuned on every clip (the papers' leaky
    protocol), else ``leakfree``."""
    for name in cache.feature_sets() if sets is None else sets:
        if name.startswith("emb/") and cache.config(name).get("protocol") == "paper":
            return "paper"
    return "leakfree"
