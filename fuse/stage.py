"""Stage two end to end: the CV report, then the final model trained on every clip."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache
from mvemo.fuse.cv import CvResult, cross_validate, new_run, release_run
from mvemo.fuse.dimensional import ValuesResult, cross_validate_values
from mvemo.fuse.families import make_head
from mvemo.fuse.models import INTEGRATED, select_models
from mvemo.fuse.provenance import fine_tuned_nets, protocol, provenance, top_tags
from mvemo.fuse.report import write_report
from mvemo.fuse.saved import save_fusion_model, train_final
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.tagging import TagResult, cross_validate_tags
from mvemo.fuse.target_report import tags_document, values_document, write_target_report
from mvemo.fuse.upper import UpperLayers
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor, Progress
from mvemo.manifests.targets import VALUE_COLUMNS

PACKAGES = ("numpy", "scipy", "scikit-learn", "h5py", "torch")


@dataclass(frozen=True)
class CvRun:
    """What ``run_cv`` did: the cross-validation's result (the models it read among them) and the report written."""

    result: CvResult
    document: dict[str, Any]


def package_versions() -> dict[str, str]:
    """Python's and the numerical packages' versions, for a report's provenance."""
    versions = {"python": platform.python_version(), "mvemo": mvemo_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_cv(
    cache_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    models: str | None = None,
    n_folds: int | None = None,
    repeats: int = 1,
    reference: str | None = None,
    head: str | None = None,
    head_params: dict[str, Any] | None = None,
    selection: SelectionConfig | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    upper: Mapping[str, UpperLayers] | None = None,
    run: str | None = None,
) -> CvRun:
    """Cross-validate and write ``report.md``, ``report.json``, ``oof_predictions.csv`` and the PNGs into ``out``;
    returns the result and the report document.

    ``progress(fits, total)``, if given, wraps the (repeat, fold) fits as they finish; ``upper``: the published
    layers above each input cut below them (``fuse.upper``); ``run``: as ``fuse.cv.cross_validate``'s."""
    selection = selection or SelectionConfig()
    result = cross_validate(
        cache_path,
        models=models,
        n_folds=n_folds,
        repeats=repeats,
        reference=reference,
        head=make_head(head, selection, **(head_params or {})),
        selection=selection,
        executor=executor,
        progress=progress,
        upper=upper,
        run=run,
    )
    with Cache(cache_path) as cache:
        fingerprint = cache.combined_fingerprint()
        nets = provenance(cache)
        tags = top_tags(cache)
    config = {
        "head": head or " | ".join(selection.heads),
        "head_params": head_params or {},
        "selection": selection.to_json(),
        "models": models or "default",
        "reference": result.comparison["reference"] if result.comparison else reference,
    }
    header = {
        "cache_fingerprint": fingerprint,
        "config": config,
        "version": mvemo_version(),
        "versions": package_versions(),
        "provenance": nets,
    }
    return CvRun(result, write_report(result, out, header=header, tags=tags))


def resolve_target(cache_path: str | os.PathLike[str], target: str | None) -> str:
    """``--target`` as ``label``, ``tags`` or value names joined by commas (``valence,arousal``); default the
    cache's labels, else its tags, else its values.

    Raises
    ------
    ConfigError
        For any other text.
    """
    if target is None:
        with Cache(cache_path) as cache:
            if cache.classes or not (cache.targets.tags or cache.targets.value_names):
                return "label"
            return "tags" if cache.targets.tags else ",".join(cache.targets.value_names)
    names = [n.strip() for n in target.split(",")]
    if target in ("label", "tags") or (names and len(set(names)) == len(names) and set(names) <= set(VALUE_COLUMNS)):
        return target if target in ("label", "tags") else ",".join(n for n in VALUE_COLUMNS if n in names)
    raise ConfigError(f"--target {target!r}: expected label, tags, or valence,arousal (or one of the two)")


def run_target_cv(
    cache_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    target: str,
    *,
    head: str | None = None,
    head_params: dict[str, Any] | None = None,
    selection: SelectionConfig | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The CV report of tags (``target`` "tags", ``fuse.tagging``) or values (e.g. "valence,arousal",
    ``fuse.dimensional``) in ``out``; ``options`` as ``run_cv``'s. Values use ridge heads: ``head``, the executor
    and the reference do not apply to them."""
    selection = selection or SelectionConfig()
    result: TagResult | ValuesResult
    if target == "tags":
        result = cross_validate_tags(
            cache_path, head=make_head(head, selection, **(head_params or {})), selection=selection, **options
        )
        document = tags_document(result)
    else:
        fixed = {key: options.get(key) for key in ("models", "n_folds", "run")}
        values = cross_validate_values(
            cache_path, names=tuple(target.split(",")), repeats=options.get("repeats", 1), selection=selection, **fixed
        )
        if head or options.get("reference"):
            values.notes.append(
                "valence/arousal heads are ridge regressions, alpha chosen on inner folds: --head and --reference do not apply"
            )
        document, result = values_document(values), values
    with Cache(cache_path) as cache:
        nets, used_protocol, tuned = provenance(cache), protocol(cache), fine_tuned_nets(cache)
    config = {"target": target, "models": options.get("models") or "default", "selection": selection.to_json()}
    document |= {"version": mvemo_version(), "versions": package_versions(), "provenance": nets, "config": config}
    document |= {"protocol": used_protocol, "fine_tuned_nets": tuned}
    return write_target_report(document, result, Path(out))


def cv_scores(target: str, scored: dict[str, Any]) -> dict[str, Any]:
    """Each saved model's cross-validated score, for predict to choose among them (``pipeline.predict.timeline``):
    the mean accuracy of classes, the mean macro ROC-AUC of tags, the mean CCC over the value dimensions."""
    if target == "label":
        return {"metric": "accuracy", "models": {name: m["accuracy"]["mean"] for name, m in scored.items()}}
    if target == "tags":
        auc = {name: m["roc_auc_macro"] for name, m in scored.items()}
        return {"metric": "ROC-AUC macro", "models": {name: a["mean"] for name, a in auc.items() if a is not None}}
    names = target.split(",")
    return {"metric": "CCC", "models": {name: float(np.mean([m[v]["ccc"] for v in names])) for name, m in scored.items()}}


def fuse_cache(
    cache_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    target: str = "label",
    models: str | None = None,
    repeats: int = 1,
    reference: str | None = None,
    head: str | None = None,
    head_params: dict[str, Any] | None = None,
    selection: SelectionConfig | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    upper: Mapping[str, UpperLayers] | None = None,
) -> tuple[dict[str, Any], Path]:
    """The CV report of ``target`` (``resolve_target``) in ``out``, then every model fitted on all clips (its
    choices made on inner folds of them), saved in ``out/model``.

    The saved model's default for ``predict`` is the integrated model (``integrated``, ``integrated-audio`` or an
    ``integrated(...)`` of named inputs) where it is saved, else the first model listed: never one chosen by its
    outer-fold scores."""
    selection = selection or SelectionConfig()
    run = new_run()  # the CV's matrices, read once, serve the final model too
    try:
        return _fuse(cache_path, out, target, models, run, head, head_params, selection, upper, repeats=repeats,
                     reference=reference, executor=executor, progress=progress)  # fmt: skip
    finally:
        release_run(run)


def _fuse(
    cache_path: str | os.PathLike[str], out: str | os.PathLike[str], target: str, models: str | None, run: str,
    head: str | None, head_params: dict[str, Any] | None, selection: SelectionConfig,
    upper: Mapping[str, UpperLayers] | None, **cv: Any,
) -> tuple[dict[str, Any], Path]:  # fmt: skip
    options: dict[str, Any] = {"models": models, "upper": upper, "head": head, "head_params": head_params}
    options |= {"selection": selection, "run": run, **cv}
    if target == "label":
        document = run_cv(cache_path, out, **options).document
        scored = document["models"]
    else:
        document = run_target_cv(cache_path, out, target, **options)
        scored = document["metrics"]
    scores = {"cv_score": cv_scores(target, scored)}
    with Cache(cache_path) as cache:
        chosen = [model for model in select_models(cache, models) if model.name in scored]
        header: dict[str, Any] = {"version": mvemo_version(), "protocol": protocol(cache)}
        header["cache_fingerprint"] = cache.combined_fingerprint()
        header["provenance"] = provenance(cache)
    fitted = train_final(cache_path, chosen, make_head(head, selection, **(head_params or {})), selection, upper, target, run)
    integrated = [name for name in scored if name in INTEGRATED or name.startswith("integrated(")]
    header |= scores | {
        "head": head or " | ".join(selection.heads),
        "head_params": head_params or {},
        "selection": selection.to_json(),
        "default_model": (integrated or list(scored))[0],
    }
    return document, save_fusion_model(Path(out) / "model", cache_path, chosen, fitted, header, target)
