"""The inputs a saved fusion model reads, computed from a file with the configs it was trained on.

Shared by ``predict`` and ``predict --timeline``. A model trained on one window per clip reads
that window; a model trained on vectors pooled over windows (``[clip] windows = true``) reads
the whole file in windows of its length and hop and pools them as stage one did. A window's
audio and frames come from the same seconds (``extract.windows.plan``).

The clip's feature sets are computed by ``pipeline.predict.clip_sets``, imported where a function computes or checks
them and not with this module: in a one-command ``predict`` of a model that reads one row a clip another process
computes them (``pipeline.predict.ahead``), and this one, which loads torch and the nets, never imports librosa.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.fingerprint import fingerprint_record, record_diff
from mvemo.cache.layout import IMPORTED, FeatureSpec, modality
from mvemo.extract.clip_embedding import TRAINED_WITH, embed_clip, rebuild_net, recorded_spec
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
    from mvemo.pipeline.predict.clip_sets import ClipFeatures, check_fingerprints, fingerprints_of, model_configs

    imported = given_inputs(saved, name, given)  # before any decode: a row missing fails the clip
    configs, fingerprints = model_configs(saved, name)
    pooled = saved.pooling(name)
    if pooled is None:
        arrays = ClipFeatures(clip, weights_dir).get(configs, fingerprints)  # one decode for every set the model reads
        return inputs_from_sets(saved, name, arrays, weights_dir) | imported
    check_fingerprints(fingerprints_of(configs, weights_dir=weights_dir), fingerprints, configs)
    duration_s, problem = media_length_s(clip, {modality(set_name) for set_name in configs})
    if duration_s is None:
        raise MediaError(f"{problem}; check it with `mvemo manifest check`")
    windows = plan_windows(duration_s, pooled["length_s"], pooled["hop_s"])
    per_window = window_inputs(saved, name, clip, windows, weights_dir)
    return pool_inputs(per_window, pooled["pooling"]) | imported


def check_computable(
    saved: SavedFusionModel,
    chosen: str,
    weights_dir: str | None = None,
    feature_sets_checked: Callable[[str], None] | None = None,
) -> None:
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
            check_recorded_sets(saved, name, weights_dir, feature_sets_checked)
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


def check_recorded_sets(
    saved: SavedFusionModel,
    name: str,
    weights_dir: str | None = None,
    feature_sets_checked: Callable[[str], None] | None = None,
) -> None:
    """Raise ``ConfigError`` unless this version computes every set model ``name`` reads with the fingerprint the model
    recorded: each embedding set (``recorded_spec``) and the sets its net read, each feature set (one pooled over
    windows: its window set's; ``feature_sets_checked`` as ``check_computable`` says); a net it does not know, or whose
    record lacks what rebuilding it needs, is refused."""
    for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items()):
        if set_name.startswith("emb/"):
            net_options(input_name)  # an unknown net raises
            _check_net_record(set_name, described)
    if feature_sets_checked is None:
        from mvemo.pipeline.predict.clip_sets import check_feature_sets

        check_feature_sets(saved, name, weights_dir)
    else:
        feature_sets_checked(name)
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
    from mvemo.pipeline.predict.clip_sets import ClipFeatures, at_window, model_configs

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


def inputs_from_sets(
    saved: SavedFusionModel, name: str, arrays: dict[str, np.ndarray], weights_dir: str | None = None
) -> dict[str, np.ndarray]:
    """The model's computed inputs (one row each) from one clip's feature sets: vector sets as they are, LLD
    statistics, and each net's embedding of its input sets."""
    return set_inputs(saved, name, arrays) | net_inputs(saved, name, arrays, weights_dir)


def set_inputs(saved: SavedFusionModel, name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's inputs (one row each) that are computed feature sets: vector sets as they are, LLD statistics."""
    inputs: dict[str, np.ndarray] = {}
    for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items()):
        if IMPORTED not in described["config"] and not set_name.startswith("emb/"):
            value = arrays[set_name]
            inputs[input_name] = (
                summarize_lld(value[None], np.array([len(value)])) if input_name == LLDSTATS else value[None]
            )
    return inputs


def net_inputs(
    saved: SavedFusionModel, name: str, arrays: dict[str, np.ndarray], weights_dir: str | None = None
) -> dict[str, np.ndarray]:
    """The model's inputs (one row each) that are nets' embeddings, each of its input sets among ``arrays``."""
    return {input_name: embed_clip(net, arrays) for input_name, net in saved_nets(saved, name, weights_dir).items()}


def saved_nets(saved: SavedFusionModel, name: str, weights_dir: str | None = None) -> dict[str, EmotionNet]:
    """The nets of model ``name``, by input name, each rebuilt once in this process."""
    return {
        input_name: _saved_net(
            input_name, len(saved.classes), json.dumps(described, sort_keys=True), saved.folder, weights_dir
        )
        for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items())
        if IMPORTED not in described["config"] and set_name.startswith("emb/")
    }


def given_inputs(saved: SavedFusionModel, name: str, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model's imported inputs, one row each, from the rows ``given`` for the clip (by set name,
    ``GivenFeatures.of``); a set's row that is not given (why, in its place) is raised as the clip's failure."""
    for row in given.values():
        if isinstance(row, str):
            raise MediaError(row)
    return {
        input_name: np.asarray(given[set_name], dtype=np.float32)[None]
        for input_name, (set_name, described) in zip(saved.inputs(name), saved.feature_sets(name).items())
        if IMPORTED in described["config"]
    }


@functools.lru_cache(maxsize=8)
def _saved_net(
    net_name: str, num_classes: int, described_json: str, folder: Path, weights_dir: str | None
) -> EmotionNet:
    """The saved net rebuilt once per process (``described_json``: its feature set in the model's document)."""
    return rebuild_net(net_name, num_classes, json.loads(described_json), folder, weights_dir)
