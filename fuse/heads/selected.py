"""In-fold univariate feature selection for handcrafted sets: the logistic head over the columns that tell the
classes apart best, how many chosen on inner folds.

Each inner fold ranks the columns by their ANOVA F statistic over its own training rows (never its validation
rows), keeps the top share of them, and runs the logistic head's C path on those; the share and C of the best
pooled inner score win. The final ranking reads every training row. Selecting on all rows before the inner
folds would let the validation rows pick their own columns, and flatter small shares.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mvemo.fuse.heads.linear import LogisticHead, _groups, prepared, softmax_layer
from mvemo.fuse.heads.logistic_path import logistic_path
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.selection import SelectionConfig
from mvemo.manifests.errors import ConfigError, is_number
from mvemo.manifests.folds import inner_splits

SHARES = (0.05, 0.1, 0.25, 0.5, 1.0)
SHARE_RULE = (
    lambda v: isinstance(v, tuple | list) and bool(v) and all(is_number(s) and 0 < s <= 1 for s in v),
    "a list of shares in (0, 1]",
)


def ranked_columns(Z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Columns by their ANOVA F statistic over these rows, most telling first (a constant column scores 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant column's F is 0/0 ...
        warnings.simplefilter("ignore", UserWarning)  # ... which scikit-learn also warns of
        scores, _ = f_classif(Z, target)
    return np.argsort(-np.nan_to_num(scores, nan=0.0), kind="stable")


class SelectLogisticHead(LogisticHead):
    """The logistic head over the top ``share`` of columns by ANOVA F, the share chosen among ``shares`` and C
    among ``C_grid`` on inner folds that each rank the columns on their own training rows. Saved as any head: a
    linear softmax layer whose weights on the columns left out are 0.

    Attributes (beside the logistic head's)
    ---------------------------------------
    columns_ : ndarray of int
        The columns kept, ranked on every training row.
    selected_ : dict
        ``{"C": ..., "share": ..., "columns": ...}``.
    """

    PARAM_RULES: ClassVar = {
        **LogisticHead.PARAM_RULES,
        "shares": SHARE_RULE,
    }

    def __init__(
        self,
        shares: tuple[float, ...] = SHARES,
        C: float | None = None,
        max_iter: int = 300,
        tol: float = 1e-3,
        C_grid: tuple[float, ...] = SelectionConfig.C_grid,
        inner_folds: int = 5,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        super().__init__(C, max_iter, tol, C_grid, inner_folds, scoring, random_state)
        self.shares = shares

    def chooses(self) -> bool:
        return True

    def fit(self, X: Any, y: Any, groups: Any = None) -> SelectLogisticHead:
        if not self.shares:
            raise ConfigError(
                "select-logistic: shares is empty; give the shares of columns to try, e.g. [0.1, 0.5, 1.0]"
            )
        Z, y, target, mean, scale = prepared(self, X, y)
        splits = inner_splits(y, _groups(groups, len(y)), k=self.inner_folds, seed=self.random_state)
        ranks = [ranked_columns(Z[train], target[train]) for train, _ in splits]
        Cs = tuple(self.C_grid) if self.C is None else (self.C,)
        best: tuple[float, int, float, np.ndarray] = (-np.inf, 0, 0.0, np.zeros(0))
        with threadpool_limits(1):
            for share in sorted(self.shares):
                kept = max(1, math.ceil(share * Z.shape[1]))
                at, proba, scores = logistic_path(
                    Z,
                    target,
                    splits,
                    Cs=Cs,
                    scoring=self.scoring,
                    tol=self.tol,
                    max_iter=self.max_iter,
                    columns=[rank[:kept] for rank in ranks],
                )
                if scores[at] > best[0]:  # a tie keeps the fewer columns
                    best = (scores[at], kept, Cs[at], proba)
            _, kept, C, self.inner_proba_ = best
            self.columns_ = np.sort(ranked_columns(Z, target)[:kept])
            model = LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol).fit(Z[:, self.columns_], y)
        layer, bias = softmax_layer(model.coef_, model.intercept_, len(self.classes_))
        weights = np.zeros((len(self.classes_), Z.shape[1]))
        weights[:, self.columns_] = layer
        self.n_iter_ = int(np.max(model.n_iter_))
        self.selected_ = {"C": C, "share": kept / Z.shape[1], "columns": kept}
        self.linear_ = LinearSoftmax(
            self.classes_, *(np.asarray(a, dtype=np.float64) for a in (mean, scale, weights, bias))
        )
        return self
