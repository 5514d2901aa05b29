"""Decision values made probabilities: softmax(T x scores), the temperature T fitted on out-of-fold scores (the
SVM heads of ``families`` and ``kernel``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from mvemo.fuse.selection import EPS, PATH_PATIENCE, inner_score

ABSENT_LOGIT = -1e3  # the logit of a class the training rows lack: probability 0, as the logistic head gives it


def cross_fitted(scores: np.ndarray, target: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Probabilities of out-of-fold ``scores``, each inner fold's at the temperature fitted to the other folds'
    scores: a temperature fitted to the rows it is scored on would flatter the SVM against the other families."""
    proba = np.zeros_like(scores)
    for _, val in splits:
        others = np.setdiff1d(np.arange(len(target)), val)
        proba[val] = softmax(fitted_temperature(scores[others], target[others]) * scores[val], axis=1)
    return proba


def fitted_temperature(scores: np.ndarray, target: np.ndarray) -> float:
    """The T > 0 that minimizes the log-loss of softmax(T x scores) for classes ``target`` (a convex problem in T)."""

    def loss(log_t: float) -> float:
        logits = np.exp(log_t) * scores
        logits -= logits.max(axis=1, keepdims=True)
        picked = logits[np.arange(len(target)), target] - np.log(np.exp(logits).sum(axis=1))
        return float(-np.mean(np.maximum(picked, np.log(EPS))))  # a class a fold never saw costs -log EPS, not T x 1000

    return float(np.exp(minimize_scalar(loss, bounds=(-8.0, 8.0), method="bounded").x))


def temperature_path(
    C_grid: tuple[float, ...],
    scores_at: Callable[[float, np.ndarray, np.ndarray], np.ndarray],
    target: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    scoring: str,
) -> list[tuple[float, float, float, np.ndarray]]:
    """Up ``C_grid`` until ``PATH_PATIENCE`` steps past the best: at each C the inner folds' out-of-fold decision
    values (``scores_at(C, train, val)``: those of the validation rows, fitted on the training rows), their
    probabilities at cross-fitted temperatures (``cross_fitted``) and their inner score; returns (score, C,
    temperature fitted to all of them, probabilities) per C tried."""
    tried: list[tuple[float, float, float, np.ndarray]] = []
    for C in C_grid:
        scores = np.zeros((len(target), n_classes))
        for train, val in splits:
            scores[val] = scores_at(C, train, val)
        proba = cross_fitted(scores, target, splits)
        tried.append((inner_score(target, proba, scoring), C, fitted_temperature(scores, target), proba))
        if len(tried) - 1 - int(np.argmax([t[0] for t in tried])) >= PATH_PATIENCE[scoring]:
            break
    return tried
