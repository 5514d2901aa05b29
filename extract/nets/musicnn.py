"""Pons & Serra 2019's musicnn and its VGG-like baseline, both pretrained on the Million Song Dataset (50 tags).

A port of the musicnn 0.1.0 package's ``models.py`` (TensorFlow 1) to PyTorch,
loading the checkpoints as plain arrays (``musicnn_msd_musicnn.npz``,
``musicnn_msd_vgg.npz``) and matching the package's intermediates to 1e-4
(``tests/extract/test_nets_musicnn.py``). Batch norms are TF1's (eps 1e-3) and
follow each ReLU, as in the original.

Input: the cached ``logmel`` (``extract.audio.LogMelConfig``): log10(10000 x + 1)
of a 96-band Slaney mel power spectrogram of 16 kHz audio (n_fft 512, hop 256),
shape (B, 96, T). It is cut into patches of 187 frames (3 s, one after the other;
a last partial patch is dropped, a clip shorter than one patch is zero-padded to
one), each patch runs through the net, and the clip's embedding pools the
chosen ``layer`` over its patches (``pool``: mean, max, or both concatenated).

A clip is embedded from its sound (``extract.sound``): the window's zero padding after a clip shorter than the window
is log-mel 0 to the last frame, and the patches pooled are the clip's whole patches of sound (``sound_patches``: its
frames of sound, 187 a patch, one at least), never a patch that reaches past its sound. Its last partial patch is
dropped, as a window's is; a clip shorter than one patch is its one patch, zero-padded. Those patches alone run
through the net, so a clip's embedding does not depend on the window's length, and its cost follows its sound.
``pool = "patches"`` keeps every patch of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial, reduce
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor, require
from mvemo.extract.sound import of_sound, sound_frames

N_MELS = 96
PATCH_FRAMES = 187
# Patches through the net at a time. At inference on a CPU two, so that each block's maps stay in the cache (one
# patch's largest maps take 9-25 MB): a 30-s clip's ten patches at once took musicnn 661 ms, two at a time 444 ms.
PATCH_CHUNK = 32
PATCH_CHUNK_CPU = 2
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
POOLS = ("mean", "max", "meanmax", "patches")  # patches: every patch's layer kept, patch after patch
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
        the scale and shift it applies (``fuse.heads.upper.upper_net`` runs them):

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


class MusicnnBase(EmotionNet):
    """A patch net's chosen layer pooled over every patch of the clip."""

    input_kind = "logmel"
    patches_class: ClassVar[type[PatchNet]]
    tags: ClassVar[tuple[str, ...]] = MSD_TAGS  # what the data set the weights learned names its outputs
    # the key of the layer in ``PatchNet.layers``, where it differs from the option's name
    layer_keys: ClassVar[dict[str, str]] = {}

    def __init__(self, num_classes: int, *, layer: str, pool: str, patches: int) -> None:
        dims = self.patches_class.layer_dims
        require(layer in dims, f"{self.name} layer={layer!r}: expected one of {list(dims)}")
        require(
            pool in POOLS, f"{self.name} pool={pool!r}: expected one of {list(POOLS)} (over the clip's 3-s patches)"
        )
        require(
            isinstance(patches, int) and not isinstance(patches, bool) and patches >= 1,
            f"{self.name} patches={patches!r}: expected the number of 3-s patches of the window (10 for 30 s)",
        )
        require(
            pool == "patches" or layer == "pooled" or layer not in UPPER_CUTS.get(self.name, ()),
            f'{self.name} layer={layer!r} is a cut under layers that stage two fine-tunes: it needs pool = "patches"',
        )
        config = {"layer": layer, "pool": pool} | ({"patches": patches} if pool == "patches" else {})
        super().__init__(num_classes, dims[layer] * {"meanmax": 2, "patches": patches}.get(pool, 1), config)
        self.patches = self.patches_class()
        self._add_head()
        if layer == "taggram":  # the tag probabilities by name: the report lists each clip's top tags
            self.columns = tuple(f"{tag} ({p})" for p in ("mean", "max") if pool in (p, "meanmax") for tag in self.tags)

    @property
    def embedding_version(self) -> str:
        """3: pooled over the clip's whole patches of sound (2 rounded its sound to the nearest patch, so a patch
        half of padding could count); ``pool = "patches"``, which keeps every patch of the window as before, 1."""
        return "1" if self.config["pool"] == "patches" else "3"

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """log-mel (B, 96, T) -> float32."""
        (logmel,) = arrays
        x = as_tensor(logmel, net=self.name, kind="logmel", ndim=3, shape=f"(B, {N_MELS}, T) of log-mel", device=device)
        require(
            x.shape[1] == N_MELS, f"{self.name}.prepare: logmel of shape {tuple(x.shape)}; expected (B, {N_MELS}, T)"
        )
        return (x.to(torch.float32),)

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        """``logmel`` (B, 96, T) -> (B, embedding_dim): the layer of each 187-frame patch of the clip's sound, pooled
        over those patches."""
        b, _, t = logmel.shape
        n = max(1, t // PATCH_FRAMES)
        x = F.pad(logmel, (0, max(0, PATCH_FRAMES - t)))[:, :, : n * PATCH_FRAMES]
        patches = x.reshape(b, N_MELS, n, PATCH_FRAMES).permute(0, 2, 3, 1).reshape(b * n, PATCH_FRAMES, N_MELS)
        pool = self.config["pool"]
        counts = torch.full((b,), n, device=x.device) if pool == "patches" else sound_patches(logmel).clamp(max=n)
        patch_of_sound = of_sound(counts, n)  # (B, n)
        values = self._layer(patches[patch_of_sound.reshape(-1)])
        if pool == "patches":
            require(
                n == self.config["patches"],
                f"{self.name}: a window of {t} log-mel frames holds {n} patches of 3 s, the variant keeps"
                f" {self.config['patches']}; set patches = {n} in its [net.{self.name}.<variant>] table",
            )
            return values.reshape(b, -1)
        pooled = []
        if pool != "max":
            sums = (
                values.new_zeros(b * n, values.shape[1])
                .index_put((patch_of_sound.reshape(-1),), values)
                .reshape(b, n, -1)
                .sum(dim=1)
            )
            pooled.append(sums / counts[:, None].to(values.dtype))
        if pool != "mean":
            lowest = values.new_full((b * n, values.shape[1]), -torch.inf)
            lowest = lowest.index_put((patch_of_sound.reshape(-1),), values)
            pooled.append(lowest.reshape(b, n, -1).amax(dim=1))
        return torch.cat(pooled, dim=1)

    def _layer(self, patches: torch.Tensor) -> torch.Tensor:
        """The chosen layer of each patch (P, 187, 96) -> (P, dim), a few patches at a time on a CPU."""
        key = self.layer_keys.get(self.config["layer"], self.config["layer"])
        # training keeps its batches whole: a batch norm's statistics over two patches (or one) would differ by device
        chunk = PATCH_CHUNK_CPU if patches.device.type == "cpu" and not self.training else PATCH_CHUNK
        chunks = [self.patches.layers(patches[i : i + chunk])[key] for i in range(0, len(patches), chunk)]
        return torch.cat(chunks).reshape(len(patches), -1)

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        self.patches.load_arrays(
            arrays,
            lambda target, a, key, transform=None: self._copy(target, a, key, source=source, transform=transform),
        )

    def last_block(self) -> list[nn.Module]:
        return self.patches.last_block()


class Musicnn(MusicnnBase):
    name = "musicnn"
    patches_class = MusicnnPatches
    weights_format = "musicnn_msd_musicnn.npz (the musicnn 0.1.0 MSD_musicnn checkpoint's variables by TF name)"

    def __init__(self, num_classes: int, *, layer: str = "penultimate", pool: str = "mean", patches: int = 10) -> None:
        super().__init__(num_classes, layer=layer, pool=pool, patches=patches)


class MsdVgg(MusicnnBase):
    name = "msdvgg"
    patches_class = VggPatches
    layer_keys: ClassVar[dict[str, str]] = {"pool5": "pool5_flat"}
    weights_format = "musicnn_msd_vgg.npz (the musicnn 0.1.0 MSD_vgg checkpoint's variables by TF name)"

    def __init__(self, num_classes: int, *, layer: str = "pool5", pool: str = "meanmax", patches: int = 10) -> None:
        super().__init__(num_classes, layer=layer, pool=pool, patches=patches)


class MttMusicnn(Musicnn):
    """musicnn as trained on MagnaTagATune (the musicnn 0.1.0 wheel's ``MTT_musicnn``): the same net, other ears."""

    name = "mttmusicnn"
    tags = MTT_TAGS
    weights_format = "musicnn_mtt_musicnn.npz (the musicnn 0.1.0 MTT_musicnn checkpoint's variables by TF name)"


class MttVgg(MsdVgg):
    """musicnn's VGG baseline as trained on MagnaTagATune (the wheel's ``MTT_vgg``)."""

    name = "mttvgg"
    tags = MTT_TAGS
    weights_format = "musicnn_mtt_vgg.npz (the musicnn 0.1.0 MTT_vgg checkpoint's variables by TF name)"


def sound_patches(logmel: torch.Tensor) -> torch.Tensor:
    """How many whole patches of sound each clip's log-mel (B, 96, T) holds, one at least: (B,) int64. Its frames of
    sound (``extract.sound.sound_frames``: up to its last frame above 0, the log-mel of the window's padding), 187 a
    patch, the last partial one dropped."""
    return torch.clamp(sound_frames(logmel) // PATCH_FRAMES, min=1)


def upper_layers(net: EmotionNet) -> dict[str, np.ndarray]:
    """The published layers above the cut a built music encoder's ``layer`` names, as arrays (``UPPER_CUTS``)."""
    cut = net.config.get("layer")
    cuts = "; ".join(f"{name}: {', '.join(layers)}" for name, layers in UPPER_CUTS.items())
    require(
        isinstance(net, MusicnnBase) and cut in UPPER_CUTS.get(net.name, ()),
        f"{net.name} layer={cut!r}: stage two fine-tunes the layers above these cuts only ({cuts})",
    )
    return cast(MusicnnPatches | VggPatches, cast(MusicnnBase, net).patches).upper_layers(str(cut))
