"""One clip's embedding outside a cache, as stage one computed it: a net rebuilt from what a cache recorded of its
set, then run on that clip's feature sets (``predict`` and its timeline read nets only through here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvemo.cache.layout import POOLED_KEY, FeatureSpec
from mvemo.extract.finetune.jobs import load_checkpoint
from mvemo.extract.nets import INIT, net_options
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.building import build_net, code_config, embedding_spec, kinds_of
from mvemo.extract.nets.registry import net_class
from mvemo.extract.windows.cache import pooled_spec
from mvemo.manifests.errors import ConfigError

# What a missing weight file of a saved model's net adds (after where it was looked for and how to get it)
TRAINED_WITH = "the model was trained with these weights, and no others give its embeddings"


def rebuild_net(
    name: str, num_classes: int, described: dict[str, Any], folder: Path, weights_dir: str | os.PathLike[str] | None
) -> EmotionNet:
    """The net of an embedding set, in eval mode: its pretrained weights found as extract finds them (the same
    sha256, else an error), the same seeded random init, or the fine-tuned checkpoint under ``folder``.

    ``described``: the set as a saved model records it (``config``, ``weights_sha256``, and ``checkpoint`` where it
    was fine-tuned)."""
    config = described["config"]
    options = {k: config[k] for k in net_options(name) if k in config}
    if "checkpoint" in described or not described["weights_sha256"]:  # a checkpoint holds every weight
        options[INIT] = "random"
    net, _ = build_net(
        name, num_classes, weights_dir=weights_dir, seed=config["seed"], options=options, missing_hint=TRAINED_WITH
    )
    if "checkpoint" in described:
        load_checkpoint(net, described["checkpoint"], folder)
    elif net.weights_sha256 != described["weights_sha256"]:
        raise ConfigError(
            f"{name} was computed with weights of sha256 {described['weights_sha256'][:12]}, the file found has"
            f" {net.weights_sha256[:12]}; give --weights-dir the folder of the weights the model was trained with"
        )
    return net.eval()


def recorded_spec(
    set_name: str, described: dict[str, Any], num_classes: int, weights_dir: str | os.PathLike[str] | None
) -> FeatureSpec:
    """The spec this version gives an embedding set that a saved model recorded (``described``, as ``rebuild_net``
    reads it): what its code decides now (the extractor's version, the net's config, the rows' precision and width,
    the library code that makes its inputs) over what the record says of how its rows were made (the seed, the input
    sets, the fine-tuning and its checkpoint, the pretrained weights' sha256, the windows pooled). Its fingerprint is
    the one the model recorded exactly where this version computes the set's rows as they were computed.

    The net is built from its layers alone (no weight file read: they decide none of this), but for a net that runs
    with its published checkpoint only (CLAP), whose files decide its width and the library settings it records.

    Raises
    ------
    WeightsError
        Such a net's checkpoint is not found.
    """
    config = described["config"]
    name = set_name.split("/")[1]
    options = {k: config[k] for k in net_options(name) if k in config}
    if not net_class(name).pretrained_only:
        options[INIT] = "random"
    net, _ = build_net(name, num_classes, weights_dir=weights_dir, seed=config["seed"], options=options)
    fine_tuned = "checkpoint" in config
    now = {**config, **code_config(net, fine_tuned=fine_tuned)}
    if POOLED_KEY not in config:
        return embedding_spec(set_name, now, described["weights_sha256"], net=net, fine_tuned=fine_tuned)
    window_set = embedding_spec(set_name, {}, described["weights_sha256"], net=net, fine_tuned=fine_tuned)
    return pooled_spec(window_set, now)


def embed_clip(net: EmotionNet, sets: dict[str, np.ndarray]) -> np.ndarray:
    """The net's embedding (1, dim) of one clip, from that clip's feature sets by name (its input sets among them)."""
    with torch.no_grad():
        return net.embed(*net.prepare(*(sets[kind][None] for kind in kinds_of(net)))).numpy()
