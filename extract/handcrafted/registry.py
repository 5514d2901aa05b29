"""The handcrafted sets of one vector of named columns per clip: a new set is one entry of ``HANDCRAFTED``.

Stage one computes each from the clip's audio alongside the other audio sets (``extract.audio``), caches it as a
vector set, reads its options from a config file's table of its name, and stage two fuses it by its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvemo.extract.handcrafted.descriptors import DescriptorConfig, descriptors
from mvemo.extract.handcrafted.expressive import ExpressiveConfig, expressive
from mvemo.extract.handcrafted.smile import CompareConfig, EgemapsConfig, smile_columns, smile_features, smile_version


@dataclass(frozen=True)
class Handcrafted:
    """A set: its ``config`` (a frozen dataclass whose fields are its options, ``sample_rate_hz`` and ``audio_window``
    among them), its ``version`` (raised whenever a change moves its values: rows of another then fail the
    fingerprint), ``compute(y, config)``: its row from the clip's mono audio at the config's rate (only the audio the
    file has, not the window's padding), ``columns(config)``: the names of the row's columns, and ``library()``: the
    version of the library that computes it, where one does (openSMILE's), in its fingerprint too."""

    config: type
    version: str
    compute: Callable[[np.ndarray, Any], np.ndarray]
    columns: Callable[[Any], tuple[str, ...]]
    library: Callable[[], str] | None = None

    def extractor_version(self) -> str:
        return self.version if self.library is None else f"{self.version}+{self.library()}"


def own_columns(config: Any) -> tuple[str, ...]:
    """The columns a config names itself (``columns``)."""
    return tuple(config.columns)


# Versions 4 (ours) and 2 (openSMILE's): computed over the clip's sound (``extract.sound``), not digital silence at
# its end
HANDCRAFTED: dict[str, Handcrafted] = {
    "descriptors": Handcrafted(DescriptorConfig, "4", descriptors, own_columns),
    "expressive": Handcrafted(ExpressiveConfig, "4", expressive, own_columns),
    "egemaps": Handcrafted(EgemapsConfig, "2", smile_features, smile_columns, lambda: f"opensmile{smile_version()}"),
    "compare": Handcrafted(CompareConfig, "2", smile_features, smile_columns, lambda: f"opensmile{smile_version()}"),
}
