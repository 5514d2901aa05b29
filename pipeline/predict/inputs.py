"""The inputs a saved fusion model reads, computed from a file with the configs it was trained on.

Shared by ``predict`` and ``predict --timeline``. A model trained on one window per clip reads
that window; a model trained on vectors pooled over windows (``[clip] windows = true``) reads
the whole file in windows of its length and hop and pools them as stage one did. A window's
audio and frames come from the same seconds (``extract.windows.plan``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.fingerprint import fingerprint_record, record_diff
from mvemo.cache.layout import ABSENT, IMPORTED, POOLED_KEY, VIDEO_FEATURES, FeatureSpec, modality
from mvemo.extract.clip_embedding import TRAINED_WITH, embed_clip, rebuild_net, recorded_spec
from mvemo.extract.features import FeatureConfigs, compute_clip
from mvemo.extract.nets import net_options, pretrained_file
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.weights.registry import ENV_VAR, KNOWN, WeightsError, find_weights, require_weights, search_dirs
from mvemo.extract.windows.plan import Window, media_length_s, plan_windows, pool
from mvemo.fuse.inputs import summarize_lld
from mvemo.fuse.models import LLDSTATS
from mvemo.fuse.saved.model import MODEL_JSON, SavedFusionModel
from mvemo.manifests.errors import ConfigError, MediaError
from mvemo.manifests.schema import Clip


def model_inputs(
    saved: SavedFusionModel, name: str, clip: Clip, weights_dir: str | None = None, given: Mapping[str, Any] = {}
) -> dict[str, np.ndarray]:
    """Every input the model reads, computed from the clip's media with the saved configs (fingerprints checked);
    each feature set once, however many nets read it; over the whole file and pooled where the model was trained
    on pooled windows. Pretrained weights are looked for as ``extract`` does (``weights_dir``, ``$MVEMO_WEIGHTS``,
    ``~/.cache/mvemo/weights``). An imported set's row is ``given`` (``GivenFeatures.of``: the row, or why there is
    none, raised as the clip's failure)."""
    for row in given.values():
        if isinstance(row, str):
            raise MediaError(row)
    configs, fingerprints = model_configs(saved, name)
    pooled = saved.pooling(name)
    if pooled is None:
        arrays = ClipFeatures(clip, weights_dir).get(configs, fingerprints)  # one decode for every set the model reads
        return inputs_from_sets(saved, name, arrays, weights_dir) | given_inputs(saved, name, given)
    check_fingerprints(fingerprints_of(configs, weights_dir=weights_dir), fingerprints, configs)
    duration_s, problem = media_length_s(clip, {modality(set_name) for set_name in configs})
    if duration_s is None:
        raise MediaError(f"{problem}; check it with `mvemo manifest check`")
    windows = plan_windows(duration_s, pooled["length_s"], pooled["hop_s"])
    per_window = window_inputs(saved, name, clip, windows, weights_dir)
    return pool_inputs(per_window, pooled["pooling"]) | given_inputs(saved, name, given)


def check_computable(saved: SavedFusionModel, chosen: str, weights_dir: str | None = None) -> None:
    """Refuse, before any clip is read, a saved model that reads what this version cannot compute: a net or feature
    set it does not know, a config it cannot read, or one it would compute with another fingerprint. The faces
    sets' weight files (looked for in ``weights_dir`` first) are required for the ``chosen`` model only: another
    model that reads them fails when it is used. A set imported with ``mvemo cache import`` is not computed: its rows
    for new clips are given (``pipeline.predict.given``).

    Raises
    ------
    ConfigError
        Naming ``model.json``, the model and the problem.
    WeightsError
        The ``chosen`` model reads a set whose weight file is missing or corrupt.
    """
    where = saved.folder / MODEL_JSON
    for name in saved.models:
        try:
            check_recorded_sets(saved, name, weights_dir)
        except WeightsError:
            if name == chosen:
                raise
        except ConfigError as err:
            raise ConfigError(f"{where}: models[{name!r}]: {err}") from None
        except (TypeError, KeyError, ValueError) as err:  # a config edited out of shape
            raise ConfigError(
                f"{where}: models[{name!r}]: a feature set's config cannot be read ({type(err).__name__}: {err})"
            ) from None


def weight_files(saved: SavedFusionModel, name: str) -> dict[str, str]:
    """The published weight files the nets of model ``name`` read, each with the sha256 the model recorded (a
    fine-tuned net's checkpoint holds all its weights, and a net from random weights reads none); the faces sets'
    detector and expression files are required by ``check_computable``)."""
    return {
        file: described["weights_sha256"]
        for set_name, described in saved.feature_sets(name).items()
        if set_name.startswith("emb/") and described.get("weights_sha256") and "checkpoint" not in described
        if (file := pretrained_file(set_name.split("/")[1]))
    }


def require_weight_files(saved: SavedFusionModel, name: str, weights_dir: str | None = None) -> None:
    """Raise ``WeightsError`` naming every weight file model ``name`` reads that is not found, before any clip is read:
    one message, not one a run.

    Raises
    ------
    WeightsError
        A file missing (one: where it was looked for and where it comes from; more: each named) or corrupt.
    """
    missing = [file for file in weight_files(saved, name) if find_weights(file, weights_dir) is None]
    if len(missing) > 1:
        looked = search_dirs(weights_dir, hub=any(KNOWN[file].torch_hub for file in missing))
        fetch = "; ".join(f"`mvemo weights fetch {file}`" for file in missing)
        raise WeightsError(
            f"model {name!r} reads {len(missing)} weight files not found in {', '.join(map(str, looked))}:"
            f" {', '.join(missing)}; get them with {fetch} (`mvemo weights list` says where each comes from), or point"
            f" --weights-dir (or ${ENV_VAR}) at the folder that holds them; {TRAINED_WITH}"
        )
    if missing:
        require_weights(missing[0], weights_dir, hint=TRAINED_WITH)


def check_recorded_sets(saved: SavedFusionModel, name: str, weights_dir: str | None = None) -> None:
    """Raise ``ConfigError`` unless this version computes every set model ``name`` reads with the fingerprint the model
    recorded: each embedding set (``recorded_spec``) and the sets its net read, each feature set (one pooled over
    windows: its window set's); a net it does not know, or whose record lacks what rebuilding it needs, is refused."""
    for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items()):
        if set_name.startswith("emb/"):
            net_options(input_name)  # an unknown net raises
            _check_net_record(set_name, described)
    configs, fingerprints = model_configs(saved, name)
    check_fingerprints(fingerprints_of(configs, weights_dir=weights_dir), fingerprints, configs)
    for set_name, described in saved.feature_sets(name).items():
        if set_name.startswith("emb/"):
            require_recorded(set_name, described, recorded_spec(set_name, described, len(saved.classes), weights_dir))


def require_recorded(set_name: str, described: dict[str, Any], now: FeatureSpec) -> None:
    """Raise ``ConfigError`` in one line unless ``now``, this version's spec of a set a saved model read, is the one the
    model recorded (``described``): the same fingerprint, and a record that differs in nothing (of a model saved
    before the extractor's version and the rows' layout were recorded, its config, extractor and weights alone)."""
    recorded = recorded_record(described)
    differs = [key for key in record_diff(recorded, now.record) if key.split(".")[0] in recorded]
    if not differs and now.fingerprint == described["fingerprint"]:
        return
    if differs:
        what = "; ".join(f"{key} {_at(recorded, key)} then, {_at(now.record, key)} now" for key in differs)
    elif "layout" in recorded:
        what = "its recorded fingerprint is not that of its record: the model's file was edited"
    else:
        what = "its config, extractor and weights as recorded, so another version of its extractor's code computed it"
    raise ConfigError(
        f"{set_name}: the model was trained on rows this version computes otherwise ({what}); retrain it with"
        " `mvemo fuse` on a cache from this version, or predict with the mvemo that saved it"
    )


def recorded_record(described: dict[str, Any]) -> dict[str, Any]:
    """What a saved model recorded of a set's fingerprint record (``cache.layout.FeatureSpec.record``): all of it
    where it holds the extractor's version and the rows' layout, else its extractor, config and weights."""
    if "extractor_version" in described and "layout" in described:
        record = fingerprint_record(
            extractor=described["extractor"],
            extractor_version=described["extractor_version"],
            config=described["config"],
            weights_sha256=described["weights_sha256"],
        )
        return record | {"layout": described["layout"]}
    return {key: described[key] for key in ("extractor", "config", "weights_sha256")}


def _at(record: dict[str, Any], dotted: str) -> str:
    value: Any = record
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    text = "absent" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _check_net_record(set_name: str, described: dict[str, Any]) -> None:
    """A net's feature set in a saved model names what rebuilding the net and its inputs needs: the seed of its
    random init, its input sets' fingerprints and their configs."""
    config, input_configs = described["config"], described["input_configs"]
    fingerprints = config.get("inputs")
    if not isinstance(fingerprints, dict) or not fingerprints or set(input_configs) != set(fingerprints):
        raise ConfigError(
            f"{set_name}: its config's inputs {fingerprints!r} are not the fingerprints of its input_configs"
        )
    if not isinstance(config.get("seed"), int):
        raise ConfigError(f"{set_name}: its config's seed {config.get('seed')!r} is not an integer")


def window_inputs(
    saved: SavedFusionModel, name: str, clip: Clip, windows: list[Window], weights_dir: str | None = None
) -> list[dict[str, np.ndarray]]:
    """The model's inputs of each window of the clip (its saved configs moved to the window, their fingerprints
    checked by the caller); each window decoded, embedded and dropped, so memory stays one window's."""
    configs, _ = model_configs(saved, name)
    per_window = []
    for window in windows:
        arrays = ClipFeatures(clip, weights_dir).get(at_window(configs, window.start_s, weights_dir))
        per_window.append(inputs_from_sets(saved, name, arrays, weights_dir))
    return per_window


def pool_inputs(per_window: list[dict[str, np.ndarray]], pooling: str) -> dict[str, np.ndarray]:
    """One row per input from the windows' rows, pooled as stage one pools (``extract.windows.plan.pool``)."""
    return {key: pool(np.concatenate([inputs[key] for inputs in per_window]), pooling)[None] for key in per_window[0]}


def window_length(configs: dict[str, dict]) -> float:
    """The window the model was trained on, in seconds: its audio window, else its frames' window, else 30 s."""
    for config in configs.values():
        if "audio_window" in config:
            return float(config["audio_window"]["duration_s"])
    durations = [c["window_duration_s"] for c in configs.values() if c.get("window_duration_s")]
    return float(durations[0]) if durations else 30.0


def at_window(configs: dict[str, dict], start_s: float, weights_dir: str | None = None) -> dict[str, dict]:
    """The saved configs (records, by set name) moved to the window from ``start_s``, as stage one moves them
    (``FeatureConfigs.at``): audio and frames on the same seconds."""
    moved = FeatureConfigs.from_records(configs, weights_dir).at(start_s)
    return {spec.name: dict(spec.config) for spec in moved.specs(configs)}


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


def inputs_from_sets(
    saved: SavedFusionModel, name: str, arrays: dict[str, np.ndarray], weights_dir: str | None = None
) -> dict[str, np.ndarray]:
    """The model's computed inputs (one row each) from one clip's feature sets: vector sets as they are, LLD
    statistics, and each net's embedding of its input sets."""
    inputs: dict[str, np.ndarray] = {}
    for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items()):
        if IMPORTED in described["config"]:
            continue
        if not set_name.startswith("emb/"):
            value = arrays[set_name]
            inputs[input_name] = (
                summarize_lld(value[None], np.array([len(value)])) if input_name == LLDSTATS else value[None]
            )
        else:
            described_json = json.dumps(described, sort_keys=True)
            net = _saved_net(input_name, len(saved.classes), described_json, saved.folder, weights_dir)
            inputs[input_name] = embed_clip(net, arrays)
    return inputs


def given_inputs(saved: SavedFusionModel, name: str, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model's imported inputs, one row each, from the rows ``given`` for the clip (by set name)."""
    return {
        input_name: np.asarray(given[set_name], dtype=np.float32)[None]
        for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items())
        if IMPORTED in described["config"]
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
                    raise MediaError(
                        f"clip {self.clip.clip_id!r}: the model reads {modality(name)} and the clip has none;"
                        f" give the clip a file with {modality(name)}, or choose a --model that does not read it"
                    )
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


@functools.lru_cache(maxsize=8)
def _saved_net(
    net_name: str, num_classes: int, described_json: str, folder: Path, weights_dir: str | None
) -> EmotionNet:
    """The saved net rebuilt once per process (``described_json``: its feature set in the model's document)."""
    return rebuild_net(net_name, num_classes, json.loads(described_json), folder, weights_dir)
