"""Head families beside the logistic head, and the choice among them on inner folds.

Shrinkage LDA, PCA-whitened logistic regression and a linear SVM calibrated by temperature each end, like the
logistic head, in one linear softmax layer over standardized inputs (``LinearSoftmax``): a saved model stores
any of them the same way, without pickle. ``ChosenHead`` fits the families that ``[fuse] heads`` names, each
choosing its own settings on the same inner folds, and keeps the one whose inner out-of-fold probabilities
score best.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import unique_labels
from threadpoolctl import threadpool_limits

from mvemo.fuse.heads.kernel import KernelSvmHead
from mvemo.fuse.heads.linear import (
    COUNT,
    SEED,
    LogisticHead,
    SoftmaxHead,
    _ChoosingHead,
    _groups,
    _LinearHead,
    fit_head,
    prepared,
    softmax_layer,
)
from mvemo.fuse.heads.selected import SHARES, SelectLogisticHead
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.heads.temperature import ABSENT_LOGIT, temperature_path
from mvemo.fuse.selection import SelectionConfig, decades, inner_score
from mvemo.manifests.errors import ConfigError, is_number


def principal_axes(Zc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, of ``Zc.T @ Zc / n``) and their unit axes (columns), of rows ``Zc`` already centred:
    through the smaller of the Gram and the covariance matrix, so 900 rows of 8,000 columns cost a 900-square one."""
    n, d = Zc.shape
    if d <= n:
        values, axes = np.linalg.eigh(Zc.T @ Zc / n)
    else:
        values, left = np.linalg.eigh(Zc @ Zc.T / n)
        keep = values > 1e-12 * max(values.max(), 1e-300)
        values, left = values[keep], left[:, keep]
        axes = Zc.T @ left / np.sqrt(n * values)
    order = np.argsort(values)[::-1]
    return np.maximum(values[order], 0.0), axes[:, order]


class LdaHead(_ChoosingHead):
    """Standardization + linear discriminant analysis with a shrunk pooled covariance: (1 - a) S + a (tr S / d) I,
    S the within-class covariance of the training rows, ``a`` chosen from ``shrinkage_grid`` on inner folds (or
    ``shrinkage``), class priors their shares of the rows. What scikit-learn's ``LinearDiscriminantAnalysis(
    solver="lsqr", shrinkage=a)`` computes (tested), in the span of the rows: 8,000 columns need no 8,000-square
    matrix."""

    PARAM_RULES: ClassVar = {
        "shrinkage": (lambda v: v is None or (is_number(v) and 0 < v <= 1), "a share in (0, 1], or none to choose it"),
        "random_state": SEED,
    }

    def __init__(
        self,
        shrinkage: float | None = None,
        shrinkage_grid: tuple[float, ...] = (0.01, 0.1, 0.3, 0.6, 0.9),
        inner_folds: int = 5,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        self.shrinkage = shrinkage
        self.shrinkage_grid = shrinkage_grid
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.random_state = random_state

    def chooses(self) -> bool:
        return self.shrinkage is None

    def fit(self, X: Any, y: Any, groups: Any = None) -> LdaHead:
        Z, y, target, mean, scale = prepared(self, X, y)
        n_classes = len(self.classes_)
        shrinkage, self.selected_, self.inner_proba_ = self.shrinkage, {}, None
        with threadpool_limits(1):
            if shrinkage is None:
                grid = tuple(self.shrinkage_grid)
                probas = np.zeros((len(grid), len(target), n_classes))
                for train, val in self._splits(y, groups):
                    discriminant = Discriminant(Z[train], target[train], n_classes)
                    for i, a in enumerate(grid):
                        weights = discriminant.weights(a)
                        probas[i, val] = softmax(Z[val] @ weights.T + discriminant.bias_of(weights), axis=1)
                scores = [inner_score(target, p, self.scoring) for p in probas]
                best = int(np.argmax(scores))
                shrinkage, self.inner_proba_ = grid[best], probas[best]
                self.selected_ = {"shrinkage": shrinkage}
            discriminant = Discriminant(Z, target, n_classes)
            weights = discriminant.weights(shrinkage)
        self.linear_ = LinearSoftmax(self.classes_, mean, scale, weights, discriminant.bias_of(weights))
        return self


class Discriminant:
    """The pieces of LDA on rows ``Z`` of classes ``target`` that every shrinkage shares."""

    def __init__(self, Z: np.ndarray, target: np.ndarray, n_classes: int) -> None:
        counts = np.bincount(target, minlength=n_classes)
        self.means = np.stack(
            [Z[target == k].mean(axis=0) if counts[k] else np.zeros(Z.shape[1]) for k in range(n_classes)]
        )
        self.log_priors = np.where(counts > 0, np.log(np.maximum(counts, 1) / len(target)), ABSENT_LOGIT)  # absent: ~0
        self.values, self.axes = principal_axes(Z - self.means[target])
        self.level = max(float(self.values.sum()) / Z.shape[1], 1e-12)  # tr S / d
        self.projected = self.means @ self.axes  # the class means on the axes

    def weights(self, shrinkage: float) -> np.ndarray:
        """Each class's mean times the inverse of the shrunk covariance, rows by class."""
        inside = 1.0 / ((1 - shrinkage) * self.values + shrinkage * self.level)
        outside = 1.0 / (shrinkage * self.level)
        return (self.projected * (inside - outside)) @ self.axes.T + self.means * outside

    def bias_of(self, weights: np.ndarray) -> np.ndarray:
        return -0.5 * np.einsum("kd,kd->k", self.means, weights) + self.log_priors


class PcaLogisticHead(LogisticHead):
    """Standardization, whitening onto the principal components that hold ``variance`` of the training rows'
    variance, then the logistic head (C chosen on inner folds, or ``C``). Folded into one linear layer over the
    standardized inputs. The components read no label: the inner validation rows share them, as the
    standardization."""

    PARAM_RULES: ClassVar = {
        **LogisticHead.PARAM_RULES,
        "variance": (lambda v: is_number(v) and 0 < v <= 1, "a share in (0, 1]"),
    }

    def __init__(
        self,
        variance: float = 0.95,
        C: float | None = None,
        max_iter: int = 300,
        tol: float = 1e-3,
        C_grid: tuple[float, ...] = SelectionConfig.C_grid,
        inner_folds: int = 5,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        super().__init__(C, max_iter, tol, C_grid, inner_folds, scoring, random_state)
        self.variance = variance

    def fit(self, X: Any, y: Any, groups: Any = None) -> PcaLogisticHead:
        Z, y, _, mean, scale = prepared(self, X, y)
        with threadpool_limits(1):
            values, axes = principal_axes(Z - Z.mean(axis=0))
        if not values.size or values[0] <= 0:
            raise ConfigError("pca-logistic: the training rows are all equal; there is no component to whiten onto")
        share = np.cumsum(values) / max(values.sum(), 1e-300)
        kept = min(int(np.searchsorted(share, self.variance - 1e-12)) + 1, int(np.sum(values > 1e-12 * values[0])))
        whitening = axes[:, :kept] / np.sqrt(np.maximum(values[:kept], 1e-300))
        params = {k: v for k, v in self.get_params().items() if k != "variance"}
        logistic = LogisticHead(**params).fit((Z - Z.mean(axis=0)) @ whitening, y, groups)
        inner = logistic.linear_
        on_components = inner.weights / inner.scale
        weights = on_components @ whitening.T
        bias = inner.bias - on_components @ inner.mean - weights @ Z.mean(axis=0)
        self.linear_ = LinearSoftmax(self.classes_, mean, scale, weights, bias)
        self.selected_ = {**logistic.selected_, "components": kept}
        self.n_iter_ = logistic.n_iter_
        self.inner_proba_ = logistic.inner_proba_
        return self


class SvmHead(_ChoosingHead):
    """Standardization + a linear SVM (one-vs-rest, squared hinge, liblinear) whose decision values become
    probabilities by temperature scaling: softmax(T x scores). C is chosen on inner folds, up ``C_grid`` until a
    step past the best; each inner fold's probabilities take the temperature fitted (log-loss) to the other inner
    folds' out-of-fold scores, and the final SVM the one fitted to all of them. liblinear stopping at ``max_iter``
    before its tolerance (large C) still gives a linear model, scored as any other: its warning is silenced."""

    PARAM_RULES: ClassVar = {"max_iter": COUNT, "random_state": SEED}

    def __init__(
        self,
        C_grid: tuple[float, ...] = decades(1e-5, 1e-1),
        max_iter: int = 1000,
        inner_folds: int = 5,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        self.C_grid = C_grid
        self.max_iter = max_iter
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.random_state = random_state

    def chooses(self) -> bool:
        return True

    def fit(self, X: Any, y: Any, groups: Any = None) -> SvmHead:
        Z, y, target, mean, scale = prepared(self, X, y)
        splits = self._splits(y, groups)

        def scores_at(C: float, train: np.ndarray, val: np.ndarray) -> np.ndarray:
            weights, bias = self._svm(Z[train], target[train], C)
            return Z[val] @ weights.T + bias

        with threadpool_limits(1):
            tried = temperature_path(self.C_grid, scores_at, target, splits, len(self.classes_), self.scoring)
            _, C, temperature, self.inner_proba_ = max(tried, key=lambda t: t[0])
            weights, bias = self._svm(Z, target, C)
        self.selected_ = {"C": C, "temperature": temperature}
        self.linear_ = LinearSoftmax(self.classes_, mean, scale, temperature * weights, temperature * bias)
        return self

    def _svm(self, Z: np.ndarray, target: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
        """One SVM's weights and bias over every class (a class the rows lack scores a constant low; two classes:
        the one score as the second class's logit)."""
        n_classes = len(self.classes_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm = LinearSVC(C=C, max_iter=self.max_iter, random_state=self.random_state).fit(Z, target)
        self.n_iter_ = int(svm.n_iter_)  # the last fit's: the final SVM's once fit returns
        weights, bias = softmax_layer(svm.coef_, svm.intercept_, len(svm.classes_))
        full_weights, full_bias = np.zeros((n_classes, Z.shape[1])), np.full(n_classes, ABSENT_LOGIT)
        full_weights[svm.classes_], full_bias[svm.classes_] = weights, bias
        return full_weights, full_bias


class ChosenHead(_LinearHead):
    """The family of best inner score among ``candidates`` ((name, head) pairs whose heads choose their settings on
    inner folds; those folds are the same for all, drawn by the same seed). ``selected_`` names it (under ``key``)
    with its own choices; ``inner_scores_`` holds every family's."""

    def __init__(
        self, candidates: tuple[tuple[str, Any], ...] = (), scoring: str = "log_loss", key: str = "head"
    ) -> None:
        self.candidates = candidates
        self.scoring = scoring
        self.key = key

    def chooses(self) -> bool:
        return True

    def fit(self, X: Any, y: Any, groups: Any = None) -> ChosenHead:
        fitted = {name: fit_head(head, X, y, np.asarray(_groups(groups, len(y)))) for name, head in self.candidates}
        self.classes_ = unique_labels(y)
        target = np.searchsorted(self.classes_, np.asarray(y))
        self.inner_scores_ = {name: inner_score(target, h.inner_proba_, self.scoring) for name, h in fitted.items()}
        name = max(self.inner_scores_, key=lambda n: self.inner_scores_[n])
        chosen = fitted[name]
        self.linear_, self.inner_proba_ = chosen.linear_, chosen.inner_proba_
        self.selected_ = {self.key: name, **chosen.selected_}  # type: ignore[dict-item]
        self.n_features_in_ = chosen.n_features_in_
        return self


HEADS: dict[str, type[_LinearHead]] = {
    "logistic": LogisticHead,
    "softmax": SoftmaxHead,
    "lda": LdaHead,
    "pca-logistic": PcaLogisticHead,
    "svm": SvmHead,
    "rbf-svm": KernelSvmHead,
    "select-logistic": SelectLogisticHead,
    "select-rbf-svm": KernelSvmHead,  # with shares to choose among (family_head)
}


def make_head(kind: str | None = None, selection: SelectionConfig | None = None, **params: Any) -> _LinearHead:
    """A fresh head: the family ``kind`` names (``logistic``; ``softmax`` the torch layer; ``lda``,
    ``pca-logistic``, ``svm``, ``rbf-svm`` and ``select-rbf-svm``: ``fuse.heads.kernel``, ``select-logistic``:
    ``fuse.heads.selected``), else the one ``selection.heads`` names (a config's ``[fuse]`` table; ``logistic``
    by default), with ``params`` (a config's ``[head]`` table) checked against the family's own rules, what they
    leave open chosen as ``selection`` says. Where ``selection.heads`` names several families, the head is the one
    of them its inner folds choose (``ChosenHead``), and ``kind`` and ``params`` stay unset."""
    selection = selection or SelectionConfig()
    if len(selection.heads) > 1:
        if kind is not None or params:
            raise ConfigError(
                f"[fuse] heads = {list(selection.heads)}: the inner folds choose the head among them; give no --head,"
                " [head] name or [head] parameters beside it"
            )
        return ChosenHead(tuple((name, family_head(name, selection)) for name in selection.heads), selection.scoring)
    return family_head(kind or selection.heads[0], selection, params)


def family_head(kind: str, selection: SelectionConfig, params: dict[str, Any] | None = None) -> _LinearHead:
    """A fresh head of family ``kind`` with ``params`` checked, its open settings chosen as ``selection`` says."""
    params = params or {}
    if kind not in HEADS:
        raise ConfigError(f"head {kind!r}: choose one of {sorted(HEADS)}")
    rules = HEADS[kind].PARAM_RULES
    unknown = sorted(set(params) - set(rules))
    if unknown:
        raise ConfigError(f"[head] {kind}: unknown parameter(s) {unknown}; its parameters are {sorted(rules)}")
    for name, value in params.items():
        valid, expected = rules[name]
        if not valid(value):
            raise ConfigError(f"[head] {kind}: {name} = {value!r}; expected {expected}")
    chosen = {"inner_folds": selection.inner_folds, "scoring": selection.scoring, "random_state": selection.seed}
    grids: dict[str, dict[str, Any]] = {
        "logistic": {"C_grid": selection.C_grid},
        "pca-logistic": {"C_grid": selection.C_grid},
        "select-logistic": {"C_grid": selection.C_grid},
        "select-rbf-svm": {"shares": SHARES},
        "softmax": {"lr_grid": selection.lr_grid, "l2_grid": selection.l2_grid},
    }
    return HEADS[kind](**(chosen | grids.get(kind, {}) | params))
