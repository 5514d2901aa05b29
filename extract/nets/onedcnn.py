"""The 1D music CNN of paper 001 (section 3.2, Fig. 3) on the raw 16 kHz waveform.

Blocks of 1D convolution (kernel 3, 32 filters, stride 2), max pooling of 2,
ELU and dropout 0.1; each block shortens the signal 4x (480,000 samples to 8
after eight blocks; pooling rounds up, so short clips work too, and a clip shorter than the window is
embedded from its sound alone). The global
average pools of the last ``pooled_blocks`` blocks are concatenated ("GAP from
various network layers") and go through a fully connected layer with ELU and
dropout, whose output is the embedding; the softmax head is the second fully
connected layer. No pretrained weights exist: paper 001 trains it from scratch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor, embed_sounds, require
from mvemo.extract.sound import sound_frames


class OneDCNN(EmotionNet):
    name = "onedcnn"
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
        require(
            n_blocks >= 1 and filters >= 1 and fc_dim >= 1,
            f"onedcnn n_blocks={n_blocks}, filters={filters}, fc_dim={fc_dim}: expected >= 1",
        )
        require(
            1 <= pooled_blocks <= n_blocks, f"onedcnn pooled_blocks={pooled_blocks}: expected 1..n_blocks ({n_blocks})"
        )
        require(0.0 <= dropout < 1.0, f"onedcnn dropout={dropout}: expected a probability in [0, 1)")
        options = {
            "n_blocks": n_blocks,
            "pooled_blocks": pooled_blocks,
            "filters": filters,
            "fc_dim": fc_dim,
            "dropout": dropout,
        }
        super().__init__(num_classes, fc_dim, options)
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
        self.fc = nn.Sequential(nn.Linear(filters * pooled_blocks, fc_dim), nn.ELU(), nn.Dropout(dropout))
        self._add_head()

    @property
    def embedding_version(self) -> str:
        """2: each clip embedded from its sound, never the window's padding (``embed``)."""
        return "2"

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """``waveform``: (B, n_samples) float32 in [-1, 1] -> (B, fc_dim).

        Each clip is embedded from its sound, its samples up to its last one that is not 0 (the window's padding after
        a short clip is zeros): the padding would otherwise enter the global average pools, so that a clip's embedding
        depended on the window's length. A batch whose clips all fill the window runs as one."""
        return embed_sounds(self._embed, waveform, sound_frames(waveform))

    def _embed(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.unsqueeze(1)
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= len(self.blocks) - self.pooled_blocks:
                pooled.append(x.mean(dim=2))
        return self.fc(torch.cat(pooled, dim=1))

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Waveform (B, n_samples), float16 or float32 -> float32."""
        (waveform,) = arrays
        x = as_tensor(
            waveform, net=self.name, kind="waveform", ndim=2, shape="(B, n_samples) of 16 kHz audio", device=device
        )
        return (x.to(torch.float32),)

    def last_block(self) -> list[nn.Module]:
        return [self.blocks[-1], self.fc]
