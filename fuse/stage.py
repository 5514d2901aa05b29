"""Stage two end to end: the CV report, then the final model trained on every clip."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache, CacheLike, opened
from mvemo.fuse.cv import CvResult, cross_validate
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.loop import Basis, new_run, release_run, sets_read
from mvemo.fuse.models import INTEGRATED
from mvemo.fuse.provenance import fine_tuned_nets, protocol, provenance, top_tags
from mvemo.fuse.report.classes import write_report
from mvemo.fuse.report.targets import tags_document, values_document, write_target_report
from mvemo.fuse.saved.final import train_final
from mvemo.fuse.saved.model import save_fusion_model
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.tags import TagResult, cross_validate_tags
from mvemo.fuse.targets.values import ValuesResult, cross_validate_values
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor, Progress
from mvemo.manifests.targets import VALUE_COLUMNS

PACKAGES = ("numpy", "scipy", "scikit-learn", "h5py", "torch")


@dataclass(frozen=True)
class FuseSettings:
    """How a stage-two run goes, built once (by the CLI's ``fusion_arguments``) and taken by ``run_cv``,
    ``run_target_cv`` and ``fuse_cache`` alike.

    ``target``: ``resolve_target``'s; ``models``: ``--models`` (None: the defaults); ``n_folds``: must equal the
    cache's; ``repeats`` and ``reference``: ``fuse.cv.cross_validate``'s; ``head`` and ``head_params``: the head
    family and its fixed parameters (``fuse.heads.families.make_head``; None: the ``selection``'s heads, chosen on
    inner folds); ``executor`` and ``progress``: where the fits run and what reports them; ``upper``: the published
    layers above each input cut below them (``fuse.heads.upper``)."""

    target: str = "label"
    models: str | None = None
    n_folds: int | None = None
    repeats: int = 1
    reference: str | None = None
    head: str | None = None
    head_params: dict[str, Any] = field(default_factory=dict)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    executor: Executor | None = None
    progress: Progress | None = None
    upper: Mapping[str, UpperLayers] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: FuseSettings | None, **changes: Any) -> FuseSettings:
        """``settings`` (default the defaults) with ``changes``, those given as None left at their defaults."""
        given = {key: value for key, value in changes.items() if value is not None}
        return replace(settings or cls(), **given)

    def make_head(self) -> Any:
        return make_head(self.head, self.selection, **self.head_params)

    def cv_options(self) -> dict[str, Any]:
        """``fuse.cv.cross_validate``'s options of these settings."""
        keys = ("models", "n_folds", "repeats", "reference", "selection", "executor", "progress", "upper")
        return {key: getattr(self, key) for key in keys} | {"head": self.make_head()}

    def config(self) -> dict[str, Any]:
        """What a report and a saved model record of these settings: of values, the value heads
        (``[fuse] value_heads``)."""
        classifies = self.target in ("label", "tags")
        return {
            "target": self.target,
            "head": (self.head or " | ".join(self.selection.heads))
            if classifies
            else " | ".join(self.selection.value_heads),
            "head_params": self.head_params if classifies else {},
            "selection": self.selection.to_json(),
            "models": self.models or "default",
        }


@dataclass(frozen=True)
class CvRun:
    """What ``run_cv`` or ``run_target_cv`` did: the cross-validation's result (its ``basis`` among it: the models it
    scored and the cache as it read it) and the report written."""

    result: CvResult | TagResult | ValuesResult
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


def made_by(cache: Cache, sets: list[str]) -> dict[str, Any]:
    """What every report records of how it was made: mvemo's and the packages' versions, and the provenance of each
    net the ``sets`` it read came from."""
    return {"version": mvemo_version(), "versions": package_versions(), "provenance": provenance(cache, sets)}


def run_cv(
    cache: CacheLike,
    out: str | os.PathLike[str],
    settings: FuseSettings | None = None,
    *,
    run: str | None = None,
    **changes: Any,
) -> CvRun:
    """Cross-validate the classes and write ``report.md``, ``report.json``, ``oof_predictions.csv`` and the PNGs into
    ``out``; returns the result and the report document. ``settings`` with ``changes`` (``FuseSettings.of``);
    ``run``: as ``fuse.cv.cross_validate``'s."""
    settings = FuseSettings.of(settings, **changes)
    with opened(cache) as cache:
        result = cross_validate(cache, **settings.cv_options(), run=run)
        config = {key: value for key, value in settings.config().items() if key != "target"}
        config["reference"] = result.comparison["reference"] if result.comparison else settings.reference
        read = basis_of(result).sets
        header = {"cache_fingerprint": cache.combined_fingerprint(read), "config": config, **made_by(cache, read)}
        tags = top_tags(cache, read)
    return CvRun(result, write_report(result, out, header=header, tags=tags))


def basis_of(result: CvResult | TagResult | ValuesResult) -> Basis:
    """What a cross-validation scored from (every one records its own)."""
    assert result.basis is not None
    return result.basis


def resolve_target(cache: Cache, target: str | None) -> str:
    """``--target`` as ``label``, ``tags`` or value names joined by commas (``valence,arousal``); default the
    cache's labels, else its tags, else its values.

    Raises
    ------
    ConfigError
        For any other text.
    """
    if target is None:
        if cache.classes or not (cache.targets.tags or cache.targets.value_names):
            return "label"
        return "tags" if cache.targets.tags else ",".join(cache.targets.value_names)
    names = [n.strip() for n in target.split(",")]
    if target in ("label", "tags") or (names and len(set(names)) == len(names) and set(names) <= set(VALUE_COLUMNS)):
        return target if target in ("label", "tags") else ",".join(n for n in VALUE_COLUMNS if n in names)
    raise ConfigError(f"--target {target!r}: expected label, tags, or valence,arousal (or one of the two)")


def run_target_cv(
    cache: CacheLike,
    out: str | os.PathLike[str],
    target: str,
    settings: FuseSettings | None = None,
    *,
    run: str | None = None,
    **changes: Any,
) -> CvRun:
    """The CV report of tags (``target`` "tags", ``fuse.targets.tags``) or values (e.g. "valence,arousal",
    ``fuse.targets.values``) in ``out``; ``settings``, ``changes`` and ``run`` as ``run_cv``'s. Values use the heads
    of ``[fuse] value_heads``: the head, the executor and the reference do not apply to them."""
    settings = FuseSettings.of(settings, target=target, **changes)
    result: TagResult | ValuesResult
    with opened(cache) as cache:
        if target == "tags":
            result = cross_validate_tags(cache, **settings.cv_options(), run=run)
            document = tags_document(result)
        else:
            fixed = {
                key: getattr(settings, key)
                for key in ("models", "n_folds", "repeats", "selection", "executor", "progress")
            }
            values = cross_validate_values(cache, names=tuple(target.split(",")), run=run, **fixed)
            if settings.head or settings.reference:
                values.notes.append(
                    "valence/arousal heads are [fuse] value_heads (ridge by default),"
                    " their settings chosen on inner folds: --head and --reference do not apply"
                )
            document, result = values_document(values), values
        read = basis_of(result).sets
        document |= made_by(cache, read) | {
            "config": {key: settings.config()[key] for key in ("target", "models", "selection")}
        }
        document |= {"protocol": protocol(cache, read), "fine_tuned_nets": fine_tuned_nets(cache, read)}
    return CvRun(result, write_target_report(document, result, Path(out)))


def cv_scores(target: str, scored: dict[str, Any]) -> dict[str, Any]:
    """Each saved model's cross-validated score, for predict to choose among them (``pipeline.predict.timeline``):
    the mean accuracy of classes, the mean macro ROC-AUC of tags, the mean CCC over the value dimensions."""
    if target == "label":
        return {"metric": "accuracy", "models": {name: m["accuracy"]["mean"] for name, m in scored.items()}}
    if target == "tags":
        auc = {name: m["roc_auc_macro"] for name, m in scored.items()}
        return {"metric": "ROC-AUC macro", "models": {name: a["mean"] for name, a in auc.items() if a is not None}}
    names = target.split(",")
    return {
        "metric": "CCC",
        "models": {name: float(np.mean([m[v]["ccc"] for v in names])) for name, m in scored.items()},
    }


def fuse_cache(
    cache: CacheLike, out: str | os.PathLike[str], settings: FuseSettings | None = None, **changes: Any
) -> tuple[dict[str, Any], Path]:
    """The CV report of the settings' target (``resolve_target``) in ``out``, then every model fitted on all clips
    (its choices made on inner folds of them), saved in ``out/model``; ``settings`` with ``changes`` as
    ``run_cv``'s.

    The saved model's default for ``predict`` is the integrated model (``integrated``, ``integrated-audio`` or an
    ``integrated(...)`` of named inputs) where it is saved, else the first model listed: never one chosen by its
    outer-fold scores."""
    settings = FuseSettings.of(settings, **changes)
    run = new_run()  # the matrices the CV read last serve the final model too
    try:
        with opened(cache) as cache:
            return _fuse(cache, Path(out), settings, run)
    finally:
        release_run(run)


def _fuse(cache: Cache, out: Path, settings: FuseSettings, run: str) -> tuple[dict[str, Any], Path]:
    target = settings.target
    done = (
        run_cv(cache, out, settings, run=run)
        if target == "label"
        else run_target_cv(cache, out, target, settings, run=run)
    )
    document, basis = done.document, basis_of(done.result)
    scored = document["models"] if target == "label" else document["metrics"]
    chosen = [model for model in basis.models if model.name in scored]
    read = sets_read(cache, chosen)  # the sets of the models saved, among those the CV read
    header: dict[str, Any] = {"version": mvemo_version(), "protocol": protocol(cache, read)}
    header["cache_fingerprint"] = cache.combined_fingerprint(read)
    header["provenance"] = provenance(cache, read)
    fitted = train_final(cache, chosen, settings.make_head(), settings.selection, settings.upper, target, run, basis)
    integrated = [name for name in scored if name in INTEGRATED or name.startswith("integrated(")]
    header |= {"cv_score": cv_scores(target, scored)}
    header |= {key: settings.config()[key] for key in ("head", "head_params", "selection")}
    header["default_model"] = (integrated or list(scored))[0]
    return document, save_fusion_model(out / "model", cache, chosen, fitted, header, target)
