"""``mvemo predict``: label new files with a saved fusion model, computing exactly the features it was trained on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from extract.audio import LldConfig, compute_audio_features, config_from_dict, feature_specs
from extract.media import decode_audio
from fuse.models import LLDSTATS, summarize_lld
from fuse.saved import SavedFusionModel, load_fusion_model
from manifests.errors import ConfigError, MvemoError


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
    for input_name, (set_name, described) in zip(model["inputs"], model["feature_sets"].items()):
        if input_name != LLDSTATS:
            raise ConfigError(
                f"model {name!r} reads {set_name}: embeddings of stage-one nets cannot be computed by this version;"
                f" choose a model over LLDs with --model {LLDSTATS}"
            )
        config = config_from_dict(LldConfig, described["config"])
        spec = feature_specs(lld=config)[0]
        if spec.fingerprint != described["fingerprint"]:
            raise ConfigError(
                f"model {name!r}: the LLD config it was trained with has fingerprint {described['fingerprint'][:12]},"
                f" this version computes {spec.fingerprint[:12]}; retrain it with `mvemo fuse` on a cache from this version"
            )
        decoded = decode_audio(path, config.audio_window, clip_id=str(path))
        lld = compute_audio_features(decoded, ("lld",), mel=None, lld=config, wave=None)["lld"]  # type: ignore[arg-type]
        padded = np.zeros((1, config.n_frames, lld.shape[1]), dtype=np.float32)
        padded[0, : len(lld)] = lld
        inputs[input_name] = summarize_lld(padded, np.array([len(lld)]))
    return inputs


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
