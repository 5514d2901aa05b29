"""Synthetic caches of embeddings with known structure, for stage-two tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.store import CacheWriter
from mvemo.extract.nets import NET_NAMES, input_kind
from mvemo.manifests import Clip, Manifest

CLASSES = ("calm", "sad", "tense")


def inputs_of(net: str) -> tuple[str, ...]:
    """The cached sets a net of stage one reads, as its embedding sets record them (``logmel`` for a made-up net)."""
    if net.split(".")[0] not in NET_NAMES:
        return ("logmel",)
    kind = input_kind(net)
    return (kind,) if isinstance(kind, str) else tuple(kind)


def input_spec(kind: str) -> FeatureSpec:
    """A set a net reads as ``embedding_cache`` caches it (a value a clip: what the nets' sets record is its
    fingerprint)."""
    return FeatureSpec(kind, (1,), "float32", f"mvemo.{kind}", "1")


def read_by(net: str) -> dict[str, str]:
    """The fingerprints of the sets a net reads, as its embedding sets record them (``config["inputs"]``)."""
    return {kind: input_spec(kind).fingerprint for kind in inputs_of(net)}


def embedding_cache(
    path: Path,
    *,
    nets: dict[str, tuple[int, float]],
    n_per_class: int = 30,
    k: int = 3,
    fold_sets: tuple[int, ...] = (),
    with_all: bool = True,
    finetune: str = "none",
    folds: list[int] | None = None,
    groups: list[str] | None = None,
    failed_sets: tuple[str, ...] = (),
    written: dict[str, int] | None = None,
    seed: int = 0,
    protocol: str = "leakfree",
    weights: dict[str, str] | None = None,
    vectors: dict[str, tuple[int, float]] | None = None,
    patches: dict[str, int] | None = None,
    layers: dict[str, str] | None = None,
    retarget: Callable[[Manifest], Manifest] | None = None,
) -> Path:
    """A cache whose emb sets hold class means plus noise: ``nets`` maps net -> (dim, separation).

    Each net gets ``emb/<net>/fold<k>`` for the folds in ``fold_sets`` and, with
    ``with_all``, ``emb/<net>/all`` made with ``finetune``. ``folds`` gives each
    clip's fold (default: round robin over groups of one clip per class), ``groups`` its group (default none); every
    row of the sets in ``failed_sets`` is recorded failed instead of written, and a set in ``written`` has only its
    first rows written (the others still to compute, as while stage one runs). Each net's sets record the sha256 of
    pretrained weights (``weights`` overrides a net's: "" for random init). ``vectors`` maps a clip-level feature set
    (as ``descriptors``) -> (dim, separation), with named columns. ``patches`` maps a net to the patches per clip its
    sets keep (``pool = "patches"``): each patch its own noise around the class mean, patch after patch; ``layers`` the
    layer a net's sets record (with the net's name). ``retarget`` gives the manifest written its tags and values (from
    the clips' classes, which the embeddings carry).
    """
    rng = np.random.default_rng(seed)
    n = n_per_class * len(CLASSES)
    media = path.parent / "media"
    media.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        file = media / f"{i}.wav"
        file.write_bytes(i.to_bytes(4, "little"))
        fold = folds[i] if folds is not None else (i // len(CLASSES)) % k
        group = groups[i] if groups is not None else ""
        clips.append(Clip(f"c{i}", CLASSES[i % len(CLASSES)], audio=file, group=group, fold=fold))
    manifest = Manifest(CLASSES, tuple(clips))
    y = manifest.y
    specs, values = [], {}
    for kind in dict.fromkeys(kind for net in nets for kind in inputs_of(net)):  # cached before the nets that read them
        specs.append(input_spec(kind))
        values[kind] = np.zeros((n, 1), np.float32)
    for net, (dim, separation) in nets.items():
        means = rng.standard_normal((len(CLASSES), dim)) * separation
        count = (patches or {}).get(net, 1)
        X = (means[y][:, None, :] + rng.standard_normal((n, count, dim))).reshape(n, count * dim).astype(np.float32)
        names = [f"emb/{net}/fold{f}" for f in fold_sets] + ([f"emb/{net}/all"] if with_all else [])
        config = {"protocol": protocol, "finetune": finetune} | (
            {"pool": "patches", "patches": count} if count > 1 else {}
        )
        config |= {"layer": layers[net], "net": net.split(".")[0]} if layers and net in layers else {}
        config |= {"inputs": read_by(net)}
        for name in names:
            sha = (weights or {}).get(net, f"{net}-weights-sha256")
            specs.append(FeatureSpec(name, (count * dim,), "float32", net, "1", config, sha))
            values[name] = X
    for name, (dim, separation) in (vectors or {}).items():
        means = rng.standard_normal((len(CLASSES), dim)) * separation
        columns = tuple(f"{name}_{i}" for i in range(dim))
        specs.append(FeatureSpec(name, (dim,), "float32", f"mvemo.{name}", "1", {}, columns=columns))
        values[name] = (means[y] + rng.standard_normal((n, dim))).astype(np.float32)
    with CacheWriter(path, retarget(manifest) if retarget else manifest) as writer:
        writer.prepare(specs)
        for name, X in values.items():
            if name in failed_sets:
                for row in range(n):
                    writer.fail(name, row, f"clip c{row}: a planted failure")
            else:
                rows = range((written or {}).get(name, n))
                writer.write(name, rows, X[rows])
    return path
