"""Cross-validation of the fusion models over the cache's own folds.

For test fold k, a head is fitted on the other folds' rows of the embeddings
written for fold k (nets fine-tuned without fold k) and predicts fold k. The
folds are the manifest's, stored in the cache: re-splitting would put clips that
trained a fold's nets into its test set.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mvemo.cache.read import Cache
from mvemo.fuse.heads import fit_head, make_head
from mvemo.fuse.metrics import mcnemar, summarize
from mvemo.fuse.models import FusionModel, features, fine_tuned_nets, protocol, resolve_sets, select_models
from mvemo.manifests.errors import CacheError, ConfigError
from mvemo.manifests.executor import Executor, Progress


@dataclass
class ModelPredictions:
    """Out-of-fold predictions of one model: rows of the cache, their true classes, folds and probabilities."""

    rows: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    proba: np.ndarray


@dataclass
class CvResult:
    classes: tuple[str, ...]
    n_folds: int
    protocol: str
    predictions: dict[str, ModelPredictions]
    fine_tuned: tuple[str, ...] = ()
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def check_folds(cache: Cache, n_folds: int | None) -> int:
    """The cache's number of folds; ``n_folds`` must agree (exit 2 otherwise)."""
    if len(cache) == 0 or cache.folds.min() < 0:
        raise CacheError(
            f"cache {str(cache.path)!r} has no folds; run `mvemo manifest folds MANIFEST --k 6`, then `mvemo extract` again"
        )
    stored = int(cache.folds.max()) + 1
    if n_folds is not None and n_folds != stored:
        raise ConfigError(
            f"--folds {n_folds}: the cache holds the manifest's {stored} folds, and re-splitting would put clips"
            f" that trained a fold's nets into its test set; use --folds {stored}"
        )
    return stored


@functools.lru_cache(maxsize=4)
def _matrix(
    cache_path: str, modified_ns: int, sets: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Features, usable rows, classes, folds and groups of ``sets``, read once per process for every fold that uses them."""
    with Cache(cache_path) as cache:
        X, usable = features(cache, sets)
        return X, usable, cache.y, cache.folds, np.array(cache.groups), len(cache.classes)


def fit_fold(
    cache_path: str | os.PathLike[str], model: FusionModel, fold: int, head: Any
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Fit ``head`` on the rows outside ``fold``: (test rows, probabilities over all classes, a note or None).

    The note says what the fold lacked: test rows, or classes among its training
    rows (those classes get probability 0; with fewer than two, every class 1/n).
    """
    with Cache(cache_path) as cache:
        sets = resolve_sets(cache, model.inputs, fold)
        classes = cache.classes
    X, usable, y, folds, groups, n_classes = _matrix(str(cache_path), os.stat(cache_path).st_mtime_ns, sets)
    train = np.flatnonzero(usable & (folds != fold))
    test = np.flatnonzero(usable & (folds == fold))
    proba = np.zeros((len(test), n_classes))
    if len(test) == 0:
        return test, proba, f"{model.name}, fold {fold}: no test clip has all of {', '.join(sets)}"
    absent = [classes[c] for c in range(n_classes) if not np.any(y[train] == c)]
    note = f"{model.name}, fold {fold}: no training clip of class {', '.join(absent)}" if absent else None
    if n_classes - len(absent) < 2:
        proba[:] = 1.0 / n_classes
        return test, proba, f"{note}; fewer than two classes to learn, every class predicted 1/{n_classes}"
    fitted = fit_head(head, X[train], y[train], groups[train])
    proba[:, fitted.classes_] = fitted.predict_proba(X[test])
    return test, proba, None if note is None else f"{note}, predicted with probability 0"


def cross_validate(
    cache_path: str | os.PathLike[str],
    *,
    models: str | None = None,
    n_folds: int | None = None,
    head: Any = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> CvResult:
    """Every model x every fold, metrics per model, and integrated vs the best unimodal model.

    Parameters
    ----------
    cache_path : path-like
    models : str, optional
        Comma-separated model names (``--models``); default all the cache can feed.
    n_folds : int, optional
        Must equal the cache's folds when given.
    head : estimator, optional
        A scikit-learn classifier, cloned per fit (default ``LogisticHead``).
    executor : object with ``map``, optional
        Where the (model, fold) fits run; serial by default.
    progress : callable, optional
        ``progress(fits, total)`` wraps the fits' results as they arrive (a progress bar).
    """
    head = head if head is not None else make_head()
    with Cache(cache_path) as cache:
        k = check_folds(cache, n_folds)
        chosen = select_models(cache, models)
        classes, y_all, folds_all, used_protocol = cache.classes, cache.y, cache.folds, protocol(cache)
        fine_tuned = tuple(fine_tuned_nets(cache))
    direct = [m for m in chosen if not m.averages]
    tasks = [(m, fold) for m in direct for fold in range(k)]
    mapper = map if executor is None else executor.map
    fit = functools.partial(fit_fold, cache_path, head=head)
    results = mapper(fit, [m for m, _ in tasks], [fold for _, fold in tasks])
    outputs = list(progress(results, len(tasks)) if progress else results)
    predictions: dict[str, ModelPredictions] = {}
    notes: list[str] = []
    for model in direct:
        parts = [out for (m, _), out in zip(tasks, outputs) if m == model]
        for out in parts:
            if isinstance(out, BaseException):
                raise out
        notes += [p[2] for p in parts if p[2] is not None]
        rows = np.concatenate([p[0] for p in parts])
        if len(rows):
            predictions[model.name] = ModelPredictions(rows, y_all[rows], folds_all[rows], np.concatenate([p[1] for p in parts]))
        else:
            notes.append(f"{model.name}: no clip has all its inputs in the cache; left out of the report")
    for model in (m for m in chosen if m.averages):
        missing = [name for name in model.averages if name not in predictions]
        if missing:
            notes.append(f"{model.name}: left out of the report with {', '.join(missing)}")
        else:
            predictions[model.name] = _average(model, predictions, y_all, folds_all)
    result = CvResult(tuple(classes), k, used_protocol, predictions, fine_tuned, notes=notes)
    result.metrics = {name: summarize(p.y, p.proba, p.folds, k) for name, p in predictions.items()}
    result.comparison = _compare(result, chosen)
    return result


def _average(model: FusionModel, predictions: dict[str, ModelPredictions], y: np.ndarray, folds: np.ndarray) -> ModelPredictions:
    """Decision-level fusion: the mean of the named models' probabilities on the rows they all predicted."""
    parts = [predictions[name] for name in model.averages]
    rows = functools.reduce(np.intersect1d, [p.rows for p in parts])
    proba = np.mean([p.proba[_rows_of(p, rows)] for p in parts], axis=0)
    return ModelPredictions(rows, y[rows], folds[rows], proba)


def _rows_of(p: ModelPredictions, rows: np.ndarray) -> np.ndarray:
    position = {int(r): i for i, r in enumerate(p.rows)}
    return np.array([position[int(r)] for r in rows], dtype=np.int64)


def _compare(result: CvResult, chosen: list[FusionModel]) -> dict[str, Any] | None:
    """The integrated model against the best unimodal one: per-fold accuracy differences and McNemar."""
    reported = [m for m in chosen if m.name in result.predictions]
    integrated = next((m.name for m in reported if m.name.startswith("integrated") and not m.averages), None)
    unimodal = [m.name for m in reported if m.kind == "unimodal"]
    if integrated is None or not unimodal:
        return None
    best = max(unimodal, key=lambda name: result.metrics[name]["accuracy"]["mean"])
    a, b = result.predictions[integrated], result.predictions[best]
    rows = np.intersect1d(a.rows, b.rows)
    pred_a = np.argmax(a.proba[_rows_of(a, rows)], axis=1)
    pred_b = np.argmax(b.proba[_rows_of(b, rows)], axis=1)
    folds = a.folds[_rows_of(a, rows)]
    y = a.y[_rows_of(a, rows)]
    differences = [
        float(np.mean(pred_a[folds == f] == y[folds == f]) - np.mean(pred_b[folds == f] == y[folds == f]))
        for f in range(result.n_folds)
        if np.any(folds == f)
    ]
    return {
        "integrated": integrated,
        "best_unimodal": best,
        "per_fold_accuracy_difference": differences,
        "mcnemar": mcnemar(y, pred_a, pred_b),
    }
