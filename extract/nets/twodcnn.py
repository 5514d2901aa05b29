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

``ChoiMelgram`` is the file's own front end (STFT kernels and mel matrix at
12 kHz); mvemo's features do not use it, it checks that the cached mel matches
what the weights were trained on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor, embed_sounds, require, sound_frames
from mvemo.extract.weights.io import read_weights
from mvemo.extract.weights.registry import WeightsError

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
            f"twodcnn activation={activation!r}: expected 'elu' (pretrained inference) or 'relu' (fine-tuning, paper 001)",
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
        return embed_sounds(self._embed, mel, sound_frames(mel))

    def _embed(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)
        pooled = []
        for block in self.blocks:
            x = block(x)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def prepare(self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """dB mel (B, 96, T), float16 or float32 -> float32."""
        (mel,) = arrays
        x = as_tensor(mel, net=self.name, kind="mel", ndim=3, shape=f"(B, {N_MELS}, T) of dB", device=device)
        require(x.shape[1] == N_MELS, f"twodcnn.prepare: mel of shape {tuple(x.shape)}; expected {N_MELS} mel bands on axis 1")
        return (x.to(torch.float32),)

    def last_block(self) -> list[nn.Module]:
        return [self.blocks[-1]]

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        """Conv kernels (OIHW cross-correlation, as PyTorch wants them), biases, and the normalizations' gamma and beta.

        The stored running statistics are Keras' untouched initial 0/1 (mode 2
        never used them) and are not needed.
        """
        for i, block in enumerate(self.blocks, start=1):
            conv, norm = cast(nn.Conv2d, cast(nn.Sequential, block)[0]), cast(nn.InstanceNorm2d, cast(nn.Sequential, block)[1])
            self._copy(conv.weight, arrays, f"{LAYER}/convolution2d_{i}_W:0", source=source)
            self._copy(cast(torch.Tensor, conv.bias), arrays, f"{LAYER}/convolution2d_{i}_b:0", source=source)
            self._copy(norm.weight, arrays, f"{LAYER}/batchnormalization_{i}_gamma:0", source=source)
            self._copy(norm.bias, arrays, f"{LAYER}/batchnormalization_{i}_beta:0", source=source)


class ChoiMelgram(nn.Module):
    """The compact CNN's own kapre front end at 12 kHz, from the kernels in its weight file.

    STFT as a strided convolution with the stored windowed cos and sin kernels
    (n_dft 512, hop 256, TF "same" padding), power, the stored (257, 96) mel
    matrix, then dB re the maximum floored at -80. The original takes the
    maximum over the whole batch; here it is each clip's, like mvemo's mel.
    """

    N_DFT, HOP = 512, 256

    def __init__(self, cos: np.ndarray, sin: np.ndarray, mel_basis: np.ndarray) -> None:
        super().__init__()
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.mel_basis: torch.Tensor
        self.register_buffer("cos", torch.from_numpy(np.ascontiguousarray(cos[:, 0, 0, :].T[:, None, :], dtype=np.float32)))
        self.register_buffer("sin", torch.from_numpy(np.ascontiguousarray(sin[:, 0, 0, :].T[:, None, :], dtype=np.float32)))
        self.register_buffer("mel_basis", torch.from_numpy(np.asarray(mel_basis, dtype=np.float32)))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ChoiMelgram:
        arrays = read_weights(path)
        keys = [f"melgram/Variable{suffix}:0" for suffix in ("", "_1", "_2")]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise WeightsError(f"weights {path}: no {missing}; the front end is in choi_compact_cnn_msd.h5")
        return cls(*(arrays[k] for k in keys))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``y``: (B, n) mono audio at 12 kHz -> (B, 96, ceil(n / 256)) dB in [-80, 0]."""
        n = y.shape[-1]
        total = max((math.ceil(n / self.HOP) - 1) * self.HOP + self.N_DFT - n, 0)
        x = F.pad(y[:, None, :], (total // 2, total - total // 2))
        power = F.conv1d(x, self.cos, stride=self.HOP) ** 2 + F.conv1d(x, self.sin, stride=self.HOP) ** 2  # (B, 257, frames)
        db = 10.0 * torch.log10(torch.clamp(torch.einsum("bft,fm->bmt", power, self.mel_basis), min=1e-10))
        return torch.clamp(db - db.amax(dim=(1, 2), keepdim=True), min=-80.0)
