"""LAION-CLAP's audio encoder (Wu et al. 2023, the music checkpoint ``laion/larger_clap_music``) as an encoder used as
it is, through transformers (``pip install 'mvemo[clap]'``).

Its checkpoint is a transformers folder (``config.json``, the model's weights, ``preprocessor_config.json``): the
audio tower of ``ClapModel`` and its projection are loaded from it (``ClapAudioModelWithProjection`` reads those
weights of the same checkpoint and leaves the text tower on disk), in float32, and its own processor makes the mel
spectrograms. A clip is read in windows of the processor's ``max_length_s`` (10 s), each one whole: one after the
other, the last one ending where the clip's sound ends (so it overlaps the one before), and only a clip shorter than
one window padded as the processor's ``padding`` says. So neither of the processor's random steps applies (the random
crop of longer audio, the window it marks as "longer" when none is). Each window is embedded unfused (``is_longer``
false, as LAION-CLAP embeds audio of at most 10 s), and the clip's embedding is the mean of its windows' L2-normalised
projections (``ClapModel.get_audio_features``), 512 values for the published checkpoint. Trailing digital silence
(the cache's zero padding of a clip shorter than the analysis window) is not a window.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvemo.extract.decode.audio import AUDIO48K_HZ
from mvemo.extract.nets.base import EmotionNet, as_tensor
from mvemo.extract.sound import sound_samples
from mvemo.extract.weights.registry import CLAP_INSTALL, WeightsError, first_line
from mvemo.manifests.errors import ConfigError


def transformers_clap() -> Any:
    """transformers' CLAP module, or a ``ConfigError`` saying how to install it."""
    try:
        from transformers.models import clap
    except ImportError:
        raise ConfigError(
            f"the net clap runs on transformers, which mvemo does not install by default: {CLAP_INSTALL}"
        ) from None
    return clap


def transformers_version() -> str:
    """The version of transformers installed, whose code makes CLAP's mel spectrograms."""
    return metadata.version("transformers")


def window_starts(sound_samples: int, step: int) -> list[int]:
    """Where the windows of ``step`` samples start in a clip of ``sound_samples`` samples of sound
    (``extract.sound``): one after the other, the last one ending at its sound's end; one window from 0 where the clip
    is shorter than one."""
    if sound_samples <= step:
        return [0]
    return [*range(0, sound_samples - step, step), sound_samples - step]


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
        transformers_clap()  # before a run computes its inputs
        super().__init__(num_classes, 512, {})
        self.encoder: nn.Module | None = None
        self.processor: Any = None
        self._add_head()

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """The checkpoint folder's audio tower and projection, in float32, and its processor; refuses a folder whose
        weights would leave any of them random, or whose processor and model do not fit each other."""
        folder = Path(path)
        if not (folder / "config.json").is_file() or not (folder / "preprocessor_config.json").is_file():
            raise WeightsError(
                f"weights {folder}: clap loads {self.weights_format}; this folder lacks one of those files"
            )
        clap = transformers_clap()
        from transformers.utils import logging

        verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
        logging.set_verbosity_error()  # the unused text tower is reported key by key otherwise
        logging.disable_progress_bar()
        try:
            encoder, info = clap.ClapAudioModelWithProjection.from_pretrained(folder, output_loading_info=True)
            processor = clap.ClapFeatureExtractor.from_pretrained(folder)
        except (
            Exception
        ) as err:  # OSError, ValueError, RuntimeError (shapes), safetensors' own: whatever the file holds
            raise WeightsError(
                f"weights {folder}: transformers cannot load it as a ClapModel checkpoint ({first_line(err)})"
            ) from None
        finally:
            logging.set_verbosity(verbosity)
            if bar:
                logging.enable_progress_bar()
        missing = sorted(info["missing_keys"])
        if missing:
            raise WeightsError(
                f"weights {folder}: the checkpoint holds no weights for {missing[:3]} ({len(missing)} in all), which"
                f" would start random; clap loads {self.weights_format}"
            )
        fusion = bool(encoder.config.enable_fusion)
        if (processor.truncation == "fusion") != fusion:
            raise WeightsError(
                f"weights {folder}: its processor's truncation is {processor.truncation!r}"
                f" and its model's enable_fusion = {fusion}:"
                f" the model {'reads' if fusion else 'does not read'} the four-channel fusion mels that"
                f" truncation 'fusion' makes; give a checkpoint whose preprocessor_config.json came with its model"
            )
        if processor.sampling_rate != AUDIO48K_HZ:
            raise WeightsError(
                f"weights {folder}: its processor reads audio at {processor.sampling_rate} Hz; mvemo's clap reads the"
                f" cached set audio48k at {AUDIO48K_HZ} Hz (every LAION-CLAP checkpoint does)"
            )
        self.encoder, self.processor = encoder.float().eval(), processor
        self.embedding_dim = int(encoder.config.projection_dim)
        self._add_head()
        try:
            with torch.no_grad():
                self.embed(*self.prepare(np.zeros((1, self.window_samples), np.float32)))
        except (RuntimeError, ValueError) as err:
            raise WeightsError(
                f"weights {folder}: its processor's spectrograms do not fit its model ({first_line(err)}); give a"
                " checkpoint whose preprocessor_config.json came with its model"
            ) from None

    def computed_with(self) -> dict[str, Any]:
        """transformers' version and its processor's settings: they make the mel spectrograms CLAP embeds."""
        return {"transformers": transformers_version(), "processor": self.processor.to_dict()}

    @property
    def window_samples(self) -> int:
        return int(self.processor.nb_max_samples)

    def prepare(
        self, *arrays: np.ndarray | torch.Tensor, device: torch.device | None = None
    ) -> tuple[torch.Tensor, ...]:
        """(B, n) audio at 48 kHz to the processor's mel spectrograms of every window, (B, W, channels, frames, mels),
        and which windows hold audio, (B, W) bool."""
        self._require_loaded()
        (waveform,) = arrays
        x = as_tensor(waveform, net=self.name, kind="audio48k", ndim=2, shape="(B, n_samples) of 48 kHz audio")
        audio = x.to(torch.float32).numpy()
        step = self.window_samples
        windows: list[list[np.ndarray]] = []
        for y in audio:
            length = sound_samples(y)
            windows.append([y[start : start + min(step, length)] for start in window_starts(length, step)])
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
            done = self.processor(windows, sampling_rate=AUDIO48K_HZ, return_tensors="pt")
        finally:
            np.random.set_state(state)
        return done["input_features"].to(torch.float32)

    def embed(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim): the mean over each clip's windows of their L2-normalised projections (summed in window
        order, the same on every device)."""
        encoder = self._require_loaded()
        windows = features[mask]
        unfused = torch.zeros((windows.shape[0], 1), dtype=torch.bool, device=windows.device)
        projected = F.normalize(encoder(input_features=windows, is_longer=unfused).audio_embeds, dim=-1)
        per_window = projected.new_zeros((*mask.shape, projected.shape[1]))
        per_window[mask] = projected
        return per_window.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(projected.dtype)

    def last_block(self) -> list[nn.Module]:
        raise ConfigError("clap is an encoder used as it is: run it with --finetune none")

    def _require_loaded(self) -> nn.Module:
        if self.encoder is None:
            raise WeightsError(f"clap has no random initialisation mvemo could use: give it {self.weights_format}")
        return self.encoder
