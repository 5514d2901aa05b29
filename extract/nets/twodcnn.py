"""The 2D music CNN of paper 001: Choi et al. 2017's compact convnet, pretrained on the Million Song Dataset.

Five blocks of 3x3 convolution (32 channels), normalization, ELU and max pooling
(2,4), (3,4), (2,5), (2,4), (4,4); the embedding is the global average pool of
EVERY block's output, concatenated (5 x 32 = 160), as paper 001 takes it.

The original normalizes with the statistics of the current batch even at
inference (Keras 1 BatchNormalization mode 2), which would make a clip's
embedding depend on its batch neighbours and break resume, determinism and
fold isolation. Here the statistics are each clip's own (instance normalization
with the file's gamma and beta): the original's behaviour at batch size 1.
Pooling rounds up, so clips shorter than 29 s still reach the last block.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import h5py
import numpy as np
import torch
from torch import nn

from extract.nets.base import EmotionNet
from manifests.errors import ConfigError

POOLS = ((2, 4), (3, 4), (2, 5), (2, 4), (4, 4))
CHANNELS = 32
N_MELS = 96


class TwoDCNN(EmotionNet):
    input_kind = "mel"

    def __init__(self, num_classes: int, *, activation: str = "elu") -> None:
        if activation not in ("elu", "relu"):
            raise ConfigError(
                f"twodcnn activation={activation!r}: 'elu' (pretrained inference) or 'relu' (fine-tuning, paper 001)"
            )
        super().__init__(num_classes, CHANNELS * len(POOLS), {"activation": activation})
        act = nn.ELU if activation == "elu" else nn.ReLU
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1 if i == 0 else CHANNELS, CHANNELS, 3, padding=1),
                nn.InstanceNorm2d(CHANNELS, eps=1e-3, affine=True),
                act(),
                nn.MaxPool2d(pool, ceil_mode=True),
            )
            for i, pool in enumerate(POOLS)
        )

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel``: (B, 96, T) dB re the clip's maximum, in [-80, 0]."""
        x = mel.unsqueeze(1)
        pooled = []
        for block in self.blocks:
            x = block(x)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def last_block(self) -> list[nn.Module]:
        return [self.blocks[-1]]

    def load_weights(self, path: Path) -> None:
        """Conv and normalization weights of ``choi_compact_cnn_msd.h5`` (Keras 1 HDF5, OIHW kernels)."""
        with h5py.File(path, "r") as f:
            group = f["ConvBNEluDr"]
            for i, block in enumerate(self.blocks, start=1):
                conv, norm = cast(nn.Sequential, block)[0], cast(nn.Sequential, block)[1]
                conv.weight.data = torch.from_numpy(np.asarray(group[f"convolution2d_{i}_W:0"]))
                conv.bias.data = torch.from_numpy(np.asarray(group[f"convolution2d_{i}_b:0"]))
                norm.weight.data = torch.from_numpy(np.asarray(group[f"batchnormalization_{i}_gamma:0"]))
                norm.bias.data = torch.from_numpy(np.asarray(group[f"batchnormalization_{i}_beta:0"]))
