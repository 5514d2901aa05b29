"""One 3-s patch through Pons & Serra 2019's musicnn and its VGG-like baseline, both pretrained on the Million Song
Dataset (50 tags) and on MagnaTagATune: a port of the musicnn 0.1.0 package's ``models.py`` (TensorFlow 1) to
PyTorch, loading the checkpoints as plain arrays (``musicnn_msd_musicnn.npz``, ``musicnn_msd_vgg.npz``...) and
matching the package's intermediates to 1e-4 (``tests/extract/test_nets_musicnn.py``). Batch norms are TF1's (eps
1e-3) and follow each ReLU, as in the original. ``extract.nets.musicnn`` cuts a clip into patches and pools them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial, reduce
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import require

N_MELS = 96
PATCH_FRAMES = 187
# The 50 Million Song Dataset tags, output i = tag i (musicnn's configuration.MSD_LABELS).
MSD_TAGS = (
    "rock",
    "pop",
    "alternative",
    "indie",
    "electronic",
    "female vocalists",
    "dance",
    "00s",
    "alternative rock",
    "jazz",
    "beautiful",
    "metal",
    "chillout",
    "male vocalists",
    "classic rock",
    "soul",
    "indie rock",
    "Mellow",
    "electronica",
    "80s",
    "folk",
    "90s",
    "chill",
    "instrumental",
    "punk",
    "oldies",
    "blues",
    "hard rock",
    "ambient",
    "acoustic",
    "experimental",
    "female vocalist",
    "guitar",
    "Hip-Hop",
    "70s",
    "party",
    "country",
    "easy listening",
    "sexy",
    "catchy",
    "funk",
    "electro",
    "heavy metal",
    "Progressive rock",
    "60s",
    "rnb",
    "indie pop",
    "sad",
    "House",
    "happy",
)
# The 50 MagnaTagATune tags, output i = tag i (musicnn's configuration.MTT_LABELS).
MTT_TAGS = (
    "guitar",
    "classical",
    "slow",
    "techno",
    "strings",
    "drums",
    "electronic",
    "rock",
    "fast",
    "piano",
    "ambient",
    "beat",
    "violin",
    "vocal",
    "synth",
    "female",
    "indian",
    "opera",
    "male",
    "singing",
    "vocals",
    "no vocals",
    "harpsichord",
    "loud",
    "quiet",
    "flute",
    "woman",
    "male vocal",
    "no vocal",
    "pop",
    "soft",
    "sitar",
    "solo",
    "man",
    "classic",
    "choir",
    "voice",
    "new age",
    "dance",
    "male voice",
    "female vocal",
    "beats",
    "harp",
    "cello",
    "no voice",
    "weird",
    "country",
    "metal",
    "female voice",
    "choral",
)
N_TAGS = len(MSD_TAGS)
BN_EPS = 1e-3
# the layers (with pool = "patches") whose activations stage two fine-tunes the layers above, lowest last
UPPER_CUTS = {
    "musicnn": ("pooled", "cnn2_cut", "cnn1_cut"),
    "msdvgg": ("pool4",),
    "mttmusicnn": ("pooled", "cnn2_cut", "cnn1_cut"),
    "mttvgg": ("pool4",),
}


def tf_batch_norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=BN_EPS)


def pad_time(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero-pad the time axis (dim 2) of (B, C, T, F) or (B, C, T)."""
    pad = (0, 0, before, after) if x.ndim == 4 else (before, after)
    return F.pad(x, pad)


class BatchNorm2dOf1d(nn.Module):
    """A per-channel batch norm for (B, C, H, W) whose parameters are a ``BatchNorm1d`` (as TF stores them)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = tf_batch_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return self.bn(x.reshape(b, c, h * w)).reshape(b, c, h, w)


def max_of_bn_relu(
    conv: nn.Conv2d, bn: BatchNorm2dOf1d, x: torch.Tensor, pool: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``pool(bn(relu(conv(x))))`` for a ``pool`` that takes maxima over windows of each channel's map.

    At inference the batch norm is ``scale * relu(c) + shift`` per channel: ``max(scale * c + shift, shift)`` where
    the scale is positive, ``min(scale * c + shift, shift)`` where it is negative. A max over a window commutes with
    both, so the conv runs with the affine map folded into its weights, the max is taken over its raw output, and one
    clamp of the pooled map finishes: one pass over the largest maps of each net instead of three (musicnn's timbral
    block, msdvgg's first two blocks; equal to 2e-5). Under autocast the blocks run as written: folded into a bf16
    conv, the norm's affine map took msdvgg's embedding 0.029 from float32 (relative L2, an H200) instead of 0.015.
    """
    if bn.training or torch.is_autocast_enabled(x.device.type):
        return pool(bn(F.relu(conv(x))))
    norm = bn.bn
    assert norm.running_var is not None and norm.running_mean is not None  # tf_batch_norm tracks running statistics
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    bias = shift if conv.bias is None else conv.bias * scale + shift
    pooled = pool(conv._conv_forward(x, conv.weight * scale[:, None, None, None], bias))
    view = (-1,) + (1,) * (pooled.ndim - 2)
    positive = (scale >= 0).view(view)
    infinity = torch.full_like(shift, torch.inf).view(view)
    return pooled.clamp(
        torch.where(positive, shift.view(view), -infinity), torch.where(positive, infinity, shift.view(view))
    )


def max_pool(y: torch.Tensor, window: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """``F.max_pool2d(y, window, stride)``; on a CPU laid out channels last.

    oneDNN runs msdvgg's 128-channel convs at the machine's GEMM rate on channels-last maps and a fifth slower on
    NCHW ones, and PyTorch pools a channels-last map ten times faster. An NCHW map on a CPU (the output of a conv over
    one channel, which stays NCHW, or of a batch norm in training), whose pooling took 185 ms a clip in the first
    block, is pooled as the max of its strided views (23 ms).
    """
    if y.device.type != "cpu" or y.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(y, window, stride)
    for axis, size, step in ((3, window[1], stride[1]), (2, window[0], stride[0])):  # columns, then rows
        count = (y.shape[axis] - size) // step + 1
        y = reduce(torch.maximum, (strided(y, axis, i, step, count) for i in range(size)))
    return y.contiguous(memory_format=torch.channels_last)


def strided(y: torch.Tensor, axis: int, start: int, step: int, count: int) -> torch.Tensor:
    """``count`` entries of ``y`` along ``axis``, ``step`` apart from ``start``."""
    index = [slice(None)] * y.ndim
    index[axis] = slice(start, start + step * (count - 1) + 1, step)
    return y[tuple(index)]


def max_over_mel(y: torch.Tensor) -> torch.Tensor:
    """(B, C, T, M) -> (B, C, T)."""
    return y.amax(dim=3)


class PatchNet(nn.Module):
    """A net over patches (B, 187, 96) of log-mel: ``layers(x)`` gives every named intermediate."""

    layer_dims: ClassVar[dict[str, int]] = {}

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_arrays(self, arrays: Mapping[str, np.ndarray], copy: Any) -> None:
        """Copy the checkpoint's ``arrays`` (by TF name) in, through ``copy(target, arrays, key, transform=None)``."""
        raise NotImplementedError

    def last_block(self) -> list[nn.Module]:
        raise NotImplementedError


class MusicnnPatches(PatchNet):
    """musicnn: a timbral and temporal front end, a dense mid end with residuals, a pooled back end."""

    layer_dims: ClassVar[dict[str, int]] = {
        "penultimate": 200,
        "mean_pool": 753,
        "max_pool": 753,
        "pooled": 1506,
        "taggram": N_TAGS,
        # cuts under the mid end's last convolutions (``upper_layers``): the map of cnn1 (cnn2) over time, then the
        # back end's input of the channels below it
        "cnn1_cut": PATCH_FRAMES * 64 + 2 * (561 + 64),
        "cnn2_cut": PATCH_FRAMES * 64 + 2 * (561 + 128),
    }

    def __init__(self) -> None:
        super().__init__()
        self.input_bn = tf_batch_norm(1)
        # front end: (kernel over time, kernel over mel, filters); timbral then temporal, in models.py's order
        self.timbral = nn.ModuleList(nn.Conv2d(1, 204, (7, width)) for width in (38, 67))
        self.temporal = nn.ModuleList(nn.Conv2d(1, 51, (length, 1)) for length in (128, 64, 32))
        self.front_bn = nn.ModuleList(BatchNorm2dOf1d(c) for c in (204, 204, 51, 51, 51))
        self.mid = nn.ModuleList(nn.Conv1d(channels, 64, 7) for channels in (561, 64, 64))
        self.mid_bn = nn.ModuleList(tf_batch_norm(64) for _ in range(3))
        self.pool_bn = tf_batch_norm(1506)
        self.dense = nn.Linear(1506, 200)
        self.dense_bn = tf_batch_norm(200)
        self.dropout = nn.Dropout(0.5)
        self.tags = nn.Linear(200, N_TAGS)

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` (B, 187, 96) -> timbral (B, T, 408), temporal (B, T, 153), cnn1-3 (B, T, 64), mean_pool and max_pool
        (B, 753), pooled (B, 1506: both, interleaved, the back end's input), penultimate (B, 200), logits and
        taggram (B, 50); the cuts cnn1_cut and cnn2_cut (B, T x 64 + the pooled columns of the channels up to that
        convolution)."""
        b = x.shape[0]
        z = self.input_bn(x.reshape(b, 1, -1)).reshape(b, 1, *x.shape[1:])  # (B, 1, T, 96)
        front = []
        front_bns = cast(list[BatchNorm2dOf1d], list(self.front_bn))
        for conv, front_bn in zip([*self.timbral, *self.temporal], front_bns):
            k = conv.kernel_size[0]  # TF 'same' over time: (k - 1) // 2 zeros before, k // 2 after (3 and 3 for 7)
            front.append(max_of_bn_relu(conv, front_bn, pad_time(z, (k - 1) // 2, k // 2), max_over_mel))  # (B, C, T)
        front_features = torch.cat(front, dim=1)  # (B, 561, T)
        mid, h = [], front_features
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn)):
            out = bn(F.relu(conv(pad_time(h, 3, 3))))
            h = out if i == 0 else out + h
            mid.append(h)
        features = torch.cat([front_features, *mid], dim=1)  # (B, 753, T)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        interleaved = torch.stack([max_pool, mean_pool], dim=2).reshape(b, -1)  # TF flattened [max, mean] per channel
        penultimate = self.dense_bn(F.relu(self.dense(self.dropout(self.pool_bn(interleaved)))))
        logits = self.tags(self.dropout(penultimate))
        below = [2 * (front_features.shape[1] + 64 * (i + 1)) for i in range(2)]  # pooled columns under cnn2, cnn3
        return {
            "timbral": torch.cat(front[:2], dim=1).transpose(1, 2),
            "temporal": torch.cat(front[2:], dim=1).transpose(1, 2),
            **{f"cnn{i + 1}": m.transpose(1, 2) for i, m in enumerate(mid)},
            **{
                f"cnn{i + 1}_cut": torch.cat([mid[i].transpose(1, 2).reshape(b, -1), interleaved[:, :n]], dim=1)
                for i, n in enumerate(below)
            },
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "pooled": interleaved,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }

    def load_arrays(self, arrays: Mapping[str, np.ndarray], copy: Any) -> None:
        def conv2d(target: nn.Conv2d, name: str) -> None:
            copy(target.weight, arrays, f"{name}/kernel", transform=lambda k: k.transpose(3, 2, 0, 1))
            copy(target.bias, arrays, f"{name}/bias")

        def conv1d(target: nn.Conv1d, name: str) -> None:  # TF (k, channels, 1, filters) -> (filters, channels, k)
            copy(target.weight, arrays, f"{name}/kernel", transform=lambda k: k[:, :, 0, :].transpose(2, 1, 0))
            copy(target.bias, arrays, f"{name}/bias")

        def dense(target: nn.Linear, name: str) -> None:
            copy(target.weight, arrays, f"{name}/kernel", transform=lambda k: k.T)
            copy(target.bias, arrays, f"{name}/bias")

        for i, conv in enumerate([*self.timbral, *self.temporal]):
            conv2d(conv, f"conv2d{'' if i == 0 else f'_{i}'}")
        for i, conv in enumerate(cast(list[nn.Conv1d], list(self.mid))):
            conv1d(conv, f"conv2d_{5 + i}")
        bns = [self.input_bn, *(m.bn for m in self.front_bn), *self.mid_bn, self.pool_bn, self.dense_bn]
        for i, bn in enumerate(bns):
            load_batch_norm(bn, arrays, f"batch_normalization{'' if i == 0 else f'_{i}'}", copy)
        dense(self.dense, "dense")
        dense(self.tags, "dense_1")

    def last_block(self) -> list[nn.Module]:
        return [self.pool_bn, self.dense, self.dense_bn]

    def upper_layers(self, cut: str) -> dict[str, np.ndarray]:
        """The layers above ``cut`` (pooled, cnn2_cut, cnn1_cut) as float32 arrays, each batch norm (at inference) as
        the scale and shift it applies (``fuse.heads.upper_net.upper_net`` runs them):

        - the back end: penultimate = bn_scale * relu(dense_weight @ (pool_scale * pooled + pool_shift) + dense_bias)
          + bn_shift;
        - under it, from cnn2_cut cnn3, from cnn1_cut cnn2 and cnn3: h += cnnK_scale * relu(conv1d(h, cnnK_weight,
          cnnK_bias), 'same') + cnnK_shift."""
        require(
            cut in UPPER_CUTS["musicnn"],
            f"musicnn: no layers above {cut!r} to fine-tune; cuts: {UPPER_CUTS['musicnn']}",
        )
        arrays: dict[str, torch.Tensor] = {}
        for i in range(3 - UPPER_CUTS["musicnn"].index(cut), 3):  # cnn3 (i = 2) from cnn2_cut; cnn2 too from cnn1_cut
            conv, bn = cast(nn.Conv1d, self.mid[i]), cast(nn.BatchNorm1d, self.mid_bn[i])
            arrays |= affine_arrays(f"cnn{i + 1}", bn, conv.weight, conv.bias)
        arrays |= affine_arrays("pool", self.pool_bn) | affine_arrays("bn", self.dense_bn)
        arrays |= {"dense_weight": self.dense.weight, "dense_bias": self.dense.bias}
        return {name: a.detach().cpu().numpy().astype(np.float32) for name, a in arrays.items()}


def affine_arrays(
    name: str, bn: nn.BatchNorm1d, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """A batch norm at inference as ``<name>_scale`` and ``<name>_shift`` (scale = gamma / sqrt(var + eps), shift =
    beta - mean x scale), with the layer under it as ``<name>_weight`` and ``<name>_bias`` where given."""
    assert bn.running_var is not None and bn.running_mean is not None
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        out = {f"{name}_scale": scale, f"{name}_shift": bn.bias - bn.running_mean * scale}
    return out | ({f"{name}_weight": weight, f"{name}_bias": bias} if weight is not None and bias is not None else {})


class VggPatches(PatchNet):
    """musicnn's VGG-like baseline: 5 x (conv 3x3, 128 channels, ReLU, batch norm, max pool), then 50 logits."""

    # pool4: the map under the last block, (time 11, mel 6, 128 channels) per patch, a cut (``upper_layers``)
    layer_dims: ClassVar[dict[str, int]] = {"pool4": 11 * 6 * 128, "pool5": 256, "taggram": N_TAGS}
    POOLING = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self) -> None:
        super().__init__()
        self.input_bn = tf_batch_norm(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else 128, 128, 3, padding=1) for i in range(5))
        self.bns = nn.ModuleList(BatchNorm2dOf1d(128) for _ in range(5))
        self.dropout = nn.Dropout(0.25)
        self.output_dropout = nn.Dropout(0.5)
        self.tags = nn.Linear(256, N_TAGS)

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` (B, 187, 96) -> pool1-5 (B, time, mel, 128) as TF lays them out, pool5 flattened (B, 256),
        logits and taggram (B, 50)."""
        b = x.shape[0]
        h = self.input_bn(x.reshape(b, 1, -1)).reshape(b, 1, *x.shape[1:])
        out: dict[str, torch.Tensor] = {}
        convs, bns = cast(list[nn.Conv2d], list(self.convs)), cast(list[BatchNorm2dOf1d], list(self.bns))
        for i, (conv, bn, (window, stride)) in enumerate(zip(convs, bns, self.POOLING)):
            h = max_of_bn_relu(conv, bn, self.dropout(h) if i else h, partial(max_pool, window=window, stride=stride))
            out[f"pool{i + 1}"] = h.permute(0, 2, 3, 1)
        flat = out["pool5"].reshape(b, -1)  # NHWC order, as TF flattens
        out["pool5_flat"] = flat
        out["logits"] = self.tags(self.output_dropout(flat))
        out["taggram"] = torch.sigmoid(out["logits"])
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray], copy: Any) -> None:
        load_batch_norm(self.input_bn, arrays, "batch_normalization", copy)
        convs, bns = cast(list[nn.Conv2d], list(self.convs)), cast(list[BatchNorm2dOf1d], list(self.bns))
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            copy(conv.weight, arrays, f"{i + 1}CNN/kernel", transform=lambda k: k.transpose(3, 2, 0, 1))
            copy(conv.bias, arrays, f"{i + 1}CNN/bias")
            load_batch_norm(bn.bn, arrays, f"batch_normalization_{i + 1}", copy)
        copy(self.tags.weight, arrays, "dense/kernel", transform=lambda k: k.T)
        copy(self.tags.bias, arrays, "dense/bias")

    def last_block(self) -> list[nn.Module]:
        return [self.convs[4], self.bns[4]]

    def upper_layers(self, cut: str) -> dict[str, np.ndarray]:
        """The last block above ``cut`` (pool4) as float32 arrays: pool5 = maxpool 4x4 of (conv5_scale * relu(conv2d(
        pool4, conv5_weight, conv5_bias), 'same') + conv5_shift)."""
        require(
            cut in UPPER_CUTS["msdvgg"], f"msdvgg: no layers above {cut!r} to fine-tune; cuts: {UPPER_CUTS['msdvgg']}"
        )
        conv, bn = cast(nn.Conv2d, self.convs[4]), cast(BatchNorm2dOf1d, self.bns[4])
        arrays = affine_arrays("conv5", bn.bn, conv.weight, conv.bias)
        return {name: a.detach().cpu().numpy().astype(np.float32) for name, a in arrays.items()}


def load_batch_norm(bn: nn.BatchNorm1d, arrays: Mapping[str, np.ndarray], name: str, copy: Any) -> None:
    for target, key in (
        (bn.weight, "gamma"),
        (bn.bias, "beta"),
        (bn.running_mean, "moving_mean"),
        (bn.running_var, "moving_variance"),
    ):
        copy(target, arrays, f"{name}/{key}")
