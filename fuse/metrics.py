"""The metrics papers 001 and 002 report, computed honestly from out-of-fold predictions, with their intervals.

Intervals follow Nadeau & Bengio (2003): the fold scores of k-fold CV repeated R
times are not independent (their training rows overlap), so the variance of their
mean is the sample variance times 1/(kR) + n_test/n_train = 1/(kR) + 1/(k-1), with
a t quantile of kR - 1 degrees of freedom. The paired difference of two models over
the same folds gets the same correction (Bouckaert & Frank 2004).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import t as student_t
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score, roc_curve


def summarize(y: np.ndarray, proba: np.ndarray, folds: np.ndarray, n_folds: int) -> dict[str, Any]:
    """One run of k-fold CV: accuracy and macro F1 per fold (None for a fold without rows), pooled macro F1,
    one-vs-rest macro ROC-AUC, per-class precision, recall and F1, and the pooled confusion matrix as counts
    and with rows normalized.

    ``y`` holds class indices, ``proba`` (n, n_classes) out-of-fold probabilities.
    ROC-AUC is None when a class never occurs in ``y``.
    """
    n_classes = proba.shape[1]
    labels = np.arange(n_classes)
    pred = np.argmax(proba, axis=1)
    in_fold = [folds == k for k in range(n_folds)]
    auc = None
    if len(np.unique(y)) == n_classes and n_classes > 1:
        scores_for_auc = proba[:, 1] if n_classes == 2 else proba  # sklearn takes the positive class's score for two
        auc = float(roc_auc_score(y, scores_for_auc, multi_class="ovr", average="macro", labels=labels))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    confusion = confusion_matrix(y, pred, labels=labels)
    return {
        "accuracy": {"per_fold": [float(np.mean(pred[f] == y[f])) if np.any(f) else None for f in in_fold]},
        "f1_per_fold": [_f1(y[f], pred[f], labels) if np.any(f) else None for f in in_fold],
        "f1_macro": _f1(y, pred, labels),
        "roc_auc_macro": auc,
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(), "support": support.tolist()},
        "confusion": confusion.tolist(),
        "confusion_normalized": (confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)).tolist(),
        "n_rows": len(y),
    }


def _f1(y: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> float:
    return float(f1_score(y, pred, average="macro", labels=labels, zero_division=0))


def corrected_interval(scores: list[float], *, k: int, level: float = 0.95) -> list[float]:
    """The ``level`` interval of the mean of the fold scores of repeated k-fold CV (Nadeau & Bengio's correction)."""
    x = np.asarray(scores, dtype=np.float64)
    mean = float(np.mean(x))
    if len(x) < 2:
        return [mean, mean]
    half = float(student_t.ppf(0.5 + level / 2, len(x) - 1) * np.sqrt(np.var(x, ddof=1) * (1 / len(x) + 1 / (k - 1))))
    return [mean - half, mean + half]


def _present(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def summarize_repeats(runs: list[dict[str, Any]], *, k: int) -> dict[str, Any]:
    """One model's metrics over R runs of ``summarize`` (R repeats of k-fold CV), the first run's pooled
    figures (confusion, per class) kept as they are.

    ``accuracy``: mean, sample std, min and max over every fold of every repeat, the 95 % interval of the mean,
    the first repeat's ``per_fold``, each repeat's mean (``per_repeat``) and every fold score (``folds``).
    ``f1``: the same for per-fold macro F1. ``f1_macro`` and ``roc_auc_macro``: pooled per repeat, averaged.
    """
    metrics = dict(runs[0])
    accuracy = [_present(run["accuracy"]["per_fold"]) for run in runs]
    every = [a for rep in accuracy for a in rep]
    every_f1 = [v for run in runs for v in _present(run["f1_per_fold"])]
    aucs = [run["roc_auc_macro"] for run in runs]
    metrics |= {
        "accuracy": {
            "mean": float(np.mean(every)),
            "std": float(np.std(every, ddof=1)) if len(every) > 1 else 0.0,
            "min": min(every),
            "max": max(every),
            "interval": corrected_interval(every, k=k),
            "per_fold": runs[0]["accuracy"]["per_fold"],
            "per_repeat": [float(np.mean(rep)) for rep in accuracy],
            "folds": [run["accuracy"]["per_fold"] for run in runs],
        },
        "f1": {
            "mean": float(np.mean(every_f1)),
            "interval": corrected_interval(every_f1, k=k),
            "folds": [r["f1_per_fold"] for r in runs],
        },
        "f1_macro": float(np.mean([run["f1_macro"] for run in runs])),
        "roc_auc_macro": None if None in aucs else float(np.mean(aucs)),
        "repeats": len(runs),
    }
    return metrics


def compare(metrics: dict[str, dict[str, Any]], unimodal: list[str], *, k: int) -> dict[str, Any]:
    """Every model against the unimodal model of best mean accuracy, fold by fold over every repeat: the mean
    accuracy difference with its 95 % interval, the folds won, lost and tied, and each repeat's mean difference."""
    best = max(unimodal, key=lambda name: metrics[name]["accuracy"]["mean"])
    reference = metrics[best]["accuracy"]["folds"]
    models = {}
    for name, m in metrics.items():
        if name == best:
            continue
        pairs = [
            [a - b for a, b in zip(mine, theirs) if a is not None and b is not None]
            for mine, theirs in zip(m["accuracy"]["folds"], reference)
        ]
        every = [d for rep in pairs for d in rep]
        if every:
            models[name] = {
                "mean": float(np.mean(every)),
                "interval": corrected_interval(every, k=k),
                "won": sum(d > 0 for d in every),
                "lost": sum(d < 0 for d in every),
                "tied": sum(d == 0 for d in every),
                "per_repeat": [float(np.mean(rep)) if rep else None for rep in pairs],
            }
    return {"best_unimodal": best, "models": models}


def macro_roc(y: np.ndarray, proba: np.ndarray, grid: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Macro-average one-vs-rest ROC curve: each class's TPR on a common FPR grid, averaged."""
    fpr_grid = np.linspace(0, 1, grid)
    tprs = []
    for c in range(proba.shape[1]):
        if 0 < np.sum(y == c) < len(y):
            fpr, tpr, _ = roc_curve(y == c, proba[:, c])
            tprs.append(np.interp(fpr_grid, fpr, tpr))
    return fpr_grid, np.mean(tprs, axis=0) if tprs else np.zeros(grid)
