"""Nets as stage one builds them for its cache, whatever the pass that runs them (the export of ``extract.embed``,
fine-tuning, ``predict``): their weights found or their seed, their options from their inputs, the fingerprints of
the inputs they read and the rows they cannot embed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mvemo.cache.layout import ABSENT, FAILED, FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.registry import get_net, input_kind, net_class, net_options, pretrained_file, split_init
from mvemo.extract.weights.registry import require_weights
from mvemo.manifests.errors import ConfigError

# Every row a net writes into the cache is computed in float32, on every device: rows of one set embedded on a GPU under
# bf16 and on a CPU would differ with nothing to tell them apart. bf16 autocast speeds training on a GPU alone.
ROW_PRECISION = "float32"


def code_config(net: EmotionNet, *, fine_tuned: bool) -> dict[str, Any]:
    """What a net's code decides of its embedding set's config, beside what its run records (seed, inputs, fine-tuning):
    the net's own config, the precision of its rows and, for a net used as it is, the other library code that makes
    its inputs (``EmotionNet.computed_with``). A net used as it is leaves out its head's ``num_classes``, which none
    of its rows reads: its embedding of a clip is one set whatever the classes of the cache it lies in, so that the
    caches of several sets (``fuse.targets.plane``) feed one model."""
    config = {**net.config, "precision": ROW_PRECISION}
    if fine_tuned:
        return config
    return {key: value for key, value in config.items() if key != "num_classes"} | {
        "computed_with": net.computed_with()
    }


def embedding_spec(
    set_name: str,
    config: Mapping[str, Any],
    weights_sha256: str,
    *,
    net: EmotionNet,
    fine_tuned: bool,
    weights_file: str = "",
) -> FeatureSpec:
    """The spec of an embedding set (``emb/<net>/all``, ``emb/<net>/fold<k>``) that ``net`` writes with ``config``:
    its embedding's width, float32 rows, and the names of its columns where the net is used as it is (a fine-tuned
    net's no longer mean what its published weights named); ``weights_sha256`` is its pretrained weights' (a
    fine-tuned set's: its checkpoint's)."""
    return FeatureSpec(
        set_name,
        (net.embedding_dim,),
        "float32",
        f"mvemo.net.{set_name.split('/')[1]}",
        net.embedding_version,
        config,
        weights_sha256,
        columns=() if fine_tuned else net.columns,
        weights_file=weights_file,
    )


def require_same_weights(net: EmotionNet, expected_sha256: str) -> None:
    """A worker must start from the pretrained weights the run fingerprinted (it looks for them on its own disk)."""
    if net.weights_sha256 != expected_sha256:
        raise ConfigError(
            f"{net.name}: this worker found pretrained weights of sha256 {net.weights_sha256[:12] or '(none)'}, the run"
            f" started from {expected_sha256[:12] or '(none)'}; give every worker the same --weights-dir"
        )


EMBEDDING_ONLY_CLASSES = 2


def build_net(
    name: str,
    num_classes: int,
    *,
    weights_dir: str | os.PathLike[str] | None,
    seed: int,
    options: Mapping[str, Any] = {},
    missing_hint: str | None = None,
) -> tuple[EmotionNet, str]:
    """The net (with its ``options``) and a log line: with its published pretrained weights, or a seeded random
    initialisation where it has none or ``options`` holds ``init = "random"`` (``--random-init``). Clips without class
    labels (``num_classes`` 0: tags or values only) give it a head of ``EMBEDDING_ONLY_CLASSES``, which no embedding
    reads; stage one and ``predict`` build it alike.

    Raises
    ------
    WeightsError
        A net with published weights whose file no search folder holds (exit 2: never silently random), naming
        the file, every folder searched, the fetch command and ``missing_hint`` (by default: stage one's
        ``--random-init``).
    """
    init, options = split_init(name, options)
    num_classes = num_classes or EMBEDDING_ONLY_CLASSES
    torch.manual_seed(seed)
    file = pretrained_file(name)
    if init == "random" or file is None:
        why = "asked (--random-init)" if file is not None else "it has no published weights"
        return get_net(
            name, num_classes=num_classes, **options
        ).eval(), f"{name}: random initialisation (seed {seed}; {why})"
    random = "" if net_class(name).pretrained_only else f"or run it from random weights with --random-init {name}"
    path = require_weights(file, weights_dir, hint=missing_hint or random)
    return get_net(name, num_classes=num_classes, weights=path, **options).eval(), f"{name}: pretrained weights {path}"


def input_options(name: str, cache: Cache) -> dict[str, Any]:
    """Options a net takes from its cached input's shape: C3D's ``n_frames`` (its fc6 size) from the frames cached."""
    if "n_frames" not in net_options(name) or input_kind(name) not in cache.feature_sets():
        return {}
    return {"n_frames": cache.row_shape(str(input_kind(name)))[0]}


def input_fingerprints(cache: Cache, net: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """The fingerprints of the cached sets a net reads; a missing one is a ``ConfigError`` naming ``--features``."""
    missing = [k for k in kinds if k not in cache.feature_sets()]
    if missing:
        raise ConfigError(
            f"net {net!r} reads {missing}, not in the cache; compute them with --features {','.join(missing)}"
        )
    return {k: cache.fingerprint(k) for k in kinds}


def fail_rows_without_inputs(writer: CacheWriter, cache: Cache, set_name: str, kinds: tuple[str, ...]) -> None:
    """Record why rows of ``set_name`` whose inputs were not computed have no embedding (absent when an input is)."""
    todo = writer.todo(set_name)
    ready = np.logical_and.reduce([cache.done(k) for k in kinds])
    status = {k: cache.status(k) for k in kinds}
    for row in todo[~ready[todo]]:
        statuses = [status[k][row] for k in kinds]
        reason = f"clip {writer.clip_ids[row]!r}: its input {', '.join(kinds)} was not computed"
        writer.fail(set_name, int(row), reason, status=ABSENT if ABSENT in statuses else FAILED)


def kinds_of(net: EmotionNet) -> tuple[str, ...]:
    return (net.input_kind,) if isinstance(net.input_kind, str) else tuple(net.input_kind)
