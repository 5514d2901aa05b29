"""``get_net(name, num_classes=..., weights=None, **options)``: every unimodal net by name."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import Any

from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.c3d import C3D
from mvemo.extract.nets.clap import Clap
from mvemo.extract.nets.crnn import CRNN
from mvemo.extract.nets.i3d import I3D
from mvemo.extract.nets.musicnn import MsdVgg, MttMusicnn, MttVgg, Musicnn
from mvemo.extract.nets.onedcnn import OneDCNN
from mvemo.extract.nets.torchvision_video import MC318, R3D18, R2Plus1D18
from mvemo.extract.nets.twodcnn import TwoDCNN
from mvemo.extract.weights.registry import sha256_of
from mvemo.manifests.errors import ConfigError

NETS: dict[str, type[EmotionNet]] = {
    cls.name: cls
    for cls in (OneDCNN, TwoDCNN, C3D, I3D, CRNN, Musicnn, MsdVgg, MttMusicnn, MttVgg, Clap, R3D18, R2Plus1D18, MC318)
}
NET_NAMES = tuple(NETS)
# A name that stands for several nets in ``--nets``: the music encoders, musicnn's two nets as trained on the Million
# Song Dataset and on MagnaTagATune (stage two fuses them late: ``fuse.models.MUSIC_ENCODERS``, with clap where a user
# ran it: its checkpoint is a download, so ``encoders`` leaves it out).
NET_GROUPS = {"encoders": ("musicnn", "msdvgg", "mttmusicnn", "mttvgg")}


def expand_nets(nets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``nets`` with each group (``NET_GROUPS``) replaced by its nets, each net once, in order."""
    return tuple(dict.fromkeys(net for name in nets for net in NET_GROUPS.get(name, (name,))))


# The public pretrained weights each net loads by default, by file name (found with extract.weights.find_weights).
PRETRAINED = {
    "twodcnn": "choi_compact_cnn_msd.h5",
    "musicnn": "musicnn_msd_musicnn.npz",
    "msdvgg": "musicnn_msd_vgg.npz",
    "mttmusicnn": "musicnn_mtt_musicnn.npz",
    "mttvgg": "musicnn_mtt_vgg.npz",
    "clap": "larger_clap_music",  # a folder: a transformers checkpoint
    "c3d": "c3d.pickle",
    "i3d": "i3d_rgb_kinetics400.npz",
    "r3d_18": "r3d_18-b3b3357e.pth",
    "r2plus1d_18": "r2plus1d_18-91a641e6.pth",
    "mc3_18": "mc3_18-a90a0ba3.pth",
}


# Stage one's option of every net, beside the net's own: "pretrained" (its published weights, the default) or
# "random" (a seeded random initialisation, only when asked: --random-init or [net.<name>] init = "random").
INIT = "init"
INITS = ("pretrained", "random")


def split_init(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(``init``, the net's own options) of a net's stage-one options."""
    rest = dict(options)
    init = rest.pop(INIT, "pretrained")
    if init not in INITS:
        raise ConfigError(f"[net.{name}] {INIT} = {init!r}: expected one of {list(INITS)}")
    if init == "random" and net_class(name).pretrained_only:
        raise ConfigError(
            f"{name} runs with its published checkpoint only (it has no random initialisation mvemo could use):"
            f" leave it out of --random-init and [net.{name}] {INIT}"
        )
    return init, rest


# A variant of a net, ``<net>.<variant>``: the net with the options of its ``[net.<net>.<variant>]`` table (another
# layer or pooling of musicnn, say), cached as an input of its own, so that ``best(...)`` chooses among variants on
# inner folds rather than a default fixed by outer scores.
VARIANT = re.compile(r"^([a-z0-9_]+)(?:\.([a-z0-9_]+))?$")


def base_name(name: str) -> str:
    """The net a name stands for: ``musicnn`` for ``musicnn`` and its variant ``musicnn.taggram``."""
    match = VARIANT.match(name)
    if match is None or match.group(1) not in NETS:
        raise ConfigError(
            f"net {name!r}: not a known net or a variant of one (<net>.<variant>, lowercase);"
            f" nets are {', '.join(NET_NAMES)}"
        )
    return match.group(1)


def require_trainable(nets: tuple[str, ...], option: str) -> None:
    """Refuse to fine-tune a net that runs with its published weights only (``EmotionNet.pretrained_only``)."""
    fixed = [name for name in expand_nets(nets) if net_class(name).pretrained_only]
    if fixed:
        raise ConfigError(
            f"{option}: {', '.join(fixed)} is an encoder used as it is, never fine-tuned; embed it in a run with"
            f" --finetune none (`mvemo extract MANIFEST --cache CACHE --nets {','.join(fixed)}`)"
        )


def net_class(name: str) -> type[EmotionNet]:
    """The class of a net, or of the net a variant is of."""
    return NETS[base_name(name)]


def pretrained_file(name: str) -> str | None:
    """The file of a net's (or its variant's) published weights, None for a net that has none."""
    return PRETRAINED.get(base_name(name))


def net_options(name: str) -> dict[str, Any]:
    """A net's options and their defaults (what ``config`` records besides ``net`` and ``num_classes``)."""
    parameters = inspect.signature(net_class(name).__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def input_kind(name: str) -> str | tuple[str, ...]:
    """The cached feature set(s) a net reads, without building it."""
    return net_class(name).input_kind


def get_net(
    name: str, *, num_classes: int, weights: str | os.PathLike[str] | None = None, **options: Any
) -> EmotionNet:
    """A net by name, in training mode like any new ``nn.Module``.

    Parameters
    ----------
    name : str
        One of ``NET_NAMES``.
    num_classes : int
        Outputs of the head (``forward``'s logits).
    weights : path-like, optional
        A weight file in the net's public format (``net.weights_format``);
        None is random initialisation (seeded by the caller) and no file lookup.
    **options
        The net's own options (``net_options(name)``); every one is recorded in ``net.config``.

    Raises
    ------
    ConfigError
        An unknown name or option, or an option out of range.
    WeightsError
        A weight file that is missing, unreadable or does not fit the net.
    """
    cls = net_class(name)
    allowed = net_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        choices = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "none"
        raise ConfigError(f"net {name!r}: unknown option {', '.join(unknown)}; its options (defaults) are: {choices}")
    net = cls(num_classes, **options)
    if weights is not None:
        net.load_weights(weights)
        net.weights_sha256, net.weights_file = sha256_of(weights), os.path.basename(weights)
    return net


def net_from_config(config: Mapping[str, Any], *, weights: str | os.PathLike[str] | None = None) -> EmotionNet:
    """The net a ``config`` (``net.config``, possibly through JSON) describes."""
    options = {k: v for k, v in config.items() if k not in ("net", "num_classes")}
    return get_net(config["net"], num_classes=config["num_classes"], weights=weights, **options)
