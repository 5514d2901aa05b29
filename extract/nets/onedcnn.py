"""The 1D music CNN of paper 001 (section 3.2, Fig. 3) on the raw 16 kHz waveform.

Blocks of 1D convolution (kernel 3, 32 filters, stride 2), max pooling of 2,
ELU and dropout 0.1; each block shortens the signal 4x (480,000 samples to 7
after eight blocks). The global average pools of the last ``pooled_blocks``
blocks are concatenated and go through a fully connected layer, whose output
(after ELU) is the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from extract.nets.base import EmotionNet
from manifests.errors import ConfigError


class OneDCNN(EmotionNet):
    input_kind = "waveform"

    def __init__(
        self,
        num_classes: int,
        *,
        n_blocks: int = 8,
        pooled_blocks: int = 4,
        filters: int = 32,
        fc_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        if not 1 <= pooled_blocks <= n_blocks:
            raise ConfigError(f"onedcnn pooled_blocks={pooled_blocks}: expected 1..n_blocks ({n_blocks})")
        config = {"n_blocks": n_blocks, "pooled_blocks": pooled_blocks, "filters": filters, "fc_dim": fc_dim, "dropout": dropout}
        super().__init__(num_classes, fc_dim, config)
        self.pooled_blocks = pooled_blocks
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(1 if i == 0 else filters, filters, 3, stride=2, padding=1),
                nn.MaxPool1d(2, ceil_mode=True),
                nn.ELU(),
                nn.Dropout(dropout),
            )
            for i in range(n_blocks)
        )
        self.fc = nn.Sequential(nn.Linear(filters * pooled_blocks, fc_dim), nn.ELU())

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """``waveform``: (B, n_samples) float32 in [-1, 1]."""
        x = waveform.unsqueeze(1)
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= len(self.blocks) - self.pooled_blocks:
                pooled.append(x.mean(dim=2))
        return self.fc(torch.cat(pooled, dim=1))

    def last_block(self) -> list[nn.Module]:
        return [self.blocks[-1], self.fc]
