"""Stage two end to end: the CV report, then the final model trained on every clip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.heads import make_head
from mvemo.fuse.models import select_models
from mvemo.fuse.report import write_report
from mvemo.fuse.saved import save_fusion_model, train_final
from mvemo.manifests.executor import Executor, Progress


def run_cv(
    cache_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    models: str | None = None,
    n_folds: int | None = None,
    head: str = "logistic",
    head_params: dict[str, Any] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Cross-validate and write ``report.md``, ``report.json`` and the PNGs into ``out``; returns the report document.

    ``progress(fits, total)``, if given, wraps the (model, fold) fits as they finish."""
    result = cross_validate(
        cache_path,
        models=models,
        n_folds=n_folds,
        head=make_head(head, **(head_params or {})),
        executor=executor,
        progress=progress,
    )
    with Cache(cache_path) as cache:
        fingerprint = cache.combined_fingerprint()
    config = {"head": head, "head_params": head_params or {}, "models": models or "all"}
    header = {"cache_fingerprint": fingerprint, "config": config, "version": mvemo_version()}
    return write_report(result, out, header=header)


def fuse_cache(
    cache_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    models: str | None = None,
    head: str = "logistic",
    head_params: dict[str, Any] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], Path]:
    """The CV report in ``out``, then every model's head trained on all clips, saved in ``out/model``."""
    document = run_cv(cache_path, out, models=models, head=head, head_params=head_params, executor=executor, progress=progress)
    with Cache(cache_path) as cache:  # the models the report kept: one without clips was left out with a note
        chosen = [model for model in select_models(cache, models) if model.name in document["models"]]
    heads = train_final(cache_path, chosen, make_head(head, **(head_params or {})))
    header = {key: document[key] for key in ("version", "protocol", "cache_fingerprint")} | {
        "head": head,
        "head_params": head_params or {},
        "cv_accuracy": {name: m["accuracy"]["mean"] for name, m in document["models"].items()},
    }
    return document, save_fusion_model(Path(out) / "model", cache_path, chosen, heads, header)
