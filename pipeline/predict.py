"""``mvemo predict``: label new files with a saved fusion model, computing exactly the features it was trained on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from extract.audio import LldConfig, MelConfig, WaveformConfig, compute_audio_features, config_from_dict, feature_specs
from extract.embed import build_net
from extract.finetune import load_checkpoint
from extract.media import decode_audio
from extract.nets import net_options
from extract.run import FeatureConfigs
from extract.train import kinds_of
from extract.video import VIDEO_FEATURES, FrameConfig, compute_video_features, video_feature_specs
from fuse.models import LLDSTATS, summarize_lld
from fuse.saved import SavedFusionModel, load_fusion_model
from manifests.errors import ConfigError, MvemoError
from manifests.schema import Clip


def choose_model(saved: SavedFusionModel, name: str | None) -> str:
    """``name``, or the saved model with the best cross-validated accuracy."""
    models = saved.document["models"]
    if name is not None:
        if name not in models:
            raise ConfigError(f"--model {name!r}: the saved model holds {sorted(models)}")
        return name
    accuracy = saved.document.get("cv_accuracy", {})
    return max(models, key=lambda m: accuracy.get(m, 0.0))


def model_inputs(saved: SavedFusionModel, name: str, path: Path) -> dict[str, np.ndarray]:
    """Every input the model reads, computed from the file with the saved configs (fingerprints checked)."""
    model = saved.document["models"][name]
    if model["averages"]:
        inputs: dict[str, np.ndarray] = {}
        for pair in model["averages"]:
            inputs.update(model_inputs(saved, pair, path))
        return inputs
    inputs = {}
    for input_name, described in zip(model["inputs"], model["feature_sets"].values()):
        if input_name == LLDSTATS:
            lld = _features(path, {"lld": described["config"]}, {"lld": described["fingerprint"]})["lld"]
            inputs[input_name] = summarize_lld(lld[None], np.array([len(lld)]))
        else:
            inputs[input_name] = _embedding(input_name, described, path, len(saved.classes), saved.folder)
    return inputs


AUDIO_CONFIGS = {"mel": MelConfig, "lld": LldConfig, "waveform": WaveformConfig}


def _features(path: Path, configs: dict[str, dict], fingerprints: dict[str, str]) -> dict[str, np.ndarray]:
    """Feature sets of one file, computed with saved configs whose fingerprints must match this version's."""
    audio = {k: v for k, v in configs.items() if k in AUDIO_CONFIGS}
    video = {k: v for k, v in configs.items() if k in VIDEO_FEATURES}
    unknown = sorted(set(configs) - set(audio) - set(video))
    if unknown:
        known = sorted([*AUDIO_CONFIGS, *VIDEO_FEATURES])
        raise ConfigError(f"the saved model reads {unknown}: this version computes only {known} for new files")
    return {**(_audio_features(path, audio, fingerprints) if audio else {}), **(_video_features(path, video, fingerprints) if video else {})}  # fmt: skip


def _check_fingerprint(name: str, computed: str, saved: str) -> None:
    if computed != saved:
        raise ConfigError(
            f"the saved model's {name} config has fingerprint {saved[:12]}, this version computes"
            f" {computed[:12]}; retrain it with `mvemo fuse` on a cache from this version"
        )


def _video_features(path: Path, configs: dict[str, dict], fingerprints: dict[str, str]) -> dict[str, np.ndarray]:
    record: dict[str, Any] = {}
    for config in configs.values():
        record |= config
    frames = FrameConfig(**{k: record[k] for k in FrameConfig.__dataclass_fields__ if k in record})
    for spec in video_feature_specs(frames):
        if spec.name in configs:
            _check_fingerprint(spec.name, spec.fingerprint, fingerprints[spec.name])
    computed = compute_video_features(Clip(str(path), "", video=path), frames)
    return {name: computed[name] for name in configs}


def _audio_features(path: Path, configs: dict[str, dict], fingerprints: dict[str, str]) -> dict[str, np.ndarray]:
    built = {kind: config_from_dict(AUDIO_CONFIGS[kind], config) for kind, config in configs.items()}
    for spec in feature_specs(mel=built.get("mel"), lld=built.get("lld"), wave=built.get("waveform")):
        _check_fingerprint(spec.name, spec.fingerprint, fingerprints[spec.name])
    window = next(iter(built.values())).audio_window if "lld" in built else next(iter(built.values())).window
    defaults = FeatureConfigs()
    decoded = decode_audio(path, window, clip_id=str(path))
    return compute_audio_features(
        decoded,
        tuple(built),
        mel=built.get("mel", defaults.mel),
        lld=built.get("lld", defaults.lld),
        wave=built.get("waveform", defaults.waveform),
    )


def _embedding(net_name: str, described: dict[str, Any], path: Path, num_classes: int, folder: Path) -> np.ndarray:
    """The net's embedding of one file: the saved net rebuilt (pretrained weights by sha256, the same seeded init,
    or the fine-tuned checkpoint saved with the model), its inputs computed."""
    import torch

    config = described["config"]
    options = {k: config[k] for k in net_options(net_name) if k in config}
    net, _ = build_net(net_name, num_classes, weights_dir=None, seed=config["seed"], options=options)
    if "checkpoint" in described:
        load_checkpoint(net, described["checkpoint"], folder)
    elif net.weights_sha256 != described["weights_sha256"]:
        raise ConfigError(
            f"{net_name} was computed with weights of sha256 {described['weights_sha256'][:12] or '(random init)'},"
            f" found {net.weights_sha256[:12] or 'none'}; put the same weights in $MVEMO_WEIGHTS"
        )
    arrays = _features(path, described["input_configs"], config["inputs"])
    with torch.no_grad():
        return net.eval().embed(*net.prepare(*(arrays[k][None] for k in kinds_of(net)))).numpy()


def predict_files(model_dir: str | os.PathLike[str], files: list[str], *, model: str | None = None) -> list[dict[str, Any]]:
    """One result per file: ``{"file", "label", "probabilities"}`` or ``{"file", "error"}``; bad files never stop the rest."""
    saved = load_fusion_model(model_dir)
    name = choose_model(saved, model)
    results: list[dict[str, Any]] = []
    for file in files:
        try:
            proba = saved.predict_proba(name, model_inputs(saved, name, Path(file)))[0]
        except MvemoError as err:
            if isinstance(err, ConfigError):
                raise
            results.append({"file": file, "error": str(err)})
            continue
        probabilities = {c: float(p) for c, p in zip(saved.classes, proba)}
        results.append(
            {"file": file, "model": name, "label": saved.classes[int(np.argmax(proba))], "probabilities": probabilities}
        )
    return results
