"""The metrics papers 001 and 002 report, computed honestly from out-of-fold predictions, with their intervals
(``METRIC_DEFINITIONS`` says how each is pooled; a report prints it).

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
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_curve, roc_auc_score, roc_curve

METRIC_DEFINITIONS = {
    "accuracy": "the share of a test fold's clips whose most probable class is their class, averaged over every test"
    " fold of every repeat, each fold weighing the same; min-max over those folds",
    "95% interval": "the t interval of that mean with the fold scores' variance corrected for their overlapping"
    " training rows (Nadeau & Bengio 2003)",
    "pooled accuracy": "the share of all out-of-fold predictions of a repeat that are right (each clip weighing the"
    " same), averaged over repeats",
    "F1 macro": "the mean over classes of F1, computed on all out-of-fold predictions of a repeat pooled, averaged over"
    " repeats (per-fold F1 of ~20 clips is biased low, so it is not used)",
    "ROC-AUC": "one-vs-rest ROC-AUC per class, averaged over classes, on all out-of-fold probabilities of a repeat"
    " pooled, averaged over repeats",
    "paired difference": "per test fold of every repeat, a model's accuracy minus the reference's on the clips both"
    " score; its mean, corrected 95 % interval, and the folds won-lost",
}


def summarize(y: np.ndarray, proba: np.ndarray, folds: np.ndarray, n_folds: int) -> dict[str, Any]:
    """One run of k-fold CV: accuracy per fold (None for a fold without rows), pooled accuracy, pooled macro F1,
    one-vs-rest macro ROC-AUC and the pooled confusion matrix (counts, rows true).

    ``y`` holds class indices, ``proba`` (n, n_classes) out-of-fold probabilities, at least one row.
    ROC-AUC is None when a class never occurs in ``y``.
    """
    if len(y) == 0:
        raise ValueError("summarize: no rows; a model without scored rows is reported as not scored")
    n_classes = proba.shape[1]
    labels = np.arange(n_classes)
    pred = np.argmax(proba, axis=1)
    auc = None
    if len(np.unique(y)) == n_classes and n_classes > 1:
        scores_for_auc = proba[:, 1] if n_classes == 2 else proba  # sklearn takes the positive class's score for two
        auc = float(roc_auc_score(y, scores_for_auc, multi_class="ovr", average="macro", labels=labels))
    return {
        "accuracy": {
            "per_fold": [
                float(np.mean(pred[f] == y[f])) if np.any(f) else None for f in (folds == k for k in range(n_folds))
            ]
        },
        "accuracy_pooled": float(np.mean(pred == y)),
        "f1_macro": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "roc_auc_macro": auc,
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
        "n_rows": len(y),
    }


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score at and above which calling rows positive gives the best F1 on these rows (``y`` 0/1); 0.5 where
    no row is positive. Chosen on inner folds' out-of-fold scores, it is the threshold a tag is scored at."""
    if not np.any(y == 1):
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def corrected_interval(
    scores: list[float], *, k: int, level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
) -> list[float]:
    """The ``level`` interval of the mean of the fold scores of repeated k-fold CV (Nadeau & Bengio's correction),
    clipped to the ``bounds`` the score can take (an accuracy's 0-1, a difference's -1-1)."""
    x = np.asarray(scores, dtype=np.float64)
    mean = float(np.mean(x))
    if len(x) < 2:
        return [mean, mean]
    half = float(student_t.ppf(0.5 + level / 2, len(x) - 1) * np.sqrt(np.var(x, ddof=1) * (1 / len(x) + 1 / (k - 1))))
    return [max(bounds[0], mean - half), min(bounds[1], mean + half)]


def _present(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def mean_present(values: list[float | None]) -> float | None:
    """The mean of the values that are not None (None where none is)."""
    present = _present(values)
    return float(np.mean(present)) if present else None


def summarize_repeats(runs: list[dict[str, Any]], *, k: int) -> dict[str, Any]:
    """One model's metrics over R runs of ``summarize`` (R repeats of k-fold CV).

    ``accuracy``: mean, sample std, min and max over every fold of every repeat, the 95 % interval of the mean,
    the first repeat's ``per_fold``, each repeat's mean (``per_repeat``) and every fold score (``folds``).
    ``accuracy_pooled``, ``f1_macro`` and ``roc_auc_macro``: per repeat on its pooled predictions (``per_repeat``),
    and their mean. ``confusion`` is summed over the repeats (each clip counted once per repeat), and ``per_class``
    precision, recall and F1 come from it; ``support`` counts a class's clips in one repeat.
    """
    accuracy = [_present(run["accuracy"]["per_fold"]) for run in runs]
    every = [a for rep in accuracy for a in rep]
    aucs = [run["roc_auc_macro"] for run in runs]
    confusion = np.sum([run["confusion"] for run in runs], axis=0)
    right = np.diag(confusion).astype(np.float64)
    precision = right / np.maximum(confusion.sum(axis=0), 1)
    recall = right / np.maximum(confusion.sum(axis=1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {
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
        "accuracy_pooled": _over_repeats([run["accuracy_pooled"] for run in runs]),
        "f1_macro": float(np.mean([run["f1_macro"] for run in runs])),
        "f1_macro_per_repeat": [run["f1_macro"] for run in runs],
        "roc_auc_macro": None if None in aucs else float(np.mean(aucs)),
        "roc_auc_per_repeat": aucs,
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": (confusion.sum(axis=1) // len(runs)).tolist(),
        },
        "confusion": confusion.tolist(),
        "confusion_normalized": (confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)).tolist(),
        "n_rows": runs[0]["n_rows"],
        "repeats": len(runs),
    }


def _over_repeats(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "per_repeat": values}


def paired_differences(
    mine: list[list[np.ndarray]], theirs: list[list[np.ndarray]], *, k: int
) -> dict[str, Any] | None:
    """A model against the reference, fold by fold over every repeat, on the clips both score.

    ``mine[r][f]`` and ``theirs[r][f]`` are the (m, 2) arrays of (row, right or wrong) of repeat r's test fold f.
    Returns the mean accuracy difference with its 95 % interval, the folds won, lost and tied, the clips
    compared per fold on average and each repeat's mean difference; None where no fold has a clip both score.
    """
    per_repeat: list[list[float]] = []
    compared = []
    for my_folds, their_folds in zip(mine, theirs):
        differences = []
        for a, b in zip(my_folds, their_folds):
            common, ia, ib = np.intersect1d(a[:, 0], b[:, 0], return_indices=True)
            if len(common):
                differences.append(float(np.mean(a[ia, 1]) - np.mean(b[ib, 1])))
                compared.append(len(common))
        per_repeat.append(differences)
    every = [d for rep in per_repeat for d in rep]
    if not every:
        return None
    return {
        "mean": float(np.mean(every)),
        "interval": corrected_interval(every, k=k, bounds=(-1.0, 1.0)),
        "won": sum(d > 0 for d in every),
        "lost": sum(d < 0 for d in every),
        "tied": sum(d == 0 for d in every),
        "clips_per_fold": float(np.mean(compared)),
        "per_repeat": [float(np.mean(rep)) if rep else None for rep in per_repeat],
    }


def paired(mine: list[list[float | None]], theirs: list[list[float | None]], *, k: int) -> dict[str, Any]:
    """``mine`` less ``theirs`` fold by fold: the mean, its corrected 95 % interval and the folds won-lost."""
    d = [a - b for ra, rb in zip(mine, theirs) for a, b in zip(ra, rb) if a is not None and b is not None]
    return {
        "mean": float(np.mean(d)),
        "interval": corrected_interval(d, k=k, bounds=(-1.0, 1.0)),
        "won": sum(x > 0 for x in d),
        "lost": sum(x < 0 for x in d),
    }


def sign_agreement(
    values: np.ndarray | list[list[float]], truth: list[str], scale: tuple[float, float]
) -> dict[str, Any]:
    """How (valence, arousal) predictions ``values`` (n, 2) on ``scale`` agree with quadrant labels ``truth`` (Q1..Q4,
    of another data set: Russell's plane seen from there) by their signs: the ROC-AUC of valence for Q1 and Q4 above
    Q2 and Q3, of arousal for Q1 and Q2 above Q3 and Q4 (None where one side has no clip), and the share of clips
    whose predicted quadrant is their label."""
    from mvemo.manifests.targets import QUADRANTS, quadrants

    values = np.asarray(values, dtype=float)
    index = np.array([QUADRANTS.index(q) for q in truth])

    def auc(high: np.ndarray, scores: np.ndarray) -> float | None:
        return float(roc_auc_score(high, scores)) if 0 < high.sum() < len(high) else None

    return {
        "clips": len(truth),
        "valence_roc_auc": auc(np.isin(index, (0, 3)), values[:, 0]),
        "arousal_roc_auc": auc(np.isin(index, (0, 1)), values[:, 1]),
        "quadrant_accuracy": float(np.mean(quadrants(values, scale) == index)),
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
