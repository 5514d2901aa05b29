"""What every unimodal net offers the data pipeline and the fusion heads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from manifests.errors import ConfigError


class EmotionNet(nn.Module):
    """A unimodal net: ``embed(x)`` gives the penultimate features (what fusion consumes),
    ``forward(x)`` the class logits of a linear head on them.

    Attributes
    ----------
    input_kind : str or tuple of str
        The cached feature set(s) that feed it (``waveform``, ``mel``, ``lld``, ``frames112``, ``frames224``).
    embedding_dim : int
    config : dict
        Every option that decides its outputs (for cache fingerprints).
    weights_sha256 : str
        sha256 of the pretrained weights loaded, "" for random initialisation.
    """

    input_kind: str | tuple[str, ...] = ()
    embedding_dim: int = 0

    def __init__(self, num_classes: int, embedding_dim: int, config: dict[str, Any]) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.config = config
        self.weights_sha256 = ""
        self.head = nn.Linear(embedding_dim, num_classes)

    embed: Callable[..., torch.Tensor]  # (B, embedding_dim) from the prepared inputs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(*inputs))

    def prepare(self, *arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Cached numpy batches, in ``input_kind`` order, to the net's float32 inputs."""
        return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)

    def load_weights(self, path: Path) -> None:
        """Load pretrained weights from their public format."""
        raise ConfigError(f"{type(self).__name__} has no pretrained weights to load from {path}")

    def last_block(self) -> list[nn.Module]:
        """The modules ``--finetune last`` trains besides the head (training the head alone would
        leave the embeddings unchanged)."""
        raise NotImplementedError
