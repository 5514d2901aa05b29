"""``mvemo models train``: a ready-made model rebuilt from its recipe, and compared with the one shipped.

The recipe runs as a user would run mvemo on the data: the manifest (``manifest scan``, its folds drawn by the
recipe's groups), stage one into ``WORK/cache``, then ``mvemo fuse`` of the recipe's named model with its repeats,
which writes the cross-validation's report into ``WORK/report`` and the model into ``WORK/report/model``. The folder
gets ``recipe.json``: the recipe, the figures of its CV and the versions that made it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache
from mvemo.extract.repeats import repeated_clips
from mvemo.extract.stage import extract_features
from mvemo.fuse.plane_stage import fuse_plane
from mvemo.fuse.saved.model import HEADS_H5, MODEL_JSON, with_plane
from mvemo.fuse.stage import FuseSettings, fuse_cache, package_versions
from mvemo.fuse.targets.plane import DEFAULT_METHOD
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.io import write_manifest
from mvemo.manifests.scan import scan_labelled, scan_tree
from mvemo.manifests.schema import Manifest
from mvemo.pipeline.config import feature_configs, window_config
from mvemo.pipeline.readymade import recipes
from mvemo.pipeline.readymade.recipes import RECIPE_JSON, Recipe

# what may differ between two builds of one recipe: the versions that made them
UNCOMPARED = ("version", "made_with")
# floats of a rebuild equal the shipped ones to this (the CPU's vector kernels may round differently)
RELATIVE, ABSOLUTE = 1e-3, 1e-5
# what a value model's card gives of each value
VALUE_FIGURES = ("ccc", "ccc_per_fold", "r2", "pearson", "rmse")


def recipe_manifest(recipe: Recipe, data: Path) -> Manifest:
    """The clips of ``data`` as the recipe labels them, with its folds (a recording held twice in one fold where the
    recipe groups repeats)."""
    if not data.is_dir():
        raise ConfigError(f"--data {data}: no such folder; the recipe of {recipe.name} reads {recipe.data}")
    if recipe.labels is None:
        found = scan_tree(data)
    else:
        found = scan_labelled(data, data / recipe.labels, key=recipe.key)
    together = repeated_recordings(found) if recipe.group_repeats else []
    return assign_folds(found, k=recipe.k, seed=recipe.seed, group_by=recipe.group_by, together=together)


def repeated_recordings(manifest: Manifest) -> list[tuple[int, int]]:
    """The pairs of clips that are one recording (``extract.repeats``)."""
    return [(a, b) for a, b, _ in repeated_clips(manifest.clips)]


def train_recipe(
    recipe: Recipe,
    data: Path,
    work: Path,
    *,
    also_data: Mapping[str, Path] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    progress: Any = None,
) -> Path:
    """Run ``recipe`` on the clips of ``data`` in ``work`` (manifest, cache, report) and return the model's folder,
    ``recipe.json`` written beside its model. The recipes it learns from ``also`` read their data from
    ``also_data`` (by recipe name; default: the folder of their data beside ``data``), each into a cache of its own
    in ``work`` computed as this recipe computes its own."""
    manifest = recipe_manifest(recipe, data)
    work.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, work / "manifest.csv")
    caches = [work / (recipe.data if recipe.also else "cache")]  # each set's cache named by its data, where several
    run_stage_one(recipe, manifest, caches[0], weights_dir, executor, progress)
    clips = {recipe.data: len(manifest)}
    for name in recipe.also:
        other = recipes.recipe(name)
        other_manifest = recipe_manifest(other, (also_data or {}).get(name, data.parent / other.data))
        write_manifest(other_manifest, work / f"{other.data}.csv")
        caches.append(work / other.data)
        run_stage_one(recipe, other_manifest, caches[-1], weights_dir, executor, progress)
        clips[other.data] = len(other_manifest)
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(Cache(cache)) for cache in caches]
        if recipe.also:
            method = recipe.method or DEFAULT_METHOD
            report, folder = fuse_plane(
                opened, work / "report", method=method, repeats=recipe.repeats, executor=executor
            )
        else:
            settings = FuseSettings(
                target=recipe.target, models=recipe.model, repeats=recipe.repeats, executor=executor
            )
            report, folder = fuse_cache(opened[0], work / "report", settings)
    if recipe.plane:
        with_plane(folder, recipe.plane)
    card = {
        "recipe": recipe.to_json(),
        "figures": figures(report, recipe),
        "clips": clips[recipe.data] if not recipe.also else clips,
        "version": mvemo_version(),
        "made_with": package_versions(),
    }
    (folder / RECIPE_JSON).write_text(json.dumps(card, indent=1) + "\n")
    return folder


def run_stage_one(
    recipe: Recipe,
    manifest: Manifest,
    cache: Path,
    weights_dir: str | os.PathLike[str] | None,
    executor: Executor | None,
    progress: Any,
) -> None:
    """Stage one of ``recipe`` (its features, nets and config) over ``manifest``'s clips into ``cache``."""
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


def figures(report: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """The cross-validated figures of the recipe's model, as its report gives them: accuracy with its interval and
    macro F1 for classes; ROC-AUC macro and mAP, mean and range over repeats, for tags; per value its CCC (pooled, and
    per fold with its interval), R², r and RMSE, and the quadrants' accuracy, for values; for a values model of
    several sets, each set's figures (``fuse.targets.plane``)."""
    if recipe.also:
        (method,) = report["methods"]
        return {name: dict(measures) for name, measures in report["methods"][method].items()}
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
