"""The FER2013 expression nets (Arriaga et al. 2017, oarriaga/face_classification): mini and big Xception, run in
torch from their Keras 2 HDF5 files.

A file's ``model_config`` is the architecture (authoritative, per ``../shared/weights/README.md``); this module
builds it layer by layer: Conv2D, SeparableConv2D (depthwise then pointwise, no bias between), BatchNormalization
(Keras's eps 1e-3), ReLU, MaxPooling2D, Add, GlobalAveragePooling2D, softmax. 'same' padding is TensorFlow's:
``total = max((ceil(n / s) - 1) * s + k - n, 0)``, ``total // 2`` before and the rest after (a max pool pads with
-inf). Input (N, 1, 64, 64): a gray face, ``(x / 255 - 0.5) * 2``. Classes in output order: angry, disgust, fear,
happy, sad, surprise, neutral (``extract.faces.sets.FER_CLASSES``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.weights.registry import WeightsError


@dataclass
class Expression:
    """A batch of faces through an expression net: ``feature_map`` (N, C, h, w), the last residual sum (the input
    of the classifier conv); ``class_map`` (N, 7, h, w); ``logits`` (N, 7), its spatial mean; ``proba`` (N, 7)."""

    feature_map: torch.Tensor
    class_map: torch.Tensor
    logits: torch.Tensor
    proba: torch.Tensor

    @property
    def features(self) -> torch.Tensor:
        """The penultimate features, (N, C): the feature map's spatial mean."""
        return self.feature_map.mean(dim=(2, 3))


def _same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """``x`` padded as TensorFlow's 'same' pads it for this kernel and stride."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad lists the last axis first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class _Conv(nn.Module):
    def __init__(self, weights: dict[str, np.ndarray], config: dict[str, Any], separable: bool) -> None:
        super().__init__()
        self.kernel, self.stride = int(config["kernel_size"][0]), int(config["strides"][0])
        self.same = config["padding"] == "same"
        if separable:
            depthwise = torch.from_numpy(weights["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
            channels = len(depthwise)
            self.depthwise: nn.Conv2d | None = nn.Conv2d(
                channels, channels, self.kernel, self.stride, groups=channels, bias=False
            )
            self.depthwise.weight.data = depthwise
            kernel, stride = weights["pointwise_kernel"], 1
        else:
            self.depthwise = None
            kernel, stride = weights["kernel"], self.stride
        weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        self.conv = nn.Conv2d(
            weight.shape[1], weight.shape[0], (weight.shape[2], weight.shape[3]), stride, bias="bias" in weights
        )
        self.conv.weight.data = weight
        if "bias" in weights:
            self.conv.bias.data = torch.from_numpy(weights["bias"].copy())  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _same(x, self.kernel, self.stride)
        if self.depthwise is not None:
            x = self.depthwise(x)
        return self.conv(x)


class _MaxPool(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.kernel, self.stride, self.same = (
            int(config["pool_size"][0]),
            int(config["strides"][0]),
            config["padding"] == "same",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _same(x, self.kernel, self.stride, value=-math.inf)
        return F.max_pool2d(x, self.kernel, self.stride)


def _batch_norm(weights: dict[str, np.ndarray], config: dict[str, Any]) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(len(weights["gamma"]), eps=float(config["epsilon"]))
    for name, key in (
        ("weight", "gamma"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"),
    ):
        getattr(norm, name).data = torch.from_numpy(weights[key].copy())
    return norm


class _Activation(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.kind = config["activation"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.kind == "relu" else torch.softmax(x, dim=1)


class _Pass(nn.Module):
    """InputLayer and Add: the sum of its inputs (one input passes through)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return inputs[0] if len(inputs) == 1 else torch.stack(inputs).sum(dim=0)


class _GlobalMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ExpressionNet(nn.Module):
    """A Keras expression net's graph in torch: ``forward(x)`` (N, 1, 64, 64) in [-1, 1] gives an ``Expression``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        config, weights = _read_keras(path)
        self.layers = nn.ModuleDict()
        self.inputs: dict[str, list[str]] = {}
        for layer in config["config"]["layers"]:
            name, kind, options = layer["name"], layer["class_name"], layer["config"]
            self.layers[name] = _build(kind, weights.get(name, {}), options, path)
            self.inputs[name] = [inbound[0] for node in layer["inbound_nodes"] for inbound in node]
        order = list(self.layers)
        self.output = config["config"]["output_layers"][0][0]
        self.pooled = self.inputs[self.output][0]
        self.class_map = self.inputs[self.pooled][0]
        self.last_sum = self.inputs[self.class_map][0]
        if [type(self.layers[n]) for n in (self.pooled, self.last_sum)] != [_GlobalMean, _Pass] or order[0] != config[
            "config"
        ]["input_layers"][0][0]:
            raise WeightsError(
                f"weights {path}: not a mini/big Xception of face_classification (its last layers differ)"
            )
        self.eval()

    def forward(self, x: torch.Tensor) -> Expression:
        values: dict[str, torch.Tensor] = {}
        for name, layer in self.layers.items():
            values[name] = layer(*(values[n] for n in self.inputs[name])) if self.inputs[name] else layer(x)
        return Expression(values[self.last_sum], values[self.class_map], values[self.pooled], values[self.output])


def _build(kind: str, weights: dict[str, np.ndarray], options: dict[str, Any], path: Any) -> nn.Module:
    if kind in ("Conv2D", "SeparableConv2D"):
        return _Conv(weights, options, separable=kind == "SeparableConv2D")
    if kind == "BatchNormalization":
        return _batch_norm(weights, options)
    if kind == "MaxPooling2D":
        return _MaxPool(options)
    if kind == "Activation" and options["activation"] in ("relu", "softmax"):
        return _Activation(options)
    if kind in ("InputLayer", "Add"):
        return _Pass()
    if kind == "GlobalAveragePooling2D":
        return _GlobalMean()
    raise WeightsError(
        f"weights {path}: a {kind} layer ({options.get('name')}); an expression net has none,"
        " give a face_classification Xception"
    )


def _read_keras(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """A Keras 2 full-model HDF5's architecture and its layers' weights by layer and short name (``kernel``, ...)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])
            group = f["model_weights"]
            weights = {
                layer: {
                    name.decode().rsplit("/", 1)[-1].removesuffix(":0"): np.asarray(group[layer][name.decode()])
                    for name in group[layer].attrs["weight_names"]
                }
                for layer in group
            }
    except (OSError, KeyError) as err:
        raise WeightsError(
            f"weights {path}: not a Keras full-model HDF5 ({err}); give faces_fer2013_mini_xception.h5 or the big one"
        ) from None
    return config, weights
