"""The unimodal nets of papers 001 and 003 (and torchvision's video ResNets), by name."""

from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.registry import (
    INIT,
    NET_GROUPS,
    NET_NAMES,
    PRETRAINED,
    base_name,
    expand_nets,
    get_net,
    input_kind,
    net_from_config,
    net_options,
    pretrained_file,
    require_trainable,
    split_init,
)

__all__ = [
    "INIT",
    "NET_GROUPS",
    "NET_NAMES",
    "PRETRAINED",
    "EmotionNet",
    "base_name",
    "expand_nets",
    "get_net",
    "input_kind",
    "net_from_config",
    "net_options",
    "pretrained_file",
    "require_trainable",
    "split_init",
]
