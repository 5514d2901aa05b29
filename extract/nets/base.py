"""What every unimodal net offers the data pipeline, the training loop and the fusion heads."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.weights.io import read_weights
from mvemo.extract.weights.registry import WeightsError
from mvemo.manifests.errors import ConfigError


class EmotionNet(nn.Module):
    """A unimodal net: ``embed(*x)`` gives the penultimate features (what fusion consumes),
    ``forward(*x)`` the class logits of a linear head on them.

    Subclasses build their layers, then call ``_add_head`` last, so a seeded
    random initialisation of the body does not depend on ``num_classes``.

    Attributes
    ----------
    input_kind : str or tuple of str
        The cached feature set(s) that feed it, in ``prepare``'s argument order
        (``waveform``, ``mel``, ``lld``, ``frames112``, ``frames224``).
    embedding_dim : int
    config : dict
        JSON-serializable; the net's name, ``num_classes`` and every option
        (``get_net(**config)`` rebuilds it), for cache fingerprints.
    weights_sha256 : str
        sha256 of the weight file loaded, "" for random initialisation.
    weights_file : str
        Its file name, "" for random initialisation.
    columns : tuple of str
        Names of the embedding's columns where they have names (musicnn's tag probabilities), else empty.
    """

    name: ClassVar[str] = ""
    input_kind: str | tuple[str, ...] = ()  # a class default; an option may choose another (I3D's ``frames``)
    weights_format: ClassVar[str] = "none: this net has no public pretrained weights"
    pretrained_only: ClassVar[bool] = False  # a net that runs with its published weights only, never random or trained

    def __init__(self, num_classes: int, embedding_dim: int, options: Mapping[str, Any]) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(
                f"{self.name} num_classes={num_classes!r}: expected a positive int (the number of classes)"
            )
        self.embedding_dim = embedding_dim
        self.config: dict[str, Any] = {"net": self.name, "num_classes": num_classes, **options}
        self.weights_sha256 = ""
        self.weights_file = ""
        self.columns: tuple[str, ...] = ()

    @property
    def embedding_version(self) -> str:
        """The version of the code that computes its embeddings, raised whenever a change moves them: its cached sets
        and the saved models that read them, of another version, then fail their fingerprints."""
        return "1"

    def _add_head(self, dropout: float = 0.0) -> None:
        self.head_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(self.embedding_dim, self.config["num_classes"])

    embed: Callable[..., torch.Tensor]  # (B, embedding_dim) from the prepared inputs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) logits."""
        return self.head(self.head_dropout(self.embed(*inputs)))

    def loss(self, embedding: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss from ``embed``'s output and integer labels: cross-entropy (mean over the batch)."""
        return F.cross_entropy(self.head(self.head_dropout(embedding)), y)

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Cached batches (numpy or CPU tensors), in ``input_kind`` order, to the net's float32 inputs on ``device``
        (default: the CPU)."""
        raise NotImplementedError

    def computed_with(self) -> dict[str, Any]:
        """What else makes its embeddings besides its config and weights (another library's code that prepares its
        inputs, and that library's settings), for the cache's fingerprint: nothing, for mvemo's own nets."""
        return {}

    def last_block(self) -> list[nn.Module]:
        """The modules ``--finetune last`` trains besides the head (training the head alone would
        leave the embeddings unchanged)."""
        raise NotImplementedError

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load pretrained weights from a file in their public format (see ``weights_format``)."""
        self.load_arrays(read_weights(path), source=str(path))

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        raise WeightsError(f"weights {source}: {self.name} has no pretrained weights to load; use weights=None")

    def _copy(
        self,
        target: torch.Tensor,
        arrays: Mapping[str, np.ndarray],
        key: str,
        *,
        source: str,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Copy ``arrays[key]`` (through ``transform``) into a parameter or buffer, checking that it exists and fits."""
        if key not in arrays:
            raise WeightsError(f"weights {source}: no array {key!r}; {self.name} loads {self.weights_format}")
        value = arrays[key] if transform is None else transform(arrays[key])
        if tuple(value.shape) != tuple(target.shape):
            raise WeightsError(
                f"weights {source}: {key!r} has shape {tuple(value.shape)}, {self.name} needs {tuple(target.shape)};"
                f" {self.name} loads {self.weights_format}"
            )
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))


def as_tensor(
    array: np.ndarray | torch.Tensor,
    *,
    net: str,
    kind: str,
    ndim: int,
    shape: str,
    dtype: type | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """A cached batch as a tensor on ``device`` (no copy where possible), after checking its rank (and dtype).

    The batch moves as stored (uint8 frames, float16 mel) and is converted on the
    device, where a GPU does it faster than the loader. Raises ``ConfigError``
    naming the net, the feature set, what came and what it needs.
    """
    x = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    if x.ndim != ndim or (dtype is not None and x.dtype != torch.from_numpy(np.zeros(0, dtype)).dtype):
        want = f"{np.dtype(dtype).name} " if dtype is not None else ""
        raise ConfigError(
            f"{net}.prepare: {kind} of shape {tuple(x.shape)} and dtype {x.dtype}; expected a {want}batch {shape}"
            f" as the cache stores it (feature set {kind!r})"
        )
    return x.to(device, non_blocking=True) if device is not None else x


def frames_tensor(
    frames: np.ndarray | torch.Tensor, *, net: str, kind: str, device: torch.device | None = None
) -> torch.Tensor:
    """uint8 frames (B, T, H, W, 3) to float32 (B, 3, T, H, W) in 0..255, converted on ``device``."""
    x = as_tensor(
        frames, net=net, kind=kind, ndim=5, shape="(B, T, H, W, 3) of RGB frames", dtype=np.uint8, device=device
    )
    if x.shape[-1] != 3:
        raise ConfigError(f"{net}.prepare: {kind} of shape {tuple(x.shape)}; expected RGB frames (B, T, H, W, 3)")
    # (B, T, H, W, C) permuted is channels_last_3d already: 1.4x faster 3D convolutions on a GPU (I3D, measured)
    layout = torch.channels_last_3d if x.is_cuda else torch.contiguous_format
    return x.to(torch.float32).permute(0, 4, 1, 2, 3).contiguous(memory_format=layout)


def embed_sounds(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``embed`` of each clip of ``x`` (B, ..., T) over its first ``lengths`` (B,) steps on the last axis, its sound
    (the rest is the window's padding after a short clip), the clips of one length as one batch (``embed`` must treat
    each clip on its own, as nets without batch statistics do): a set of 6-s fragments in 30-s windows is still one
    batch."""
    sizes = lengths.tolist()
    if all(n == x.shape[-1] for n in sizes):
        return embed(x)
    rows: dict[int, torch.Tensor] = {}
    for n in sorted(set(sizes)):
        same = [i for i, size in enumerate(sizes) if size == n]
        rows.update(zip(same, embed(x[same, ..., :n])))
    return torch.stack([rows[i] for i in range(len(sizes))])


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
