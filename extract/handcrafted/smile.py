"""openSMILE's functionals as feature sets: ``egemaps`` (eGeMAPS v02, 88 values, Eyben et al. 2016) and
``compare`` (ComParE 2016, 6,373 values), through the ``opensmile`` package (``pip install 'mvemo[opensmile]'``).

Computed from the 16 kHz mono copy stage one already makes, cut to the clip's real audio. The package's version
is part of the extractor version, so another release's values are never read as this one's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mvemo.extract.decode.audio import AudioWindow
from mvemo.manifests.errors import ConfigError, require


@dataclass(frozen=True)
class EgemapsConfig:
    """The eGeMAPS v02 functionals of the clip's audio at ``sample_rate_hz``."""

    sample_rate_hz: int = 16000
    audio_window: AudioWindow = field(default_factory=AudioWindow)
    feature_set: ClassVar[str] = "eGeMAPSv02"

    def __post_init__(self) -> None:
        table = type(self).__name__.removesuffix("Config").lower()
        require(
            8000 <= self.sample_rate_hz <= 48000,
            f"[{table}] sample_rate_hz={self.sample_rate_hz}: expected 8000..48000",
        )


@dataclass(frozen=True)
class CompareConfig(EgemapsConfig):
    """The ComParE 2016 functionals of the clip's audio at ``sample_rate_hz``."""

    feature_set: ClassVar[str] = "ComParE_2016"


def _opensmile() -> Any:
    try:
        import opensmile
    except ImportError:
        raise ConfigError(
            "the egemaps and compare feature sets need the opensmile package: pip install 'mvemo[opensmile]'"
            " (or compute the built-in descriptors instead: --features descriptors)"
        ) from None
    return opensmile


@functools.lru_cache(maxsize=2)
def _smile(feature_set: str) -> Any:
    opensmile = _opensmile()
    return opensmile.Smile(
        feature_set=opensmile.FeatureSet[feature_set], feature_level=opensmile.FeatureLevel.Functionals
    )


def smile_version() -> str:
    return str(_opensmile().__version__)


def smile_columns(config: EgemapsConfig) -> tuple[str, ...]:
    return tuple(_smile(config.feature_set).feature_names)


def smile_features(y: np.ndarray, config: EgemapsConfig) -> np.ndarray:
    """The functionals of mono audio ``y`` at ``config.sample_rate_hz``: float32 (n_columns,). openSMILE leaves a
    functional it cannot compute (a segment too short) NaN: it is cached as 0."""
    values = _smile(config.feature_set).process_signal(np.asarray(y, dtype=np.float32), config.sample_rate_hz)
    row = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.where(np.isfinite(row), row, 0.0).astype(np.float32)
