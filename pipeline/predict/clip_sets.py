"""The feature sets of one clip that a saved fusion model reads, computed by stage one's own per-clip code with the
configs the model recorded, and the check that this version computes them with the recorded fingerprints.

This is the half of ``predict``'s inputs that librosa, scipy and numba compute, and it imports no torch: a one-command
``predict`` runs it in a process of its own (``pipeline.predict.ahead``) while its own process imports torch and loads
the nets (``pipeline.predict.inputs``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mvemo.cache.layout import ABSENT, IMPORTED, POOLED_KEY, VIDEO_FEATURES, modality
from mvemo.extract.features import FeatureConfigs, compute_clip
from mvemo.fuse.saved.model import SavedFusionModel
from mvemo.manifests.errors import ConfigError, MediaError
from mvemo.manifests.schema import Clip


def check_feature_sets(saved: SavedFusionModel, name: str, weights_dir: str | None = None) -> None:
    """Raise ``ConfigError`` unless this version computes every feature set model ``name`` reads, a net's input sets
    included (one pooled over windows: its window set), with the fingerprint the model recorded."""
    configs, fingerprints = model_configs(saved, name)
    check_fingerprints(fingerprints_of(configs, weights_dir=weights_dir), fingerprints, configs)


def model_configs(saved: SavedFusionModel, name: str) -> tuple[dict[str, dict], dict[str, str]]:
    """The config and fingerprint of every cached feature set a saved model reads, a net's inputs included (a set
    pooled over windows: those of its window set)."""
    configs: dict[str, dict] = {}
    fingerprints: dict[str, str] = {}
    for set_name, described in saved.feature_sets(name).items():
        config = dict(described["config"])
        if IMPORTED in config:  # given, not computed
            continue
        pooled = config.pop(POOLED_KEY, None)
        if set_name.startswith("emb/"):  # a net's embedding: the cached sets it was computed from
            configs |= described["input_configs"]
            fingerprints |= config["inputs"]
        else:
            configs[set_name] = config
            fingerprints[set_name] = described["fingerprint"] if pooled is None else pooled["of"]
    return configs, fingerprints


def net_input_sets(saved: SavedFusionModel, name: str) -> set[str]:
    """The feature sets that the nets of model ``name`` read (``model_configs`` names them among the others)."""
    return {
        input_set
        for set_name, described in saved.feature_sets(name).items()
        if set_name.startswith("emb/") and IMPORTED not in described["config"]
        for input_set in described["input_configs"]
    }


# Why a clip lacks a modality the model reads, and the fix: a file named alone always gives its sound
WITHOUT = {
    "audio": "the model reads audio and the manifest names no audio file for the clip (its 'audio' column is empty or"
    " absent); put a file with sound there (a video's own path, as `mvemo manifest scan` writes it), or choose a"
    " --model that does not read audio",
    "video": "the model reads video and the clip has no video file (an audio file, or a manifest's empty or absent"
    " 'video' column); give the clip a video, or choose a --model that does not read video",
}


class ClipFeatures:
    """The feature sets of one clip, computed by stage one's own per-clip code, each once per (name, fingerprint);
    the faces sets' weight files are looked for in ``weights_dir`` first."""

    def __init__(self, clip: Clip, weights_dir: str | None = None) -> None:
        self.clip, self.weights_dir = clip, weights_dir
        self.computed: dict[tuple[str, str], np.ndarray] = {}

    def get(self, configs: dict[str, dict], fingerprints: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """The sets named in ``configs``, computed with those saved configs, whose ``fingerprints`` must match this
        version's (None: the caller checked them, e.g. before moving the configs to a window)."""
        fingerprints = fingerprints or fingerprints_of(configs, weights_dir=self.weights_dir)
        missing = {name: config for name, config in configs.items() if (name, fingerprints[name]) not in self.computed}
        if missing:
            # one frame sampling gives every video set: compute them all, so a second net's set needs no decode
            names = (*missing, *(v for v in VIDEO_FEATURES if v not in missing and set(missing) & set(VIDEO_FEATURES)))
            computed_as = fingerprints_of(missing, names, self.weights_dir)
            check_fingerprints(computed_as, fingerprints, missing)
            for name, value in compute_clip(
                self.clip, names, FeatureConfigs.from_records(missing, self.weights_dir)
            ).items():
                if value is ABSENT:
                    raise MediaError(f"clip {self.clip.clip_id!r}: {WITHOUT[modality(name)]}")
                if isinstance(value, str):
                    raise MediaError(value)
                self.computed[(name, computed_as[name])] = value
        return {name: self.computed[(name, fingerprints[name])] for name in configs}


def fingerprints_of(
    configs: dict[str, dict], names: Iterable[str] | None = None, weights_dir: str | None = None
) -> dict[str, str]:
    """The fingerprints this version gives the feature sets ``names`` (default: those of ``configs``) computed with
    ``configs`` (saved records, by set name)."""
    specs = FeatureConfigs.from_records(configs, weights_dir).specs(configs if names is None else names)
    return {spec.name: spec.fingerprint for spec in specs}


def check_fingerprints(computed: dict[str, str], saved: dict[str, str], names: Iterable[str]) -> None:
    """Raise ``ConfigError`` where a set's saved fingerprint is not the one this version computes."""
    for name in names:
        if computed[name] != saved[name]:
            raise ConfigError(
                f"the saved model's {name} config has fingerprint {saved[name][:12]}, this version computes"
                f" {computed[name][:12]}; retrain it with `mvemo fuse` on a cache from this version"
            )


def at_window(configs: dict[str, dict], start_s: float, weights_dir: str | None = None) -> dict[str, dict]:
    """The saved configs (records, by set name) moved to the window from ``start_s``, as stage one moves them
    (``FeatureConfigs.at``): audio and frames on the same seconds."""
    moved = FeatureConfigs.from_records(configs, weights_dir).at(start_s)
    return {spec.name: dict(spec.config) for spec in moved.specs(configs)}
