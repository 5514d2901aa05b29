"""Paper 003's audio model: a CRNN on the mel spectrogram beside a Bi-LSTM on the LLD sequence.

CRNN branch (paper 003 section 2.3.1, Fig. 4): the first convolution C1 has two
kernel shapes, (1, kernel) along time and (kernel, 1) along frequency, whose
feature maps are concatenated; batch norm, ReLU, max pooling P1; a second 3x3
convolution C2; max pooling P2; the columns of P2's maps, in time order, feed
a Bi-LSTM. The paper pools "over time"; P1 and P2 pool frequency too, (4, 4)
and (4, 2) (frequency, time), so the LSTM sees 2 * channels * 6 features a
step instead of 2 * channels * 96. LLD branch (2.3.2): a Bi-LSTM over the LLD
frames, each column standardized over the clip's own frames first (the columns
mix Hz, dB and unit scales; per-clip statistics keep a clip independent of its
batch, as everywhere in mvemo). The embedding is the two Bi-LSTMs' final
states concatenated (4 * hidden); the head is a linear softmax layer trained
with cross-entropy plus ``tau`` times the improved center loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor, require
from mvemo.manifests.errors import ConfigError

N_MELS = 96
POOL1, POOL2 = (4, 4), (4, 2)


class ImprovedCenterLoss(nn.Module):
    """Paper 003's improved center loss (eq. 11), as its text means it.

        L = 1/2 * sum_i ||x_i - Q_{y_i}||^2 / (sum_{j != y_i} ||x_i - Q_j||^2 + 1)

    over the mini-batch: each embedding is pulled to its class centre and pushed
    from the other classes' centres. Eq. 11 as printed divides by the distances
    of OTHER samples x_j to their own centres Q_{y_j}, which contradicts the
    paper's text ("the sum of the distance between the training sample and its
    noncorresponding class center is the largest"); the denominator here is
    that text.

    The centres Q (``centers``, (num_classes, dim)) are learned parameters,
    updated by the optimizer by this loss's gradient, with a learning rate of
    their own where the caller puts them in a separate parameter group
    (``CRNN.param_groups``); not by Wen et al. 2016's moving-average rule.
    ``reduction='sum'`` is the formula; ``'mean'`` divides by the batch size.
    """

    def __init__(self, num_classes: int, dim: int, *, reduction: str = "sum") -> None:
        super().__init__()
        require(num_classes >= 2, f"ImprovedCenterLoss num_classes={num_classes}: expected >= 2 (it needs other classes)")
        require(reduction in ("sum", "mean"), f"ImprovedCenterLoss reduction={reduction!r}: expected 'sum' or 'mean'")
        self.reduction = reduction
        self.centers = nn.Parameter(torch.randn(num_classes, dim) * 0.1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x``: (B, dim) embeddings; ``y``: (B,) int class indices -> scalar."""
        distances = (x[:, None, :] - self.centers[None, :, :]).pow(2).sum(dim=2)  # (B, num_classes), exact squares
        own = distances.gather(1, y[:, None]).squeeze(1)
        others = distances.sum(dim=1) - own
        per_sample = 0.5 * own / (others + 1.0)
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()


class CRNN(EmotionNet):
    name = "crnn"
    input_kind = ("mel", "lld")

    def __init__(
        self, num_classes: int, *, n_lld: int = 63, channels: int = 16, kernel: int = 7, hidden: int = 64, tau: float = 0.1
    ) -> None:
        require(n_lld >= 1, f"crnn n_lld={n_lld}: expected the number of LLD columns (>= 1)")
        require(channels >= 1 and hidden >= 1, f"crnn channels={channels}, hidden={hidden}: expected >= 1")
        require(kernel >= 1 and kernel % 2 == 1, f"crnn kernel={kernel}: expected an odd size >= 1 (centred convolutions)")
        require(tau >= 0 and math.isfinite(tau), f"crnn tau={tau}: expected a finite weight >= 0 of the center loss")
        require(num_classes >= 2, f"crnn num_classes={num_classes}: the center loss needs >= 2 classes")
        options = {"n_lld": n_lld, "channels": channels, "kernel": kernel, "hidden": hidden, "tau": tau}
        super().__init__(num_classes, 4 * hidden, options)
        self.conv_time = nn.Conv2d(1, channels, (1, kernel), padding=(0, kernel // 2))
        self.conv_freq = nn.Conv2d(1, channels, (kernel, 1), padding=(kernel // 2, 0))
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.pool1 = nn.MaxPool2d(POOL1, ceil_mode=True)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.pool2 = nn.MaxPool2d(POOL2, ceil_mode=True)
        bands = math.ceil(math.ceil(N_MELS / POOL1[0]) / POOL2[0])
        self.mel_lstm = nn.LSTM(2 * channels * bands, hidden, batch_first=True, bidirectional=True)
        self.lld_lstm = nn.LSTM(n_lld, hidden, batch_first=True, bidirectional=True)
        self.center_loss = ImprovedCenterLoss(num_classes, 4 * hidden, reduction="mean")
        self._add_head()

    def embed(self, mel: torch.Tensor, lld: torch.Tensor) -> torch.Tensor:
        """``mel``: (B, 96, T) dB in [-80, 0]; ``lld``: (B, frames, n_lld) -> (B, 4 * hidden)."""
        if mel.ndim != 3 or mel.shape[1] != N_MELS or lld.ndim != 3 or lld.shape[2] != self.config["n_lld"]:
            raise ConfigError(
                f"crnn inputs mel {tuple(mel.shape)}, lld {tuple(lld.shape)}: expected (B, {N_MELS}, T) and"
                f" (B, frames, {self.config['n_lld']}); build the net with n_lld= the cached LLD's column count"
            )
        x = (mel.unsqueeze(1) + 40.0) / 40.0  # [-80, 0] dB -> [-1, 1]
        x = self.pool1(F.relu(self.bn1(torch.cat([self.conv_time(x), self.conv_freq(x)], dim=1))))
        x = self.pool2(F.relu(self.bn2(self.conv2(x))))  # (B, 2C, 6, T')
        _, (mel_state, _) = self.mel_lstm(x.flatten(1, 2).transpose(1, 2))
        lld = F.instance_norm(lld.transpose(1, 2)).transpose(1, 2)  # each column over the clip's frames
        _, (lld_state, _) = self.lld_lstm(lld)
        # final states (2 directions, B, hidden) -> (B, 2 * hidden) each
        return torch.cat([mel_state.transpose(0, 1).flatten(1), lld_state.transpose(0, 1).flatten(1)], dim=1)

    def loss(self, embedding: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy + tau * improved center loss, both means over the batch (the paper's sums over m, divided by m)."""
        return super().loss(embedding, y) + self.config["tau"] * self.center_loss(embedding, y)

    def param_groups(self, lr: float, *, center_lr: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the net at ``lr``, the class centres at ``center_lr`` (default ``lr``)."""
        centers = self.center_loss.centers
        rest = [p for p in self.parameters() if p is not centers]
        return [{"params": rest, "lr": lr}, {"params": [centers], "lr": lr if center_lr is None else center_lr}]

    def prepare(self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """dB mel (B, 96, T) and LLD (B, frames, n_lld), float16 or float32 -> float32."""
        mel, lld = arrays
        return (
            as_tensor(mel, net=self.name, kind="mel", ndim=3, shape=f"(B, {N_MELS}, T) of dB", device=device).to(torch.float32),
            as_tensor(lld, net=self.name, kind="lld", ndim=3, shape="(B, frames, n_lld)", device=device).to(torch.float32),
        )

    def last_block(self) -> list[nn.Module]:
        return [self.mel_lstm, self.lld_lstm]
