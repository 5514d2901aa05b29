"""The published layers above each cut a cache holds activations at, for stage two to fine-tune (``fuse.heads.upper``).

Stage two needs no net but these few layers: they are read here, through ``extract``, from the weight file the
activations came from (its sha256 checked against the one the set recorded), and handed to ``fuse`` as arrays.
"""

from __future__ import annotations

from mvemo.cache.read import Cache
from mvemo.extract.nets import get_net, pretrained_file
from mvemo.extract.nets.musicnn import upper_layers
from mvemo.extract.weights.registry import require_weights, sha256_of
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.inputs import is_cut
from mvemo.fuse.models import select_models
from mvemo.manifests.errors import ConfigError


def published_upper_layers(cache: Cache, weights_dir: str | None, models: str | None) -> dict[str, UpperLayers]:
    """Input name -> the layers above its cut, for every input of the ``models`` (``--models``; None: the default
    ones) that holds activations at a cut. Without such an input, nothing is read."""
    out: dict[str, UpperLayers] = {}
    inputs = {name for model in select_models(cache, models) for name in model.inputs}
    for set_name in cache.feature_sets():
        name = set_name.split("/")[1] if set_name.startswith("emb/") else ""
        if name not in inputs or name in out or not is_cut(cache, set_name):
            continue
        config = cache.config(set_name)
        file = pretrained_file(config["net"])
        if file is None or not cache.weights_sha256(set_name):
            raise ConfigError(
                f"{name}: activations of a net without published weights; there is nothing to fine-tune from"
            )
        path = require_weights(file, weights_dir, hint="give --weights-dir, the folder stage one read")
        if sha256_of(path) != cache.weights_sha256(set_name):
            raise ConfigError(
                f"{name}: {path} has sha256 {sha256_of(path)[:12]}, the activations came from"
                f" {cache.weights_sha256(set_name)[:12]}; give --weights-dir the folder of the weights stage one used"
            )
        options = {k: config[k] for k in ("layer", "pool", "patches")}
        net = get_net(config["net"], num_classes=2, weights=path, **options)
        patches = int(config["patches"])
        out[name] = UpperLayers(upper_layers(net), patches, net.embedding_dim // patches)
    return out
