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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mvemo.extract.nets.base import EmotionNet, as_tensor, require
from mvemo.extract.sound import floor_of, of_sound, sound_frames
from mvemo.manifests.errors import ConfigError

N_MELS = 96
FLOOR_DB = -80.0  # the mel's floor: silence
POOL1, POOL2 = (4, 4), (4, 2)
STEP = POOL1[1] * POOL2[1]  # mel frames per step of the mel LSTM


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
    updated by the net's optimizer by this loss's gradient at the net's rate
    (``extract.finetune.train.set_trainable`` trains them with the head); not by
    Wen et al. 2016's moving-average rule.
    ``reduction='sum'`` is the formula; ``'mean'`` divides by the batch size.
    """

    def __init__(self, num_classes: int, dim: int, *, reduction: str = "sum") -> None:
        super().__init__()
        require(
            num_classes >= 2, f"ImprovedCenterLoss num_classes={num_classes}: expected >= 2 (it needs other classes)"
        )
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


class SoundBatchNorm2d(nn.BatchNorm2d):
    """A batch norm over (B, C, F, T) maps whose training statistics, and the running ones it keeps, count each
    clip's first ``frames`` (B,) alone, its frames of sound (``extract.sound``): not the silence after it. In
    evaluation, a plain batch norm. The statistics are float32 whatever the maps' type (as torch's batch norm keeps
    them under autocast); it keeps ``nn.BatchNorm2d``'s defaults (affine, running statistics, a momentum)."""

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        frames = frames.clamp(max=x.shape[3])
        if not self.training or bool((frames == x.shape[3]).all()):
            return super().forward(x)
        count = int(frames.sum()) * x.shape[2]
        require(count > 1, f"a batch norm over {count} value(s) a channel: batch statistics need 2 or more")
        inside = of_sound(frames, x.shape[3])[:, None, None, :]
        values = x.float()
        mean = torch.where(inside, values, 0).sum(dim=(0, 2, 3)) / count
        variance = torch.where(inside, (values - mean[:, None, None]) ** 2, 0).sum(dim=(0, 2, 3)) / count
        running_mean, running_var, batches = self.running_mean, self.running_var, self.num_batches_tracked
        assert (
            running_mean is not None and running_var is not None and batches is not None and self.momentum is not None
        )
        with torch.no_grad():
            running_mean.lerp_(mean, self.momentum)
            running_var.lerp_(variance * count / (count - 1), self.momentum)  # unbiased, as torch keeps it
            batches += 1
        scale = self.weight / torch.sqrt(variance + self.eps)
        return ((values - mean[:, None, None]) * scale[:, None, None] + self.bias[:, None, None]).to(x.dtype)


class CRNN(EmotionNet):
    name = "crnn"
    input_kind = ("mel", "lld")

    def __init__(
        self,
        num_classes: int,
        *,
        n_lld: int = 63,
        channels: int = 16,
        kernel: int = 7,
        hidden: int = 64,
        tau: float = 0.1,
    ) -> None:
        require(n_lld >= 1, f"crnn n_lld={n_lld}: expected the number of LLD columns (>= 1)")
        require(channels >= 1 and hidden >= 1, f"crnn channels={channels}, hidden={hidden}: expected >= 1")
        require(
            kernel >= 1 and kernel % 2 == 1, f"crnn kernel={kernel}: expected an odd size >= 1 (centred convolutions)"
        )
        require(tau >= 0 and math.isfinite(tau), f"crnn tau={tau}: expected a finite weight >= 0 of the center loss")
        require(num_classes >= 2, f"crnn num_classes={num_classes}: the center loss needs >= 2 classes")
        options = {"n_lld": n_lld, "channels": channels, "kernel": kernel, "hidden": hidden, "tau": tau}
        super().__init__(num_classes, 4 * hidden, options)
        self.conv_time = nn.Conv2d(1, channels, (1, kernel), padding=(0, kernel // 2))
        self.conv_freq = nn.Conv2d(1, channels, (kernel, 1), padding=(kernel // 2, 0))
        self.bn1 = SoundBatchNorm2d(2 * channels)
        self.pool1 = nn.MaxPool2d(POOL1, ceil_mode=True)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.bn2 = SoundBatchNorm2d(2 * channels)
        self.pool2 = nn.MaxPool2d(POOL2, ceil_mode=True)
        bands = math.ceil(math.ceil(N_MELS / POOL1[0]) / POOL2[0])
        self.mel_lstm = nn.LSTM(2 * channels * bands, hidden, batch_first=True, bidirectional=True)
        self.lld_lstm = nn.LSTM(n_lld, hidden, batch_first=True, bidirectional=True)
        self.center_loss = ImprovedCenterLoss(num_classes, 4 * hidden, reduction="mean")
        self._add_head()

    @property
    def embedding_version(self) -> str:
        """2: each clip embedded from its sound, never the window's padding (``embed``); 3: and fine-tuned on batch
        statistics of its sound (``SoundBatchNorm2d``)."""
        return "3"

    def embed(self, mel: torch.Tensor, lld: torch.Tensor) -> torch.Tensor:
        """``mel``: (B, 96, T) dB in [-80, 0]; ``lld``: (B, frames, n_lld) -> (B, 4 * hidden).

        Each clip is embedded from its sound: the mel LSTM reads the steps up to its last frame above the floor
        (``sound_frames``), the LLD LSTM its frames up to its last row that is not the cache's zero padding, and the
        LLD statistics count those frames alone, so that a clip's embedding does not depend on the window's length.
        The convolutions run over the frames the last step of any clip of the batch reaches, the window's padding
        after a short clip or, past the window's end, frames at the floor: silence, whatever the window; in training,
        the batch norms' statistics count each clip's frames that its steps cover, never that silence."""
        if mel.ndim != 3 or mel.shape[1] != N_MELS or lld.ndim != 3 or lld.shape[2] != self.config["n_lld"]:
            raise ConfigError(
                f"crnn inputs mel {tuple(mel.shape)}, lld {tuple(lld.shape)}: expected (B, {N_MELS}, T) and"
                f" (B, frames, {self.config['n_lld']}); build the net with n_lld= the cached LLD's column count"
            )
        steps = torch.div(sound_frames(mel, padding=floor_of(mel)) + STEP - 1, STEP, rounding_mode="floor")
        reach = int(steps.max()) * STEP + STEP + self.config["kernel"]  # the last step's receptive field, and more
        mel = F.pad(mel[:, :, :reach], (0, max(0, reach - mel.shape[2])), value=FLOOR_DB)
        x = (mel.unsqueeze(1) + 40.0) / 40.0  # [-80, 0] dB -> [-1, 1]
        x = self.pool1(F.relu(self.bn1(torch.cat([self.conv_time(x), self.conv_freq(x)], dim=1), steps * STEP)))
        x = self.pool2(F.relu(self.bn2(self.conv2(x), steps * POOL2[1])))  # (B, 2C, 6, T')
        mel_state = final_states(self.mel_lstm, x.flatten(1, 2).transpose(1, 2), steps)
        frames = sound_frames(lld.transpose(1, 2))  # up to its last row that is not the cache's zero padding
        lld_state = final_states(self.lld_lstm, standardized(lld[:, : int(frames.max())], frames), frames)
        return torch.cat([mel_state, lld_state], dim=1)

    def loss(self, embedding: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy + tau * improved center loss, both means over the batch (the paper's sums over m, divided by
        m)."""
        return super().loss(embedding, y) + self.config["tau"] * self.center_loss(embedding, y)

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """dB mel (B, 96, T) and LLD (B, frames, n_lld), float16 or float32 -> float32."""
        mel, lld = arrays
        return (
            as_tensor(mel, net=self.name, kind="mel", ndim=3, shape=f"(B, {N_MELS}, T) of dB", device=device).to(
                torch.float32
            ),
            as_tensor(lld, net=self.name, kind="lld", ndim=3, shape="(B, frames, n_lld)", device=device).to(
                torch.float32
            ),
        )

    def last_block(self) -> list[nn.Module]:
        return [self.mel_lstm, self.lld_lstm]


def final_states(lstm: nn.LSTM, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A bidirectional LSTM's final states (B, 2 * hidden) over each sequence's first ``lengths`` (B,) of its
    ``steps`` (B, T, features): both directions start and end at its last step of sound, never in the padding."""
    if bool((lengths == steps.shape[1]).all()):
        _, (state, _) = lstm(steps)
    else:
        _, (state, _) = lstm(pack_padded_sequence(steps, lengths.cpu(), batch_first=True, enforce_sorted=False))
    return state.transpose(0, 1).flatten(1)  # (2 directions, B, hidden) -> (B, 2 * hidden)


def standardized(lld: torch.Tensor, frames: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each LLD column standardized over each clip's first ``frames`` (B,) rows (instance normalization of its
    sound; the rows after them come out finite and are never read)."""
    inside = of_sound(frames, lld.shape[1])[:, :, None]  # (B, frames, 1)
    count = frames[:, None, None].to(lld.dtype)
    mean = torch.where(inside, lld, 0).sum(dim=1, keepdim=True) / count
    variance = torch.where(inside, (lld - mean) ** 2, 0).sum(dim=1, keepdim=True) / count
    return (lld - mean) / torch.sqrt(variance + eps)
