"""The heads of a model of values (valence, arousal): ridge regression and RBF kernel ridge regression, each choosing
its settings on grouped inner folds of the rows it fits, and the choice between them (``[fuse] value_heads``).

A ridge head is a linear map of its inputs; a kernel ridge head is an expansion over its training rows
(``fuse.targets.parts.KernelPart``). Both clip a row to the range of the rows fitted, column by column, before
they read it, and both keep the out-of-fold predictions of the rows they fitted at the settings chosen
(``inner_pred_``), which the choice between them, a late fusion's trimming and the ratings' scale read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mvemo.fuse.heads.softmax import rbf
from mvemo.fuse.heads.standardize import standardization, standardized
from mvemo.fuse.selection import SelectionConfig, decades
from mvemo.manifests.errors import ConfigError, is_number
from mvemo.manifests.folds import TooFewGroups, inner_splits


class ValueHead(RegressorMixin, BaseEstimator):
    """What the value heads share: their inner folds."""

    inner_folds: int
    seed: int
    inner_pred_: np.ndarray
    selected_: dict[str, Any]

    def _splits(self, n: int, groups: Any, strata: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        names = [str(i) for i in range(n)] if groups is None else [str(g) for g in groups]
        codes = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
        try:
            return inner_splits(codes, names, k=self.inner_folds, seed=self.seed)
        except TooFewGroups as error:
            where = "the rows" if strata is None else f"stratum {error.label!r}"
            raise ConfigError(
                f"{type(self).__name__}: {where} of the {n} sample(s) given lie in fewer than 2 groups"
                f" ({len(set(names))} in all); choosing its settings on inner folds needs at least 2 groups"
                " in every stratum: add clips of other groups"
            ) from error

    def fit(self, X: Any, y: Any, groups: Any = None, strata: Any = None) -> ValueHead:
        raise NotImplementedError

    def describe(self) -> str:
        """The settings chosen, in a few words."""
        raise NotImplementedError


class RidgeHead(ValueHead):
    """Standardization + ridge regression, alpha chosen on grouped inner folds of the training rows.

    Each inner split's ridge path comes from one eigendecomposition of its centered
    training rows' smaller Gram matrix, which gives every alpha in closed form; the alpha of least mean squared error of
    the pooled out-of-fold predictions (the largest on a tie) is then refitted on
    every row. As in ``fuse.heads.linear.LogisticHead``, the standardization uses every
    training row: it reads no target. Rows predicted are clipped to the range of the
    rows fitted, column by column (each inner split's to its training rows'): a sparse
    embedding's column that barely varies in training has a tiny scale, and a new row's
    value there would otherwise swing a linear prediction far off the scale.

    Parameters
    ----------
    alphas : tuple of float
        The L2 penalties tried, each > 0 (on standardized columns).
    inner_folds : int
        Inner folds wanted (fewer where a stratum has fewer groups).
    seed : int
        Seed of the inner folds' shuffle.

    Attributes
    ----------
    coef_ : ndarray, shape (d,)
        Weights on raw columns (the standardization folded in): ``predict(X) = X @ coef_ + intercept_``.
    intercept_ : float
    low_, high_ : ndarray, shape (d,)
        Each column's least and greatest value in the rows fitted; ``predict`` clips to them.
    alpha_ : float
        The alpha chosen.
    inner_pred_ : ndarray, shape (n,)
        Out-of-fold predictions of the training rows on inner folds, at ``alpha_``.
    selected_ : dict
        ``{"alpha": alpha_}``.
    """

    def __init__(self, alphas: tuple[float, ...] = decades(1e-2, 1e4), inner_folds: int = 5, seed: int = 0) -> None:
        self.alphas = alphas
        self.inner_folds = inner_folds
        self.seed = seed

    def fit(self, X: Any, y: Any, groups: Any = None, strata: Any = None, sample_weight: Any = None) -> RidgeHead:
        """Fit on rows ``X`` (n, d) of values ``y`` (n,), each row's squared error weighing ``sample_weight`` (n,)
        (default: 1; a row of weight 0 trains nothing and is still predicted on inner folds).

        Inner folds keep each of ``groups`` (n,) whole (default: a group per row) and are
        stratified by the integer ``strata`` (n,) (default: one stratum). The alpha chosen is that of least weighted
        mean squared error of the pooled out-of-fold predictions.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        weights = row_weights(sample_weight, len(y))
        if not (
            isinstance(self.alphas, tuple | list) and self.alphas and all(is_number(a) and a > 0 for a in self.alphas)
        ):
            raise ConfigError(
                f"RidgeHead alphas = {self.alphas!r}: expected a non-empty list of numbers > 0, e.g. (0.1, 1, 10)"
            )
        alphas = np.sort(np.asarray(self.alphas, dtype=np.float64))
        mean, scale = standardization(X)
        Z = standardized(X, mean, scale)
        pred = np.empty((len(y), len(alphas)))
        for train, val in self._splits(len(y), groups, strata):
            center, offset, coefs = ridge_path(Z[train], y[train], alphas, weights[train])
            pred[val] = (np.clip(Z[val], Z[train].min(axis=0), Z[train].max(axis=0)) - center) @ coefs + offset
        mse = np.average((pred - y[:, None]) ** 2, axis=0, weights=weights)
        best = int(np.flatnonzero(mse <= mse.min())[-1])
        self.alpha_ = float(alphas[best])
        self.inner_pred_ = pred[:, best]
        self.selected_ = {"alpha": self.alpha_}
        center, offset, coefs = ridge_path(Z, y, alphas[best : best + 1], weights)
        self.coef_ = coefs[:, 0] / scale
        self.intercept_ = float(offset - (mean / scale + center) @ coefs[:, 0])
        self.low_, self.high_ = X.min(axis=0), X.max(axis=0)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for rows ``X`` (n, d): shape (n,)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.clip(X, self.low_, self.high_) @ self.coef_ + self.intercept_

    def describe(self) -> str:
        return f"alpha={self.alpha_:.3g}"


def ridge_path(
    Z: np.ndarray, y: np.ndarray, alphas: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Ridge regressions with an intercept of ``y`` (n,) on ``Z`` (n, d), one per alpha, from one eigendecomposition;
    each row's squared error weighing ``weights`` (n,) (default: 1).

    With ``A`` the centered rows and ``b`` the centered values (centered on their weighted means, each row then
    scaled by the root of its weight), the coefficients are
    ``A.T (A A.T + alpha I)^-1 b`` = ``(A.T A + alpha I)^-1 A.T b``: the eigenvectors of the
    smaller of the two Gram matrices give every alpha at once.

    Returns the column means (d,), the mean of ``y`` and the coefficients (d, n_alphas):
    the prediction of rows ``Z'`` is ``(Z' - means) @ coefs + mean``.
    """
    w = np.ones(len(y)) if weights is None else weights
    center, offset = np.average(Z, axis=0, weights=w), float(np.average(y, weights=w))
    root = np.sqrt(w)
    A, b = root[:, None] * (Z - center), root * (y - offset)
    if len(A) < A.shape[1]:
        eigenvalues, U = np.linalg.eigh(A @ A.T)
        return center, offset, A.T @ (U @ ((U.T @ b)[:, None] / (eigenvalues[:, None] + alphas)))
    eigenvalues, V = np.linalg.eigh(A.T @ A)
    return center, offset, V @ ((V.T @ (A.T @ b))[:, None] / (eigenvalues[:, None] + alphas))


class KernelRidgeHead(ValueHead):
    """Standardization + kernel ridge regression with an RBF kernel, exp(-gamma |z - z'|^2) over the standardized
    rows: gamma (as a multiple of 1 / columns, the standardized rows' natural width, as ``rbf-svm``'s) and alpha chosen
    together on grouped inner folds by the least mean squared error of the pooled out-of-fold predictions (on a tie,
    the smaller gamma, then the larger alpha: the smoother function), then refitted on every row. Each inner split's
    alphas come from one eigendecomposition of its kernel matrix per gamma. Values are predicted as offsets from their
    mean (the intercept), so a row far from every training row predicts the mean.

    Attributes
    ----------
    support_ : ndarray, shape (n, d)
        The training rows, standardized.
    dual_coef_ : ndarray, shape (n,)
        ``predict(X) = rbf(support_, z) @ dual_coef_ + intercept_``, z the rows clipped and standardized.
    intercept_, alpha_, gamma_ : float
        The values' mean; the alpha and the gamma (itself, not its multiple) chosen.
    mean_, scale_ : ndarray, shape (d,)
        The standardization.
    low_, high_ : ndarray, shape (d,)
        Each column's least and greatest value in the rows fitted; ``predict`` clips to them.
    inner_pred_ : ndarray, shape (n,)
        Out-of-fold predictions of the training rows on inner folds, at the settings chosen.
    selected_ : dict
        ``{"alpha": alpha_, "gamma": the multiple of 1 / columns}``.
    """

    def __init__(
        self,
        alphas: tuple[float, ...] = decades(1e-3, 1e2),
        gamma_grid: tuple[float, ...] = (0.25, 1.0, 4.0),
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.alphas = alphas
        self.gamma_grid = gamma_grid
        self.inner_folds = inner_folds
        self.seed = seed

    def fit(self, X: Any, y: Any, groups: Any = None, strata: Any = None) -> KernelRidgeHead:
        """Fit on rows ``X`` (n, d) of values ``y`` (n,); ``groups`` and ``strata``: as ``RidgeHead.fit``'s."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        for name in ("alphas", "gamma_grid"):
            grid = getattr(self, name)
            if not (isinstance(grid, tuple | list) and grid and all(is_number(v) and v > 0 for v in grid)):
                raise ConfigError(f"KernelRidgeHead {name} = {grid!r}: expected a non-empty list of numbers > 0")
        alphas, multiples = np.sort(np.asarray(self.alphas, float))[::-1], np.sort(np.asarray(self.gamma_grid, float))
        self.mean_, self.scale_ = standardization(X)
        Z = standardized(X, self.mean_, self.scale_)
        pred = np.empty((len(y), len(multiples), len(alphas)))
        for train, val in self._splits(len(y), groups, strata):
            held_out = np.clip(Z[val], Z[train].min(axis=0), Z[train].max(axis=0))
            for g, multiple in enumerate(multiples):
                gamma = multiple / Z.shape[1]
                kernel, cross = rbf(Z[train], Z[train], gamma), rbf(Z[train], held_out, gamma)
                pred[val, g] = kernel_ridge_path(kernel, cross, y[train], alphas)
        mse = np.mean((pred - y[:, None, None]) ** 2, axis=0)  # (gammas, alphas): the first least, smoothest
        best_gamma, best_alpha = (int(i) for i in np.unravel_index(int(np.argmin(mse)), mse.shape))
        self.alpha_, self.gamma_ = float(alphas[best_alpha]), float(multiples[best_gamma] / Z.shape[1])
        self.inner_pred_ = pred[:, best_gamma, best_alpha]
        self.selected_ = {"alpha": self.alpha_, "gamma": float(multiples[best_gamma])}
        self.intercept_ = float(y.mean())
        kernel = rbf(Z, Z, self.gamma_)
        self.dual_coef_ = np.linalg.solve(kernel + self.alpha_ * np.eye(len(y)), y - self.intercept_)
        self.support_ = Z
        self.low_, self.high_ = X.min(axis=0), X.max(axis=0)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for rows ``X`` (n, d): shape (n,)."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Z = standardized(np.clip(X, self.low_, self.high_), self.mean_, self.scale_)
        return rbf(self.support_, Z, self.gamma_) @ self.dual_coef_ + self.intercept_

    def describe(self) -> str:
        return f"rbf alpha={self.alpha_:.3g} gamma={self.selected_['gamma']:.3g}/d"


def kernel_ridge_path(kernel: np.ndarray, cross: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Kernel ridge regressions of ``y`` (n,) offset by its mean, one per alpha, from one eigendecomposition of the
    training rows' ``kernel`` (n, n): the predictions (n_alphas, m) of the held-out rows whose kernel with the
    training rows is ``cross`` (m, n): shape (m, n_alphas). The dual coefficients are
    ``(K + alpha I)^-1 (y - mean)``."""
    offset = float(y.mean())
    eigenvalues, U = np.linalg.eigh(kernel)
    duals = U @ ((U.T @ (y - offset))[:, None] / (np.maximum(eigenvalues, 0.0)[:, None] + alphas))  # (n, n_alphas)
    return cross @ duals + offset


VALUE_HEADS: dict[str, Callable[..., ValueHead]] = {"ridge": RidgeHead, "kernel-ridge": KernelRidgeHead}


def row_weights(sample_weight: Any, n: int) -> np.ndarray:
    """The weight of each of ``n`` rows (``sample_weight``, default 1 each): finite, not negative, some above 0."""
    if sample_weight is None:
        return np.ones(n)
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n,) or not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.sum() <= 0:
        raise ConfigError(
            f"sample weights of shape {weights.shape}: expected {n} finite weights >= 0, not every weight zero"
        )
    return weights


def fit_value_head(
    X: np.ndarray,
    y: np.ndarray,
    groups: Any,
    strata: Any,
    selection: SelectionConfig,
    sample_weight: np.ndarray | None = None,
) -> ValueHead:
    """The head of ``selection.value_heads`` whose inner out-of-fold predictions of ``y`` have the least squared error
    (weighted by ``sample_weight``; the first listed on a tie), every family fitted on the same inner folds; with
    several families its ``selected_`` names the one kept (``head``)."""
    uniform = sample_weight is None or bool(np.all(np.asarray(sample_weight) == 1.0))
    weighted = {} if uniform else {"sample_weight": sample_weight}
    unweighted = [name for name in selection.value_heads if weighted and name != "ridge"]
    if unweighted:
        raise ConfigError(
            f"[fuse] value_heads {unweighted}: rows of unequal weight (a values model learning from several sets)"
            ' are fitted by ridge heads alone; set value_heads = ["ridge"]'
        )
    fitted = [
        VALUE_HEADS[name](inner_folds=selection.inner_folds, seed=selection.seed).fit(
            X, y, groups=groups, strata=strata, **weighted
        )
        for name in selection.value_heads
    ]
    weights = row_weights(sample_weight, len(y))
    errors = [float(np.average((head.inner_pred_ - y) ** 2, weights=weights)) for head in fitted]
    best = int(np.argmin(errors))
    chosen = fitted[best]
    if len(fitted) > 1:
        chosen.selected_ = {"head": selection.value_heads[best], **chosen.selected_}
    return chosen
