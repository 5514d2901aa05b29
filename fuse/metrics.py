"""The metrics papers 001 and 002 report, computed honestly from pooled out-of-fold predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score, roc_curve


def fold_accuracies(y: np.ndarray, pred: np.ndarray, folds: np.ndarray, n_folds: int) -> list[float | None]:
    """Accuracy on each test fold (None for a fold with no usable rows)."""
    return [float(np.mean(pred[folds == k] == y[folds == k])) if np.any(folds == k) else None for k in range(n_folds)]


def summarize(y: np.ndarray, proba: np.ndarray, folds: np.ndarray, n_folds: int) -> dict[str, Any]:
    """Accuracy min/mean/max/std and per fold, macro F1, one-vs-rest macro ROC-AUC, pooled confusion matrix.

    ``y`` holds class indices, ``proba`` (n, n_classes) out-of-fold probabilities.
    ROC-AUC is None when a class never occurs in ``y``.
    """
    n_classes = proba.shape[1]
    pred = np.argmax(proba, axis=1)
    per_fold = fold_accuracies(y, pred, folds, n_folds)
    scores = [a for a in per_fold if a is not None]
    present = np.unique(y)
    auc = None
    if len(present) == n_classes and n_classes > 1:
        scores_for_auc = proba[:, 1] if n_classes == 2 else proba  # sklearn takes the positive class's score for two
        auc = float(roc_auc_score(y, scores_for_auc, multi_class="ovr", average="macro", labels=np.arange(n_classes)))
    return {
        "accuracy": {
            "min": min(scores),
            "mean": float(np.mean(scores)),
            "max": max(scores),
            "std": float(np.std(scores)),
            "per_fold": per_fold,
        },
        "f1_macro": float(f1_score(y, pred, average="macro", labels=np.arange(n_classes), zero_division=0)),
        "roc_auc_macro": auc,
        "confusion": confusion_matrix(y, pred, labels=np.arange(n_classes)).tolist(),
        "n_rows": len(y),
    }


def macro_roc(y: np.ndarray, proba: np.ndarray, grid: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Macro-average one-vs-rest ROC curve: each class's TPR on a common FPR grid, averaged."""
    fpr_grid = np.linspace(0, 1, grid)
    tprs = []
    for c in range(proba.shape[1]):
        if 0 < np.sum(y == c) < len(y):
            fpr, tpr, _ = roc_curve(y == c, proba[:, c])
            tprs.append(np.interp(fpr_grid, fpr, tpr))
    return fpr_grid, np.mean(tprs, axis=0) if tprs else np.zeros(grid)


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test on paired predictions: how often only A is right, only B, and the two-sided p."""
    only_a = int(np.sum((pred_a == y) & (pred_b != y)))
    only_b = int(np.sum((pred_a != y) & (pred_b == y)))
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": p}
