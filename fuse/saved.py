"""The final fusion model: heads trained on every clip, saved as JSON + HDF5 (never pickle), and loaded back.

``DIR/model/model.json`` names the classes, each model's inputs and the cached
feature sets (fingerprints, configs, net checkpoints and their sha256) they were
computed with, so ``predict`` can compute exactly the same features for new
files. ``DIR/model/heads.h5`` holds each head as a linear softmax layer.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.read import Cache
from mvemo.fuse.heads import LinearSoftmax, fit_head
from mvemo.fuse.models import LLDSTATS, FusionModel, features, input_set, resolve_sets
from mvemo.manifests.errors import CacheError

MODEL_JSON = "model.json"
HEADS_H5 = "heads.h5"
CHECKPOINTS = "checkpoints"


def train_final(cache_path: str | os.PathLike[str], models: list[FusionModel], head: Any) -> dict[str, LinearSoftmax]:
    """Each model's head fitted on every usable clip of the final feature sets (``emb/<net>/all``, LLDs)."""
    heads = {}
    with Cache(cache_path) as cache:
        y, groups = cache.y, np.array(cache.groups)
        for model in models:
            if model.averages:
                continue
            X, usable = features(cache, resolve_sets(cache, model.inputs, None))
            rows = np.flatnonzero(usable)
            if len(np.unique(y[rows])) < 2:
                raise CacheError(f"model {model.name!r}: fewer than two classes among its {len(rows)} usable clips")
            heads[model.name] = fit_head(head, X[rows], y[rows], groups[rows]).linear_
    return heads


def describe_inputs(cache: Cache, model: FusionModel) -> dict[str, Any]:
    """The cached feature sets a model's final head reads, with what recomputing them needs."""
    described: dict[str, dict[str, Any]] = {}
    for name in model.inputs:
        set_name = "lld" if name == LLDSTATS else input_set(cache, name, None)
        group = cache.file[f"features/{set_name}"]
        config = cache.config(set_name)
        described[set_name] = {
            "fingerprint": cache.fingerprint(set_name),
            "config": config,
            "extractor": str(group.attrs["extractor"]),
            "weights_sha256": str(group.attrs["weights_sha256"]),
            # the configs of the cached inputs an embedding was computed from, to compute them again
            "input_configs": {kind: cache.config(kind) for kind in config.get("inputs", {})},
        }
    return described


def save_fusion_model(
    out: str | os.PathLike[str],
    cache_path: str | os.PathLike[str],
    models: list[FusionModel],
    heads: dict[str, LinearSoftmax],
    header: dict[str, Any],
) -> Path:
    """Write ``out/model.json`` and ``out/heads.h5``; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with Cache(cache_path) as cache:
        document = {
            **header,
            "classes": list(cache.classes),
            # the content hash of every clip the model trained on: predict warns when it meets one again
            "training_media_sha256": sorted({h.decode() for h in cache.media_hash} - {""}),
            "models": {
                m.name: {
                    "kind": m.kind,
                    "inputs": list(m.inputs),
                    "averages": list(m.averages),
                    "feature_sets": {} if m.averages else describe_inputs(cache, m),
                }
                for m in models
            },
        }
    _copy_checkpoints(document, Path(cache_path).parent, out)
    with h5py.File(out / HEADS_H5, "w") as f:
        for name, linear in heads.items():
            group = f.create_group(name)
            for key in ("classes", "mean", "scale", "weights", "bias"):
                group[key] = np.asarray(getattr(linear, key))
    (out / MODEL_JSON).write_text(json.dumps(document, indent=2))
    return out


def _copy_checkpoints(document: dict[str, Any], cache_dir: Path, out: Path) -> None:
    """Copy each fine-tuned net's checkpoint into ``out/checkpoints`` so the model folder travels alone."""
    for model in document["models"].values():
        for set_name, described in model["feature_sets"].items():
            record = described["config"].get("checkpoint")
            if record is None:
                continue
            target = Path(CHECKPOINTS) / f"{set_name.split('/')[1]}.pt"
            (out / CHECKPOINTS).mkdir(exist_ok=True)
            shutil.copyfile(cache_dir / record["path"], out / target)
            described["checkpoint"] = {"path": str(target), "sha256": record["sha256"]}


@dataclass
class SavedFusionModel:
    """A loaded fusion model: ``predict_proba(name, inputs)`` with inputs keyed like the model's."""

    folder: Path
    document: dict[str, Any]
    heads: dict[str, LinearSoftmax]

    @property
    def classes(self) -> list[str]:
        return list(self.document["classes"])

    def predict_proba(self, name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities over all classes, shape (n, n_classes); ``inputs`` maps each input name to (n, d)."""
        model = self.document["models"][name]
        if model["averages"]:
            return np.mean([self.predict_proba(pair, inputs) for pair in model["averages"]], axis=0)
        X = np.concatenate([np.asarray(inputs[i], dtype=np.float64).reshape(len(inputs[i]), -1) for i in model["inputs"]], axis=1)
        head = self.heads[name]
        proba = np.zeros((len(X), len(self.classes)))
        proba[:, head.classes] = head.predict_proba(X)
        return proba


def load_fusion_model(folder: str | os.PathLike[str]) -> SavedFusionModel:
    """Read ``folder/model.json`` and ``folder/heads.h5`` (plain arrays: nothing is unpickled)."""
    folder = Path(folder)
    if not (folder / MODEL_JSON).is_file() or not (folder / HEADS_H5).is_file():
        raise CacheError(
            f"{str(folder)!r} holds no saved fusion model ({MODEL_JSON} + {HEADS_H5}); make one with `mvemo fuse CACHE --out DIR`"
        )
    document = json.loads((folder / MODEL_JSON).read_text())
    with h5py.File(folder / HEADS_H5, "r") as f:
        heads = {
            name: LinearSoftmax(*(f[name][key][()] for key in ("classes", "mean", "scale", "weights", "bias"))) for name in f
        }
    return SavedFusionModel(folder, document, heads)
