"""``mvemo models train``: a ready-made model rebuilt from its recipe, and compared with the one shipped.

The recipe runs as a user would run mvemo on the data: the manifest (``manifest scan``, its folds drawn by the
recipe's groups), stage one into ``WORK/cache``, then ``mvemo fuse`` of the recipe's named model with its repeats,
which writes the cross-validation's report into ``WORK/report`` and the model into ``WORK/report/model``. The folder
gets ``recipe.json``: the recipe, the figures of its CV and the versions that made it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache
from mvemo.extract.stage import extract_features
from mvemo.fuse.saved.model import HEADS_H5, MODEL_JSON, with_plane
from mvemo.fuse.stage import FuseSettings, fuse_cache, package_versions
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.io import write_manifest
from mvemo.manifests.scan import scan_labelled, scan_tree
from mvemo.manifests.schema import Manifest
from mvemo.pipeline.config import feature_configs, window_config
from mvemo.pipeline.readymade.recipes import RECIPE_JSON, Recipe

# what may differ between two builds of one recipe: the versions that made them
UNCOMPARED = ("version", "made_with")
# floats of a rebuild equal the shipped ones to this (the CPU's vector kernels may round differently)
RELATIVE, ABSOLUTE = 1e-3, 1e-5
# what a value model's card gives of each value
VALUE_FIGURES = ("ccc", "ccc_per_fold", "r2", "pearson", "rmse")


def recipe_manifest(recipe: Recipe, data: Path) -> Manifest:
    """The clips of ``data`` as the recipe labels them, with its folds."""
    if not data.is_dir():
        raise ConfigError(f"--data {data}: no such folder; the recipe of {recipe.name} reads {recipe.data}")
    if recipe.labels is None:
        found = scan_tree(data)
    else:
        found = scan_labelled(data, data / recipe.labels, key=recipe.key)
    return assign_folds(found, k=recipe.k, seed=recipe.seed, group_by=recipe.group_by)


def train_recipe(
    recipe: Recipe,
    data: Path,
    work: Path,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    progress: Any = None,
) -> Path:
    """Run ``recipe`` on the clips of ``data`` in ``work`` (manifest, cache, report) and return the model's folder,
    ``recipe.json`` written beside its model."""
    manifest = recipe_manifest(recipe, data)
    work.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, work / "manifest.csv")
    cache = work / "cache"
    extract_features(
        manifest,
        cache,
        features=recipe.features,
        nets=recipe.nets,
        configs=feature_configs(recipe.config),
        windows=window_config(recipe.config),
        weights_dir=weights_dir,
        executor=executor,
        progress=progress,
    )
    settings = FuseSettings(target=recipe.target, models=recipe.model, repeats=recipe.repeats, executor=executor)
    with Cache(cache) as opened:
        report, folder = fuse_cache(opened, work / "report", settings)
    if recipe.plane:
        with_plane(folder, recipe.plane)
    card = {
        "recipe": recipe.to_json(),
        "figures": figures(report, recipe),
        "clips": len(manifest),
        "version": mvemo_version(),
        "made_with": package_versions(),
    }
    (folder / RECIPE_JSON).write_text(json.dumps(card, indent=1) + "\n")
    return folder


def figures(report: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """The cross-validated figures of the recipe's model, as its report gives them: accuracy with its interval and
    macro F1 for classes; ROC-AUC macro and mAP, mean and range over repeats, for tags; per value its CCC (pooled, and
    per fold with its interval), R², r and RMSE, and the quadrants' accuracy, for values."""
    if recipe.target == "tags":
        metrics = report["metrics"][recipe.model]
        return {name: metrics[key] for name, key in (("roc_auc_macro", "roc_auc_macro"), ("map", "map"))}
    if recipe.target != "label":
        metrics = report["metrics"][recipe.model]
        values = {name: {key: metrics[name][key] for key in VALUE_FIGURES} for name in report["names"]}
        return values | ({"quadrant_accuracy": metrics["quadrants"]["accuracy"]} if "quadrants" in metrics else {})
    metrics = report["models"][recipe.model]
    accuracy = metrics["accuracy"]
    return {"accuracy": {"mean": accuracy["mean"], "interval": accuracy["interval"]}, "f1_macro": metrics["f1_macro"]}


def differences(shipped: Path, rebuilt: Path) -> list[str]:
    """Where a rebuilt model differs from the shipped one: every value of ``model.json`` and ``recipe.json`` (numbers
    to ``RELATIVE``, ``ABSOLUTE``; the versions that made them aside), every array of ``heads.h5``."""
    found = []
    for name in (MODEL_JSON, RECIPE_JSON):
        a, b = (json.loads((folder / name).read_text()) for folder in (shipped, rebuilt))
        found += [f"{name}: {d}" for d in _json_differences(a, b, "")]
    with h5py.File(shipped / HEADS_H5, "r") as a, h5py.File(rebuilt / HEADS_H5, "r") as b:
        arrays_a, arrays_b = dict(_arrays(a)), dict(_arrays(b))
        for key in sorted(set(arrays_a) | set(arrays_b)):
            if key not in arrays_a or key not in arrays_b:
                found.append(f"{HEADS_H5}: {key} only in the {'shipped' if key in arrays_a else 'rebuilt'} model")
            elif arrays_a[key].shape != arrays_b[key].shape:
                found.append(f"{HEADS_H5}: {key} has shape {arrays_a[key].shape}, rebuilt {arrays_b[key].shape}")
            elif not np.allclose(arrays_a[key], arrays_b[key], rtol=RELATIVE, atol=ABSOLUTE):
                gap = float(np.max(np.abs(arrays_a[key].astype(float) - arrays_b[key].astype(float))))
                found.append(f"{HEADS_H5}: {key} differs by up to {gap:.3g}")
    return found


def _arrays(group: h5py.Group, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            yield from _arrays(item, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", item[()]


def _json_differences(a: Any, b: Any, where: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if where == "" and key in UNCOMPARED:
                continue
            if key not in a or key not in b:
                yield f"{where}{key} only in the {'shipped' if key in a else 'rebuilt'} model"
            else:
                yield from _json_differences(a[key], b[key], f"{where}{key}.")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _json_differences(x, y, f"{where}{i}.")
    elif isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        if not math.isclose(a, b, rel_tol=RELATIVE, abs_tol=ABSOLUTE):
            yield f"{where.rstrip('.')}: {a} shipped, {b} rebuilt"
    elif a != b:
        yield f"{where.rstrip('.')}: {json.dumps(a)[:80]} shipped, {json.dumps(b)[:80]} rebuilt"
