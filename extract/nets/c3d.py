"""C3D (Tran et al. 2015): 8 convolutions (3x3x3) and 5 max pools, with paper 001's smaller top.

The convolutions and pools are those of the widely used PyTorch port
(DavideA/c3d-pytorch, ``C3D_model.py``), whose Sports-1M state dict
(``c3d.pickle``: ``conv1.weight`` ... ``conv5b.bias``, ``fc6``-``fc8``) it loads
with ``torch.load(weights_only=True)``. Paper 001 replaces fc6 and fc7 (4096
each) by 1024 and 512 with dropout 0.2, so only the convolutions are loaded; fc6
flattens pool5 as the original does, so its size follows ``n_frames`` and
``crop_px`` (32 frames of 112x112: 512 x 2 x 4 x 4 = 16384 inputs). The
embedding is fc7's output (512). The port takes RGB in 0..255 with no mean
subtraction, so that is what ``prepare`` gives.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
from torch import nn

from mvemo.extract.nets.base import EmotionNet, frames_tensor, require
from mvemo.manifests.errors import ConfigError

CONVS = (
    ("conv1", 3, 64),
    ("conv2", 64, 128),
    ("conv3a", 128, 256),
    ("conv3b", 256, 256),
    ("conv4a", 256, 512),
    ("conv4b", 512, 512),
    ("conv5a", 512, 512),
    ("conv5b", 512, 512),
)
POOL_AFTER = {"conv1": (1, 2, 2), "conv2": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2), "conv5b": (2, 2, 2)}


def pool5_shape(n_frames: int, crop_px: int) -> tuple[int, int, int]:
    """(T, H, W) after pool5: time halves at pools 2-5, space at all five (pool5 pads space by 1)."""
    t, s = n_frames, crop_px
    for _ in range(4):
        t, s = t // 2, s // 2
    return t, s // 2 + 1, s // 2 + 1


class C3D(EmotionNet):
    name = "c3d"
    input_kind = "frames112"
    weights_format = "the PyTorch C3D port's Sports-1M state dict c3d.pickle (conv1.weight ... conv5b.bias)"

    def __init__(
        self,
        num_classes: int,
        *,
        n_frames: int = 32,
        crop_px: int = 112,
        fc6: int = 1024,
        fc7: int = 512,
        dropout: float = 0.2,
    ) -> None:
        require(n_frames >= 16, f"c3d n_frames={n_frames}: expected >= 16 (four temporal poolings of 2)")
        require(crop_px >= 16, f"c3d crop_px={crop_px}: expected >= 16 (four spatial poolings of 2)")
        require(fc6 >= 1 and fc7 >= 1, f"c3d fc6={fc6}, fc7={fc7}: expected >= 1")
        require(0.0 <= dropout < 1.0, f"c3d dropout={dropout}: expected a probability in [0, 1)")
        options = {"n_frames": n_frames, "crop_px": crop_px, "fc6": fc6, "fc7": fc7, "dropout": dropout}
        super().__init__(num_classes, fc7, options)
        layers: list[tuple[str, nn.Module]] = []
        for name, c_in, c_out in CONVS:
            layers += [(name, nn.Conv3d(c_in, c_out, 3, padding=1)), (f"relu_{name}", nn.ReLU())]
            if name in POOL_AFTER:
                kernel = POOL_AFTER[name]
                pool = nn.MaxPool3d(kernel, kernel, padding=(0, 1, 1) if name == "conv5b" else 0)
                layers.append((f"pool{name[4]}", pool))
        self.features = nn.Sequential(OrderedDict(layers))
        t, h, w = pool5_shape(n_frames, crop_px)
        self.fc6 = nn.Linear(512 * t * h * w, fc6)
        self.fc7 = nn.Linear(fc6, fc7)
        self.dropout = nn.Dropout(dropout)
        self._add_head()

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames``: (B, 3, n_frames, crop_px, crop_px) float32 RGB in 0..255 -> (B, fc7)."""
        n_frames, crop_px = self.config["n_frames"], self.config["crop_px"]
        if tuple(frames.shape[1:]) != (3, n_frames, crop_px, crop_px):
            raise ConfigError(
                f"c3d input {tuple(frames.shape[1:])} (channels, frames, height, width): fc6 was built for"
                f" (3, {n_frames}, {crop_px}, {crop_px}); build the net with n_frames and crop_px (square frames)"
                " of the cached frames, or cache frames of that size"
            )
        h = self.features(frames).flatten(1)
        h = self.dropout(torch.relu(self.fc6(h)))
        return self.dropout(torch.relu(self.fc7(h)))

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """uint8 frames (B, T, H, W, 3) -> float32 (B, 3, T, H, W) in 0..255."""
        (frames,) = arrays
        return (frames_tensor(frames, net=self.name, kind=self.input_kind, device=device),)

    def last_block(self) -> list[nn.Module]:
        return [self.features.get_submodule("conv5a"), self.features.get_submodule("conv5b"), self.fc6, self.fc7]

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        """The eight convolutions of the port's state dict; its fc6-fc8 (4096, 4096, 487 Sports-1M classes) are not
        used."""
        for name, _, _ in CONVS:
            conv = cast(nn.Conv3d, self.features.get_submodule(name))
            self._copy(conv.weight, arrays, f"{name}.weight", source=source)
            self._copy(cast(torch.Tensor, conv.bias), arrays, f"{name}.bias", source=source)
