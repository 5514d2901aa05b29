"""``get_net(name, num_classes=..., weights=None, **options)``: every unimodal net by name."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cache.fingerprint import file_sha256
from extract.nets.base import EmotionNet
from extract.nets.crnn import CRNN
from extract.nets.i3d import I3D
from extract.nets.onedcnn import OneDCNN
from extract.nets.twodcnn import TwoDCNN
from manifests.errors import ConfigError

BUILDERS: dict[str, Callable[..., EmotionNet]] = {"onedcnn": OneDCNN, "twodcnn": TwoDCNN, "crnn": CRNN, "i3d": I3D}
NET_NAMES = tuple(BUILDERS)
# Pretrained weights each net can load, by file name (found with extract.weights.find_weights).
PRETRAINED = {"twodcnn": "choi_compact_cnn_msd.h5", "i3d": "i3d_rgb_kinetics400.npz"}


def get_net(name: str, *, num_classes: int, weights: str | os.PathLike[str] | None = None, **options: Any) -> EmotionNet:
    """A net by name; ``weights=None`` is random initialisation (seeded by the caller), no file lookup."""
    if name not in BUILDERS:
        raise ConfigError(f"net {name!r}: choose one of {', '.join(NET_NAMES)}")
    try:
        net = BUILDERS[name](num_classes, **options)
    except TypeError as err:
        raise ConfigError(f"net {name!r}: {err}") from None
    if weights is not None:
        path = Path(weights)
        net.load_weights(path)
        net.weights_sha256 = file_sha256(path)
    return net
