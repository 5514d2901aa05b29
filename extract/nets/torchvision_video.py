"""torchvision's 18-layer video ResNets (Tran et al. 2018): ``r3d_18``, ``mc3_18`` and ``r2plus1d_18``.

The backbone is torchvision's own model with its classifier removed; the
embedding is its global average pool (512). Weights: a torchvision state dict
(``r3d_18-b3b3357e.pth`` and the like) from a file the user gives, or from
torch's hub cache where ``extract.weights`` finds it, read with
``torch.load(weights_only=True)``; else random initialisation (the caller logs
which). Input: the cached 112x112 frames (torchvision resizes to 128x171 and
crops 112, as mvemo's ``frames112``), scaled to [0, 1] and normalized with
the Kinetics-400 mean and std of torchvision's ``VideoClassification`` preset.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from mvemo.extract.nets.base import EmotionNet, frames_tensor, require
from mvemo.extract.weights.registry import WeightsError

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
EMBEDDING_DIM = 512


class TorchvisionVideo(EmotionNet):
    input_kind = "frames112"
    weights_format = "torchvision's state dict of this video ResNet (stem.0.weight, layer1.0.conv1.0.weight, ...)"

    def __init__(self, num_classes: int, *, dropout: float = 0.0) -> None:
        from torchvision.models import video

        require(0.0 <= dropout < 1.0, f"{self.name} dropout={dropout}: expected a probability in [0, 1)")
        super().__init__(num_classes, EMBEDDING_DIM, {"dropout": dropout})
        self.backbone = getattr(video, self.name)(weights=None)
        self.backbone.fc = nn.Identity()
        self._add_head(dropout)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames``: (B, 3, T, H, W) float32, normalized (see ``prepare``) -> (B, 512)."""
        return self.backbone(frames)

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """uint8 frames (B, T, H, W, 3) -> (B, 3, T, H, W) float32, (x / 255 - mean) / std with Kinetics' statistics."""
        (frames,) = arrays
        x = frames_tensor(frames, net=self.name, kind=self.input_kind, device=device)
        mean = torch.tensor(KINETICS_MEAN, device=x.device).view(1, 3, 1, 1, 1) * 255.0
        std = torch.tensor(KINETICS_STD, device=x.device).view(1, 3, 1, 1, 1) * 255.0
        return ((x - mean) / std,)

    def last_block(self) -> list[nn.Module]:
        return [self.backbone.layer4]

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        """Every backbone tensor (BN statistics included); the Kinetics classifier ``fc`` is not used."""
        state = self.backbone.state_dict()
        extra = sorted(k for k in arrays if k not in state and not k.startswith("fc."))
        if extra:
            raise WeightsError(
                f"weights {source}: {extra[:3]}... are not {self.name} names; {self.name} loads {self.weights_format}"
            )
        for key, target in state.items():
            if target.dtype.is_floating_point:
                self._copy(target, arrays, key, source=source)
            elif key in arrays:  # num_batches_tracked
                target.copy_(torch.as_tensor(arrays[key]))


class R3D18(TorchvisionVideo):
    name = "r3d_18"


class MC318(TorchvisionVideo):
    name = "mc3_18"


class R2Plus1D18(TorchvisionVideo):
    name = "r2plus1d_18"
