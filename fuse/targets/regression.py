"""Stage two for continuous targets (valence, arousal): the model trees of ``fuse.compose`` fitted by ridge heads.

A feature-level model fits one ``RidgeHead`` per dimension of the values over its
inputs' concatenated columns; ``late(...)`` averages its members' predictions
(``weights=trimmed``: those not clearly worse on inner folds, each row scored by minus
its squared error in units of each value's spread) and ``best(...)`` keeps the member
whose inner out-of-fold predictions have the least relative squared error. Every
choice (each head's alpha, the members kept, the member a best-of keeps) is made on
grouped inner folds of the rows fitted. ``stack(...)`` and
``late(..., weights=inner)`` are classification-only.

A fitted model is a weighted sum of linear maps of concatenated inputs
(``linear_parts``), which is what a saved model stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from mvemo.fuse.compose import Best, Features, Late, Node, Stack, concatenated, inputs_of, trimmed
from mvemo.fuse.heads.linear import standardization, standardized
from mvemo.fuse.selection import Dropped, SelectionConfig, decades, described_drops
from mvemo.manifests.errors import ConfigError, is_number
from mvemo.manifests.folds import TooFewGroups, fewest_groups, inner_splits


class RidgeHead(RegressorMixin, BaseEstimator):
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

    def fit(self, X: Any, y: Any, groups: Any = None, strata: Any = None) -> RidgeHead:
        """Fit on rows ``X`` (n, d) of values ``y`` (n,).

        Inner folds keep each of ``groups`` (n,) whole (default: a group per row) and are
        stratified by the integer ``strata`` (n,) (default: one stratum).
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        if not (isinstance(self.alphas, tuple | list) and self.alphas and all(is_number(a) and a > 0 for a in self.alphas)):
            raise ConfigError(f"RidgeHead alphas = {self.alphas!r}: expected a non-empty list of numbers > 0, e.g. (0.1, 1, 10)")
        alphas = np.sort(np.asarray(self.alphas, dtype=np.float64))
        mean, scale = standardization(X)
        Z = standardized(X, mean, scale)
        pred = np.empty((len(y), len(alphas)))
        for train, val in self._splits(len(y), groups, strata):
            center, offset, coefs = ridge_path(Z[train], y[train], alphas)
            pred[val] = (np.clip(Z[val], Z[train].min(axis=0), Z[train].max(axis=0)) - center) @ coefs + offset
        mse = np.mean((pred - y[:, None]) ** 2, axis=0)
        best = int(np.flatnonzero(mse <= mse.min())[-1])
        self.alpha_ = float(alphas[best])
        self.inner_pred_ = pred[:, best]
        self.selected_ = {"alpha": self.alpha_}
        center, offset, coefs = ridge_path(Z, y, alphas[best : best + 1])
        self.coef_ = coefs[:, 0] / scale
        self.intercept_ = float(offset - (mean / scale + center) @ coefs[:, 0])
        self.low_, self.high_ = X.min(axis=0), X.max(axis=0)
        return self

    def _splits(self, n: int, groups: Any, strata: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        names = [str(i) for i in range(n)] if groups is None else [str(g) for g in groups]
        codes = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
        try:
            return inner_splits(codes, names, k=self.inner_folds, seed=self.seed)
        except TooFewGroups as error:
            where = "the rows" if strata is None else f"stratum {error.label!r}"
            raise ConfigError(
                f"RidgeHead: {where} of the {n} sample(s) given lie in fewer than 2 groups ({len(set(names))} in all);"
                " choosing alpha on inner folds needs at least 2 groups in every stratum: add clips of other groups"
            ) from error

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for rows ``X`` (n, d): shape (n,)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.clip(X, self.low_, self.high_) @ self.coef_ + self.intercept_


def ridge_path(Z: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Ridge regressions with an intercept of ``y`` (n,) on ``Z`` (n, d), one per alpha, from one eigendecomposition.

    With ``A`` the centered rows and ``b`` the centered values, the coefficients are
    ``A.T (A A.T + alpha I)^-1 b`` = ``(A.T A + alpha I)^-1 A.T b``: the eigenvectors of the
    smaller of the two Gram matrices give every alpha at once.

    Returns the column means (d,), the mean of ``y`` and the coefficients (d, n_alphas):
    the prediction of rows ``Z'`` is ``(Z' - means) @ coefs + mean``.
    """
    center, offset = Z.mean(axis=0), float(y.mean())
    A, b = Z - center, y - offset
    if len(A) < A.shape[1]:
        eigenvalues, U = np.linalg.eigh(A @ A.T)
        return center, offset, A.T @ (U @ ((U.T @ b)[:, None] / (eigenvalues[:, None] + alphas)))
    eigenvalues, V = np.linalg.eigh(A.T @ A)
    return center, offset, V @ ((V.T @ (A.T @ b))[:, None] / (eigenvalues[:, None] + alphas))


class LinearPart(NamedTuple):
    """One term of a fitted model's predictions: ``weight * (clip(X, low, high) @ coef.T + intercept)`` with ``X``
    the inputs' concatenated columns, ``low`` and ``high`` (d,) their range in the rows fitted, ``coef`` (m, d) and
    ``intercept`` (m,) for m dimensions of values."""

    inputs: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    weight: float
    low: np.ndarray
    high: np.ndarray


def predict_parts(parts: Sequence[LinearPart], blocks: Mapping[str, np.ndarray]) -> np.ndarray:
    """The sum of ``parts`` on rows ``blocks`` (input -> (n, d_i)): shape (n, m)."""
    return sum(
        part.weight * (np.clip(concatenated(blocks, part.inputs), part.low, part.high) @ part.coef.T + part.intercept)
        for part in parts
    )


def relative_error(values: np.ndarray, pred: np.ndarray) -> float:
    """Mean over dimensions of the squared error of ``pred`` (n, m) over the variance of ``values`` (n, m): 1 - R²."""
    variance = values.var(axis=0)
    return float(np.mean(np.mean((pred - values) ** 2, axis=0) / np.where(variance > 0, variance, 1.0)))


class FittedValues:
    """A fitted model of values: predictions for new rows, and what was chosen on inner folds."""

    node: Node
    # Out-of-fold predictions of the training rows on inner folds, (n, m).
    inner_pred: np.ndarray

    def predict(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions for rows ``blocks`` (input -> (n, d_i)): shape (n, m)."""
        return predict_parts(self.linear_parts(), blocks)

    def linear_parts(self) -> list[LinearPart]:
        """The predictions as a weighted sum of linear maps of concatenated inputs."""
        raise NotImplementedError

    def choices(self) -> dict[str, Any]:
        """What was chosen on inner folds, as JSON."""
        raise NotImplementedError

    def describe(self) -> str:
        """The choices in a few words, for a report's table."""
        raise NotImplementedError


class FeaturesValues(FittedValues):
    node: Features

    def __init__(self, node: Features, heads: list[RidgeHead]) -> None:
        self.node, self.heads = node, heads
        self.inner_pred = np.stack([head.inner_pred_ for head in heads], axis=1)

    def linear_parts(self) -> list[LinearPart]:
        coef = np.stack([head.coef_ for head in self.heads])
        intercept = np.array([head.intercept_ for head in self.heads])
        return [LinearPart(self.node.inputs, coef, intercept, 1.0, self.heads[0].low_, self.heads[0].high_)]

    def choices(self) -> dict[str, Any]:
        return {"alpha": [head.alpha_ for head in self.heads]}

    def describe(self) -> str:
        return "alpha=" + " / ".join(f"{head.alpha_:.3g}" for head in self.heads)


class LateValues(FittedValues):
    """The mean of ``members``' predictions: those kept (``dropped``: as ``fuse.compose.FittedLate``'s)."""

    node: Late

    def __init__(self, node: Late, members: list[FittedValues], dropped: dict[str, Dropped] | None = None) -> None:
        self.node, self.members, self.dropped = node, members, dict(dropped or {})
        self.inner_pred = np.mean([m.inner_pred for m in members], axis=0)

    def linear_parts(self) -> list[LinearPart]:
        share = 1.0 / len(self.members)
        return [part._replace(weight=part.weight * share) for m in self.members for part in m.linear_parts()]

    def choices(self) -> dict[str, Any]:
        choices: dict[str, Any] = {"members": {m.node.expr: m.choices() for m in self.members}}
        if self.node.weights == "trimmed":
            choices["dropped"] = {expr: d._asdict() for expr, d in self.dropped.items()}
        return choices

    def describe(self) -> str:
        dropped = f"; dropped {described_drops(self.dropped)}" if self.dropped else ""
        return "; ".join(f"{m.node.expr}: {m.describe()}" for m in self.members) + dropped


class BestValues(FittedValues):
    node: Best

    def __init__(self, node: Best, chosen: FittedValues, scores: dict[str, float]) -> None:
        self.node, self.chosen, self.scores = node, chosen, scores
        self.inner_pred = chosen.inner_pred

    def linear_parts(self) -> list[LinearPart]:
        return self.chosen.linear_parts()

    def choices(self) -> dict[str, Any]:
        return {"chosen": self.chosen.node.expr, "inner_scores": self.scores, "of_chosen": self.chosen.choices()}

    def describe(self) -> str:
        return f"{self.chosen.node.expr} ({self.chosen.describe()})"


def fit_values(
    node: Node,
    blocks: Mapping[str, np.ndarray],
    values: np.ndarray,
    *,
    groups: Sequence[str],
    strata: np.ndarray,
    selection: SelectionConfig,
    in_sample: frozenset[str] = frozenset(),
) -> FittedValues:
    """``node`` fitted to predict ``values`` from ``blocks``, every choice made on grouped inner folds of these rows.

    Parameters
    ----------
    node : Features, Late or Best
        The model (``fuse.compose``); late fusion with equal or trimmed weights.
    blocks : mapping of str to ndarray, shape (n, d_i)
        Each input's rows.
    values : ndarray, shape (n, m)
        The targets, e.g. valence and arousal (m = 2).
    groups : sequence of str, length n
        The rows' groups, kept whole by inner folds.
    strata : ndarray of int, shape (n,)
        What inner folds stratify by (the quadrants), where every stratum has two groups or more among the rows;
        else they are not stratified (a stratum of one group could not sit on both sides of an inner split).
    selection : SelectionConfig
        Its ``inner_folds`` and ``seed`` draw the inner folds; its ``value_scale`` is the predictions' scale.
    in_sample : frozenset of str
        The inputs computed by nets fine-tuned on these rows (``fuse.compose.Training``'s): a trimmed late fusion keeps
        their members without judging them, and a model that reads one is not mapped onto the ratings' scale.

    Returns
    -------
    FittedValues
        With ``predict(blocks)`` (n, m) and ``inner_pred`` (n, m); a shared member is fitted once. Its predictions
        on the ratings' scale (``on_the_ratings_scale``) unless ``selection.value_scale`` is ``least-squares`` or the
        model reads an input ``in_sample`` (whose inner predictions would teach the map nothing true).

    Raises
    ------
    ConfigError
        For ``stack(...)`` or ``late(..., weights=inner)`` anywhere in ``node``, or rows too few in groups to split.
    """
    _require_offered(node)
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if fewest_groups(strata, groups)[0] < 2:
        strata = np.zeros_like(strata)
    fitted: dict[Node, FittedValues] = {}

    def fit(node: Node) -> FittedValues:
        if node not in fitted:
            if isinstance(node, Features):
                X = concatenated(blocks, node.inputs)
                head = RidgeHead(inner_folds=selection.inner_folds, seed=selection.seed)
                fitted[node] = FeaturesValues(node, [clone(head).fit(X, v, groups=groups, strata=strata) for v in values.T])
            elif isinstance(node, Late) and node.weights == "trimmed":
                members = [fit(m) for m in node.members]
                spread = np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
                row_scores = [-np.sum(((m.inner_pred - values) / spread) ** 2, axis=1) for m in members]
                fitted[node] = LateValues(node, *trimmed(members, row_scores, groups, in_sample))
            elif isinstance(node, Late):
                fitted[node] = LateValues(node, [fit(m) for m in node.members])
            elif isinstance(node, Best):  # _require_offered refused stack(...)
                members = [fit(m) for m in node.members]
                scores = {m.node.expr: relative_error(values, m.inner_pred) for m in members}
                fitted[node] = BestValues(node, min(members, key=lambda m: scores[m.node.expr]), scores)
        return fitted[node]

    model = fit(node)
    if selection.value_scale != "ratings" or set(inputs_of(node)) & in_sample:  # in-sample inner predictions teach no map
        return model
    return on_the_ratings_scale(model, values)


def on_the_ratings_scale(model: FittedValues, values: np.ndarray) -> RescaledValues:
    """``model`` with each dimension's predictions mapped linearly onto the ratings' scale: the map that gives its inner
    out-of-fold predictions of these rows the mean and standard deviation of their ``values`` (n, m), learned on
    those alone (the AVEC practice: CCC counts a prediction's spread and offset, which ridge heads and their averages
    shrink). A dimension whose inner predictions do not rise with the ratings clearly (a correlation under 2 / sqrt(n),
    about its 95 % bound where there is none), or do not vary, keeps its predictions as they are: stretching a near
    constant would spread noise."""
    pred = model.inner_pred
    scale, shift = np.ones(values.shape[1]), np.zeros(values.shape[1])
    for j in range(values.shape[1]):
        p, y = pred[:, j], values[:, j]
        if p.std() > 0 and y.std() > 0 and np.corrcoef(p, y)[0, 1] > 2 / np.sqrt(len(y)):
            scale[j] = y.std() / p.std()
            shift[j] = y.mean() - scale[j] * p.mean()
    return RescaledValues(model, scale, shift)


class RescaledValues(FittedValues):
    """A model's predictions times ``scale`` plus ``shift``, per dimension (``on_the_ratings_scale``)."""

    def __init__(self, model: FittedValues, scale: np.ndarray, shift: np.ndarray) -> None:
        self.node, self.model, self.scale, self.shift = model.node, model, scale, shift
        self.inner_pred = model.inner_pred * scale + shift

    def linear_parts(self) -> list[LinearPart]:
        """The model's parts with the map folded in: each part's coefficients and intercept times ``scale``, and
        ``shift`` shared among the parts by their weights."""
        parts = self.model.linear_parts()
        total = sum(part.weight for part in parts)
        return [
            part._replace(coef=part.coef * self.scale[:, None], intercept=part.intercept * self.scale + self.shift / total)
            for part in parts
        ]

    def choices(self) -> dict[str, Any]:
        return self.model.choices() | {"ratings_scale": {"scale": self.scale.tolist(), "shift": self.shift.tolist()}}

    def describe(self) -> str:
        scale = " / ".join(f"x{s:.2f}{t:+.2g}" for s, t in zip(self.scale, self.shift))
        return f"{self.model.describe()}; on the ratings' scale {scale}"


def _require_offered(node: Node) -> None:
    """Refuse the fusions that exist for classes alone, before anything is fitted."""
    if isinstance(node, Stack):
        raise ConfigError(f"model {node.expr}: stack(...) is not offered for valence/arousal; use late(...) or best(...)")
    if isinstance(node, Late) and node.weights == "inner":
        raise ConfigError(f"model {node.expr}: weights=inner is not offered for valence/arousal; use late(...) without weights")
    for member in node.members:
        _require_offered(member)
