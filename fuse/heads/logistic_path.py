"""The logistic head's regularization path: C chosen on inner folds, each fold's model warm-started up the grid."""

from __future__ import annotations

import numpy as np
from sklearn import config_context
from sklearn.linear_model import LogisticRegression

from mvemo.fuse.selection import PATH_PATIENCE, inner_score

# The path's fits stop at this many times the head's tolerance (2.5x faster; the same C chosen in every fold of
# `mvemo bench fuse`); the chosen C's fits then go on, warm-started, to the head's tolerance.
PATH_TOL_FACTOR = 10


def logistic_path(
    Z: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    Cs: tuple[float, ...],
    scoring: str,
    tol: float,
    max_iter: int,
    columns: list[np.ndarray] | None = None,
) -> tuple[int, np.ndarray, list[float]]:
    """C chosen on inner folds for L-BFGS multinomial logistic regression of standardized ``Z`` on classes ``y``
    (each inner fold on its own ``columns`` of ``Z`` where given: those its training rows selected).

    Each inner fold's model runs up the grid warm-started from the previous C, to
    ``PATH_TOL_FACTOR * tol``, and the path stops ``PATH_PATIENCE[scoring]`` steps
    past the best pooled score; the models then return to the best C and converge
    to ``tol``, for the out-of-fold probabilities returned.
    (LogisticRegressionCV runs such a path too, but keeps no out-of-fold
    probabilities, which stacking and the choice of ``integrated`` read, and its
    attributes changed shape between scikit-learn 1.6 and 1.9.)

    Returns
    -------
    best : int
        Index into ``Cs`` of the best score (the smallest C on a tie).
    proba : ndarray, shape (n, n_classes)
        Out-of-fold probabilities at that C.
    scores : list of float
        The pooled score of each C tried.
    """
    n_classes = int(y.max()) + 1
    models = [
        LogisticRegression(C=Cs[0], warm_start=True, tol=PATH_TOL_FACTOR * tol, max_iter=max_iter) for _ in splits
    ]

    def out_of_fold(C: float) -> np.ndarray:
        proba = np.zeros((len(y), n_classes))
        # Z is standardized from rows checked once by the head: scikit-learn need not scan them again per fit.
        with config_context(assume_finite=True):
            for i, (model, (train, val)) in enumerate(zip(models, splits)):
                Zi = Z if columns is None else Z[:, columns[i]]
                model.set_params(C=C).fit(Zi[train], y[train])
                proba[np.ix_(val, model.classes_)] = model.predict_proba(Zi[val])
        return proba

    scores = []
    for C in Cs:
        scores.append(inner_score(y, out_of_fold(C), scoring))
        if len(scores) - 1 - int(np.argmax(scores)) >= PATH_PATIENCE[scoring]:
            break
    best = int(np.argmax(scores))
    for model in models:
        model.set_params(tol=tol)
    return best, out_of_fold(Cs[best]), scores
