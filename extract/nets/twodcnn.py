"""The 2D music CNN of paper 001: Choi et al. 2017's compact convnet, pretrained on the Million Song Dataset.

Five blocks of 3x3 convolution (32 channels), normalization, ELU and max pooling
(2,4), (3,4), (2,5), (2,4), (4,4) (frequency, time); the embedding is the
global average pool of EVERY block's output, concatenated (5 x 32 = 160), as
paper 001 takes it. Paper 001 fine-tunes with ReLU in place of ELU:
``activation='relu'`` (the pretrained filters were learnt with ELU, which is
the default for inference without fine-tuning).

Input: the cached mel spectrogram (16 kHz, 96 Slaney bands to 6 kHz: the band
frequencies of the file's own 12 kHz front end), in dB re the clip's maximum,
floored at -80, shape (B, 96, T).

The original normalizes with the statistics of the current batch even at
inference (Keras 1 BatchNormalization mode 2), which would make a clip's
embedding depend on its batch neighbours and break resume, determinism and
fold isolation. Here the statistics are always each clip's own (instance
normalization with the file's gamma and beta, eps 1e-3), in training too: the
original's behaviour at batch size 1. Pooling rounds up (Keras rounded down), so
clips shorter than 29 s still reach the last block, and a clip shorter than the
window is embedded from its sound alone, never the window's padding.

The file also holds its own front end (STFT kernels and mel matrix at 12 kHz);
mvemo's features do not use it: a test checks with it that the cached mel is
what the weights were trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor, embed_sounds, require
from mvemo.extract.sound import floor_of, sound_frames

POOLS = ((2, 4), (3, 4), (2, 5), (2, 4), (4, 4))
CHANNELS = 32
N_MELS = 96
LAYER = "ConvBNEluDr"


class TwoDCNN(EmotionNet):
    name = "twodcnn"
    input_kind = "mel"
    weights_format = "the Keras 1 HDF5 file choi_compact_cnn_msd.h5 (ConvBNEluDr/convolution2d_k_W:0, ...)"

    def __init__(self, num_classes: int, *, activation: str = "elu") -> None:
        require(
            activation in ("elu", "relu"),
            f"twodcnn activation={activation!r}:"
            " expected 'elu' (pretrained inference) or 'relu' (fine-tuning, paper 001)",
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
        self._add_head()

    @property
    def embedding_version(self) -> str:
        """2: each clip embedded from its sound, never the window's padding (``embed``)."""
        return "2"

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel``: (B, 96, T) dB re the clip's maximum, in [-80, 0] -> (B, 160).

        Each clip is embedded from its sound (``sound_frames``): the window's padding after a clip shorter than the
        window would otherwise enter every normalization's statistics and every pool, so that a clip's embedding
        depended on the window's length. A batch whose clips all fill the window runs as one."""
        return embed_sounds(self._embed, mel, sound_frames(mel, padding=floor_of(mel)))

    def _embed(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)
        pooled = []
        for block in self.blocks:
            x = block(x)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """dB mel (B, 96, T), float16 or float32 -> float32."""
        (mel,) = arrays
        x = as_tensor(mel, net=self.name, kind="mel", ndim=3, shape=f"(B, {N_MELS}, T) of dB", device=device)
        require(
            x.shape[1] == N_MELS,
            f"twodcnn.prepare: mel of shape {tuple(x.shape)}; expected {N_MELS} mel bands on axis 1",
        )
        return (x.to(torch.float32),)

    def last_block(self) -> list[nn.Module]:
        return [self.blocks[-1]]

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        """Conv kernels (OIHW cross-correlation, as PyTorch wants them), biases, and the normalizations' gamma and beta.

        The stored running statistics are Keras' untouched initial 0/1 (mode 2
        never used them) and are not needed.
        """
        for i, block in enumerate(self.blocks, start=1):
            conv, norm = (
                cast(nn.Conv2d, cast(nn.Sequential, block)[0]),
                cast(nn.InstanceNorm2d, cast(nn.Sequential, block)[1]),
            )
            self._copy(conv.weight, arrays, f"{LAYER}/convolution2d_{i}_W:0", source=source)
            self._copy(cast(torch.Tensor, conv.bias), arrays, f"{LAYER}/convolution2d_{i}_b:0", source=source)
            self._copy(norm.weight, arrays, f"{LAYER}/batchnormalization_{i}_gamma:0", source=source)
            self._copy(norm.bias, arrays, f"{LAYER}/batchnormalization_{i}_beta:0", source=source)
