"""Paper 003's audio model: a CRNN on the mel spectrogram beside a Bi-LSTM on the LLD sequence.

CRNN branch: the first convolution has two kernel shapes, one along time and one
along frequency, whose feature maps are concatenated; max pooling; a second
convolution; max pooling over time; a Bi-LSTM over the frames. LLD branch: a
linear projection of each LLD frame, then a Bi-LSTM. The embedding is the two
branches' final states concatenated; training adds the improved center loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from extract.nets.base import EmotionNet

N_MELS = 96


class CRNN(EmotionNet):
    input_kind = ("mel", "lld")

    def __init__(self, num_classes: int, *, n_lld: int = 63, channels: int = 16, hidden: int = 64, kernel: int = 7) -> None:
        config = {"n_lld": n_lld, "channels": channels, "hidden": hidden, "kernel": kernel}
        super().__init__(num_classes, 4 * hidden, config)
        self.conv_time = nn.Conv2d(1, channels, (1, kernel), padding=(0, kernel // 2))
        self.conv_freq = nn.Conv2d(1, channels, (kernel, 1), padding=(kernel // 2, 0))
        self.pool1 = nn.MaxPool2d((4, 4), ceil_mode=True)
        self.conv2 = nn.Sequential(nn.Conv2d(2 * channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU())
        self.pool2 = nn.MaxPool2d((4, 2), ceil_mode=True)
        self.mel_lstm = nn.LSTM(2 * channels * 6, hidden, batch_first=True, bidirectional=True)
        self.lld_proj = nn.Linear(n_lld, hidden)
        self.lld_lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)

    def embed(self, mel: torch.Tensor, lld: torch.Tensor) -> torch.Tensor:
        """``mel``: (B, 96, T) dB; ``lld``: (B, frames, n_lld)."""
        x = mel.unsqueeze(1) / 80.0 + 0.5
        x = torch.relu(torch.cat([self.conv_time(x), self.conv_freq(x)], dim=1))
        x = self.pool2(self.conv2(self.pool1(x)))  # (B, C, 6, T')
        sequence = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * 6)
        _, (mel_state, _) = self.mel_lstm(sequence)
        _, (lld_state, _) = self.lld_lstm(torch.tanh(self.lld_proj(lld)))
        return torch.cat([mel_state.transpose(0, 1).flatten(1), lld_state.transpose(0, 1).flatten(1)], dim=1)

    def prepare(self, *arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
        mel, lld = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)
        return mel, lld

    def last_block(self) -> list[nn.Module]:
        return [self.mel_lstm, self.lld_proj, self.lld_lstm]


class ImprovedCenterLoss(nn.Module):
    """Paper 003's improved center loss, as its text means it.

    L = 1/2 * sum_i ||x_i - Q_{y_i}||^2 / (sum_{j != y_i} ||x_i - Q_j||^2 + 1) over the mini-batch:
    pull each embedding to its class centre and away from the other centres.
    (Eq. 11 as printed divides by the distances of OTHER samples to their own
    centres, which contradicts the text.) The centres Q are learned parameters,
    updated by the optimizer with their own learning rate (a separate parameter
    group), not by Wen et al.'s moving-average rule.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim) * 0.1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        distances = torch.cdist(x, self.centers).pow(2)  # (B, n_classes)
        own = distances.gather(1, y[:, None]).squeeze(1)
        others = distances.sum(dim=1) - own
        return 0.5 * (own / (others + 1.0)).sum()
