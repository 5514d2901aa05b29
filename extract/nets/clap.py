"""LAION-CLAP's audio encoder (Wu et al. 2023, the music checkpoint ``laion/larger_clap_music``) as an encoder used as it
is, through transformers (``pip install 'mvemo[clap]'``).

Its checkpoint is a transformers folder (``config.json``, the model's weights, ``preprocessor_config.json``): the
audio tower of ``ClapModel`` and its projection are loaded from it (``ClapAudioModelWithProjection`` reads those
weights of the same checkpoint and leaves the text tower on disk), and its own processor makes the mel spectrograms.
A clip is read in consecutive windows of the processor's ``max_length_s`` (10 s): each window is exactly what the
processor takes whole (the last one padded as its ``padding`` says), so neither of its random steps applies (the random
crop of longer audio, and the window it marks as "longer" when none is); each window is embedded as one unfused
window (``is_longer`` false, as LAION-CLAP embeds audio of at most 10 s), and the clip's embedding is the mean of its
windows' L2-normalised projections (``ClapModel.get_audio_features``), 512 values for the published checkpoint.
Trailing digital silence (the cache's zero padding of a clip shorter than the window) is not a window.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.nets.base import EmotionNet, as_tensor
from mvemo.extract.weights.registry import WeightsError
from mvemo.manifests.errors import ConfigError

SAMPLE_RATE_HZ = 48000  # the rate of the cached set ``audio48k`` that CLAP reads
INSTALL_HINT = "pip install 'mvemo[clap]'"


def transformers_clap() -> Any:
    """transformers' CLAP module, or a ``ConfigError`` saying how to install it."""
    try:
        from transformers.models import clap
    except ImportError:
        raise ConfigError(f"the net clap runs on transformers, which mvemo does not install by default: {INSTALL_HINT}") from None
    return clap


class Clap(EmotionNet):
    """CLAP's audio encoder on 48 kHz audio (B, n_samples); ``embed`` gives the mean of the windows' projections."""

    name = "clap"
    input_kind = "audio48k"
    weights_format = (
        "a folder holding a transformers ClapModel checkpoint (config.json, model.safetensors or pytorch_model.bin,"
        " preprocessor_config.json), e.g. laion/larger_clap_music as `mvemo weights fetch larger_clap_music` stores it"
    )
    pretrained_only: ClassVar[bool] = True

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, 512, {})
        self.encoder: nn.Module | None = None
        self.processor: Any = None
        self._add_head()

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """The checkpoint folder's audio tower, projection and processor; refuses a folder whose weights leave any of
        them to a random initialisation."""
        folder = Path(path)
        if not (folder / "config.json").is_file() or not (folder / "preprocessor_config.json").is_file():
            raise WeightsError(f"weights {folder}: clap loads {self.weights_format}; this folder lacks one of those files")
        clap = transformers_clap()
        from transformers.utils import logging

        verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
        logging.set_verbosity_error()  # the unused text tower is reported key by key otherwise
        logging.disable_progress_bar()
        try:
            encoder, info = clap.ClapAudioModelWithProjection.from_pretrained(folder, output_loading_info=True)
            processor = clap.ClapFeatureExtractor.from_pretrained(folder)
        except (OSError, ValueError) as err:
            raise WeightsError(f"weights {folder}: transformers cannot load it as a ClapModel checkpoint ({err})") from None
        finally:
            logging.set_verbosity(verbosity)
            if bar:
                logging.enable_progress_bar()
        missing = sorted(info["missing_keys"]) + sorted(key for key, *_ in info["mismatched_keys"])
        if missing:
            raise WeightsError(
                f"weights {folder}: the checkpoint holds no fitting weights for {missing[:3]} ({len(missing)} in all),"
                f" which would start random; clap loads {self.weights_format}"
            )
        if processor.sampling_rate != SAMPLE_RATE_HZ:
            raise WeightsError(
                f"weights {folder}: its processor reads audio at {processor.sampling_rate} Hz; mvemo's clap reads the"
                f" cached set audio48k at {SAMPLE_RATE_HZ} Hz (every LAION-CLAP checkpoint does)"
            )
        self.encoder, self.processor = encoder.eval(), processor
        self.embedding_dim = int(encoder.config.projection_dim)
        self._add_head()

    def load_arrays(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        raise WeightsError(f"weights {source}: clap loads {self.weights_format}, not an array file")

    @property
    def window_samples(self) -> int:
        return int(self.processor.nb_max_samples)

    def prepare(self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """(B, n) audio at 48 kHz to the processor's mel spectrograms of every window, (B, W, channels, frames, mels),
        and which windows hold audio, (B, W) bool."""
        self._require_loaded()
        (waveform,) = arrays
        x = as_tensor(waveform, net=self.name, kind="audio48k", ndim=2, shape="(B, n_samples) of 48 kHz audio")
        audio = x.to(torch.float32).numpy()
        step = self.window_samples
        windows: list[list[np.ndarray]] = []
        for y in audio:
            heard = int(np.flatnonzero(y)[-1]) + 1 if y.any() else 0
            windows.append([y[start : min(start + step, heard)] for start in range(0, heard, step)] or [y[:step]])
        mels = self._mels([w for clip in windows for w in clip])
        n = max(map(len, windows))
        features = torch.zeros((len(windows), n, *mels.shape[1:]), dtype=torch.float32)
        mask = torch.zeros((len(windows), n), dtype=torch.bool)
        at = 0
        for i, clip in enumerate(windows):
            features[i, : len(clip)], mask[i, : len(clip)] = mels[at : at + len(clip)], True
            at += len(clip)
        return features.to(device), mask.to(device)

    def _mels(self, windows: list[np.ndarray]) -> torch.Tensor:
        """The processor's input features of windows of at most ``window_samples``, (N, channels, frames, mels). Its
        one random draw (which window it marks "longer" when none is, unused here) leaves numpy's global state as
        it found it."""
        state = np.random.get_state()
        try:
            done = self.processor(windows, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt")
        finally:
            np.random.set_state(state)
        return done["input_features"].to(torch.float32)

    def embed(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim): the mean over each clip's windows of their L2-normalised projections."""
        encoder = self._require_loaded()
        windows = features[mask]
        unfused = torch.zeros((windows.shape[0], 1), dtype=torch.bool, device=windows.device)
        projected = F.normalize(encoder(input_features=windows, is_longer=unfused).audio_embeds, dim=-1)
        per_clip = torch.zeros((mask.shape[0], projected.shape[1]), dtype=projected.dtype, device=projected.device)
        per_clip.index_add_(0, torch.nonzero(mask)[:, 0], projected)
        return per_clip / mask.sum(dim=1, keepdim=True).to(projected.dtype)

    def last_block(self) -> list[nn.Module]:
        raise ConfigError("clap is an encoder used as it is: run it with --finetune none")

    def _require_loaded(self) -> nn.Module:
        if self.encoder is None:
            raise WeightsError(f"clap has no random initialisation mvemo could use: give it {self.weights_format}")
        return self.encoder
