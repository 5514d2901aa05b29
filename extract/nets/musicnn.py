"""Pons & Serra 2019's musicnn and its VGG-like baseline as emotion nets: a clip cut into 3-s patches, each through
the ported net of ``extract.nets.musicnn_patches`` (its published weights, MSD or MagnaTagATune), the chosen ``layer``
pooled over the clip's patches (``pool``: mean, max, or both concatenated; ``patches`` keeps each).

Input: the cached ``logmel`` (``extract.audio.LogMelConfig``): log10(10000 x + 1)
of a 96-band Slaney mel power spectrogram of 16 kHz audio (n_fft 512, hop 256),
shape (B, 96, T). It is cut into patches of 187 frames (3 s, one after the other;
a last partial patch is dropped, a clip shorter than one patch is zero-padded to
one), and each patch runs through the net.

A clip is embedded from its sound (``extract.sound``): the window's zero padding after a clip shorter than the window
is log-mel 0 to the last frame, and the patches pooled are the clip's whole patches of sound (``sound_patches``: its
frames of sound, 187 a patch, one at least), never a patch that reaches past its sound. Its last partial patch is
dropped, as a window's is; a clip shorter than one patch is its one patch, zero-padded. Those patches alone run
through the net, so a clip's embedding does not depend on the window's length, and its cost follows its sound.
``pool = "patches"`` keeps every patch of the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor, require
from mvemo.extract.nets.musicnn_patches import (
    MSD_TAGS,
    MTT_TAGS,
    N_MELS,
    PATCH_FRAMES,
    UPPER_CUTS,
    MusicnnPatches,
    PatchNet,
    VggPatches,
)
from mvemo.extract.sound import of_sound, sound_frames

# Patches through the net at a time. At inference on a CPU two, so that each block's maps stay in the cache (one
# patch's largest maps take 9-25 MB): a 30-s clip's ten patches at once took musicnn 661 ms, two at a time 444 ms.
PATCH_CHUNK = 32
PATCH_CHUNK_CPU = 2
POOLS = ("mean", "max", "meanmax", "patches")  # patches: every patch's layer kept, patch after patch


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
