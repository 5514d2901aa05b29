"""Valence and arousal: nested cross-validation of value heads over the same models, and the metrics of regression.

For each outer fold of each repeat, every model is fitted on the other folds' rows (``fuse.targets.regression``: a
head per dimension (``[fuse] value_heads``: ridge by default) with its settings chosen on grouped inner folds, late
fusion as the mean, ``best`` and ``integrated`` by inner error) and predicts the fold. Folds of repeats are stratified
by quadrant, groups kept whole. Scores are also mapped to the quadrants at the middle of the manifest's scale and scored
as four classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from mvemo.cache.read import Cache, CacheLike, opened
from mvemo.fuse.loop import Basis, FoldFit, FoldInputs, FoldOutcome, Labels, run_folds
from mvemo.fuse.metrics import corrected_interval
from mvemo.fuse.models import FusionModel, per_patch_inputs
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.regression import fit_values
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.targets import QUADRANTS, VALUE_COLUMNS, quadrants, value_categories

VALUE_METRIC_DEFINITIONS = {
    "CCC": "Lin's concordance correlation coefficient, 2 cov(y, p) / (var y + var p + (mean y - mean p)^2): agreement"
    " in correlation, scale and offset; per test fold (mean and corrected 95 % interval over every fold of every"
    " repeat) and pooled over a repeat's clips",
    "R²": "1 - the squared error over the variance of the true values, pooled over a repeat's clips",
    "Pearson r": "the correlation of predicted and true values, pooled over a repeat's clips",
    "RMSE": "the root mean squared error in the scale's units, pooled over a repeat's clips",
    "quadrant accuracy": "the share of clips whose predicted (valence, arousal) lies in their quadrant, the middle of"
    " the scale dividing them; with its macro F1 and confusion matrix (rows true)",
}


def ccc(y: np.ndarray, pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two equally long vectors (0 where both are constant)."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    denominator = y.var() + pred.var() + (y.mean() - pred.mean()) ** 2
    return float(2 * np.mean((y - y.mean()) * (pred - pred.mean())) / denominator) if denominator > 0 else 0.0


def value_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """CCC, R², Pearson r and RMSE of one dimension's pooled predictions."""
    residual = np.mean((y - pred) ** 2)
    pearson = float(np.corrcoef(y, pred)[0, 1]) if y.std() > 0 and pred.std() > 0 else 0.0
    r2 = float(1 - residual / y.var()) if y.var() > 0 else 0.0
    return {"ccc": ccc(y, pred), "r2": r2, "pearson": pearson, "rmse": float(np.sqrt(residual))}


@dataclass
class ValuePredictions:
    """Out-of-fold predictions of one model in one repeat: cache rows, their folds, true and predicted values
    (n_rows, n_dims), and per fold what the inner folds chose (``choices``, the map onto the ratings' scale among
    them) and in a few words (``described``)."""

    rows: np.ndarray
    folds: np.ndarray
    values: np.ndarray
    pred: np.ndarray
    described: list[str] = field(default_factory=list)
    choices: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValuesResult:
    names: tuple[str, ...]
    scale: tuple[float, float]
    n_folds: int
    repeats: list[dict[str, ValuePredictions]]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # the clips each model used and those it left out with why (``fuse.cv.clip_counts``, per quadrant)
    clips: dict[str, Any] = field(default_factory=dict)
    # models that no fold could score, each with the reason: reported so, never with a figure
    unscored: dict[str, str] = field(default_factory=dict)
    basis: Basis | None = None  # what the run scored from, for the final model (``fuse.loop.Basis``)


@dataclass(frozen=True)
class Values:
    """The target of values per clip (valence, arousal): value heads over the model trees, their settings chosen on
    grouped inner folds stratified by quadrant (``fuse.targets.regression``; ``fuse.loop.TargetKind``)."""

    labels: Labels
    values: np.ndarray
    selection: SelectionConfig

    def fitter(self, groups: list[str], inputs: FoldInputs) -> FoldFit:
        def fit_one(
            model: FusionModel, read: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, fold: int
        ) -> FoldOutcome:
            blocks = {i: X[train] for i, X in read.items()}
            fitted = fit_values(
                model.node,
                blocks,
                self.values[train],
                groups=[groups[r] for r in train],
                strata=self.labels.strata[train],
                selection=self.selection,
                in_sample=inputs.in_sample,
            )
            predicted = fitted.predict({i: X[test] for i, X in read.items()})
            return FoldOutcome(test, predicted, choices=fitted.choices(), described=fitted.describe())

        return fit_one


def cross_validate_values(
    cache: CacheLike,
    *,
    names: tuple[str, ...] | None = None,
    selection: SelectionConfig | None = None,
    **options: Any,
) -> ValuesResult:
    """Every model x every fold x every repeat for the value dimensions ``names`` (default every one the cache
    holds: valence, arousal), in the loop of ``fuse.loop.run_folds`` (whose ``options`` it takes: models, n_folds,
    repeats, executor, progress, run), with the metrics of ``VALUE_METRIC_DEFINITIONS``.

    Raises
    ------
    ConfigError
        When the cache holds no such values, or a model reads per-patch inputs (their heads are classifiers).
    """
    selection = selection or SelectionConfig()
    with opened(cache) as cache:
        targets = cache.targets
        names = names or targets.value_names
        absent = [n for n in names if n not in targets.value_names]
        if not targets.value_names or absent:
            raise ConfigError(
                f"cache {str(cache.path)!r} holds no {', '.join(absent or VALUE_COLUMNS)} values (it has"
                f" {list(targets.value_names)}); give the manifest those columns and a '# scale:' line, then run"
                " `mvemo extract` again to store them"
            )
        strata = quadrants(targets.values, targets.scale)  # type: ignore[arg-type]
        values = targets.values[:, [targets.value_names.index(n) for n in names]]
        kind = Values(Labels(value_categories(len(targets.value_names)), strata, strata), values, selection)

        def regression(cache: Cache, chosen: list[FusionModel]) -> Values:
            patched = [m.name for m in chosen if set(m.inputs) & set(per_patch_inputs(cache, m.inputs))]
            if patched:
                raise ConfigError(
                    f"--target values: {', '.join(patched)} read per-patch inputs, whose heads are classifiers;"
                    " name other models"
                )
            return kind

        runs = run_folds(cache, regression, **options)
    per_repeat = []
    for r, folds in enumerate(runs.repeat_folds):
        predictions = {}
        for model in runs.models:
            pieces = runs.pooled(r, model.name)
            if pieces:
                rows = np.concatenate([p.rows for p in pieces])
                pred = np.concatenate([p.pred for p in pieces])
                described, choices = [p.described for p in pieces], [p.choices for p in pieces]
                predictions[model.name] = ValuePredictions(rows, folds[rows], values[rows], pred, described, choices)
        per_repeat.append(predictions)
    result = ValuesResult(
        tuple(names),
        targets.scale,  # type: ignore[arg-type]
        runs.n_folds,
        per_repeat,
        notes=runs.notes,
        clips=runs.clips,
        basis=runs.basis,
    )
    result.unscored = {
        m.name: "no clip has all its inputs in the cache (see the clips table)"
        for m in runs.models
        if m.name not in per_repeat[0]
    }
    result.notes += [f"{name}: not scored: {why}" for name, why in result.unscored.items()]
    result.metrics = {name: summarize_values(result, name) for name in per_repeat[0]}
    return result


def summarize_values(result: ValuesResult, model: str) -> dict[str, Any]:
    """Per dimension, each pooled metric's mean over repeats and the per-fold CCC's mean and corrected interval;
    with both dimensions, the quadrant mapping's accuracy, macro F1 and confusion (pooled, summed over repeats)."""
    runs = [rep[model] for rep in result.repeats if model in rep]
    summary: dict[str, Any] = {"repeats": len(runs), "n_rows": len(runs[0].rows)}
    for d, name in enumerate(result.names):
        pooled = [value_metrics(p.values[:, d], p.pred[:, d]) for p in runs]
        per_fold = [ccc(p.values[p.folds == f, d], p.pred[p.folds == f, d]) for p in runs for f in np.unique(p.folds)]
        summary[name] = {key: float(np.mean([m[key] for m in pooled])) for key in pooled[0]} | {
            "ccc_per_fold": {
                "mean": float(np.mean(per_fold)),
                "interval": corrected_interval(per_fold, k=result.n_folds, bounds=(-1.0, 1.0)),
                "min": float(np.min(per_fold)),
                "max": float(np.max(per_fold)),
            }
        }
    if result.names == VALUE_COLUMNS:
        true = np.concatenate([quadrants(p.values, result.scale) for p in runs])
        pred = np.concatenate([quadrants(p.pred, result.scale) for p in runs])
        labels = np.arange(len(QUADRANTS))
        summary["quadrants"] = {
            "accuracy": float(np.mean(true == pred)),
            "f1_macro": float(f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
            "confusion": confusion_matrix(true, pred, labels=labels).tolist(),
        }
    return summary
