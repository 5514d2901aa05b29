"""Stage two for continuous targets (valence, arousal): the model trees of ``fuse.compose`` fitted by value heads.

A feature-level model fits one head per dimension of the values over its inputs' concatenated columns (ridge, or the
family ``[fuse] value_heads`` lets the inner folds choose: ``fuse.targets.value_heads``); ``late(...)`` averages its
members' predictions (``weights=trimmed``: those not clearly worse on inner folds, each row scored by minus its
squared error in units of each value's spread) and ``best(...)`` keeps the member whose inner out-of-fold predictions
have the least relative squared error. ``late(..., weights=inner)`` weighs its members per value by non-negative shares
that sum to 1, and ``stack(...)`` by non-negative weights and an intercept, both fitted by least squares on the
members' inner out-of-fold predictions (``combination``). Every choice (each head's family and settings, the members
kept, the member a best-of keeps, the shares) is made on grouped inner folds of the rows fitted; the whole model is then
mapped onto the ratings' scale (``on_the_ratings_scale``).

A fitted model is a weighted sum of parts, each a linear map (``LinearPart``) or a kernel expansion (``KernelPart``)
of concatenated inputs (``fuse.targets.parts``), which is what a saved model stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from mvemo.fuse.compose import Best, Features, Late, Node, Stack, inputs_of
from mvemo.fuse.fitted import concatenated
from mvemo.fuse.fitting import trimmed
from mvemo.fuse.selection import Dropped, SelectionConfig, described_drops
from mvemo.fuse.targets.parts import KernelPart, LinearPart, Part, predict_parts
from mvemo.fuse.targets.value_heads import KernelRidgeHead, RidgeHead, ValueHead, fit_value_head, row_weights
from mvemo.manifests.folds import fewest_groups, inner_splits


def relative_error(values: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over dimensions of the squared error of ``pred`` (n, m) over the variance of ``values`` (n, m): 1 - R²,
    each row weighing ``weights`` (n,) (default 1)."""
    mean = np.average(values, axis=0, weights=weights)
    variance = np.average((values - mean) ** 2, axis=0, weights=weights)
    error = np.average((pred - values) ** 2, axis=0, weights=weights)
    return float(np.mean(error / np.where(variance > 0, variance, 1.0)))


class FittedValues:
    """A fitted model of values: predictions for new rows, and what was chosen on inner folds."""

    node: Node
    # Out-of-fold predictions of the training rows on inner folds, (n, m).
    inner_pred: np.ndarray

    def predict(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions for rows ``blocks`` (input -> (n, d_i)): shape (n, m)."""
        return predict_parts(self.parts(), blocks)

    def parts(self) -> list[Part]:
        """The predictions as a weighted sum of linear maps and kernel expansions of concatenated inputs."""
        raise NotImplementedError

    def choices(self) -> dict[str, Any]:
        """What was chosen on inner folds, as JSON."""
        raise NotImplementedError

    def describe(self) -> str:
        """The choices in a few words, for a report's table."""
        raise NotImplementedError


class FeaturesValues(FittedValues):
    """A head per dimension of the values over the node's concatenated inputs."""

    node: Features

    def __init__(self, node: Features, heads: list[ValueHead]) -> None:
        self.node, self.heads = node, heads
        self.inner_pred = np.stack([head.inner_pred_ for head in heads], axis=1)

    def parts(self) -> list[Part]:
        """One linear map for the dimensions of ridge heads (a zero row for the others), and one kernel expansion per
        dimension of a kernel ridge head."""
        m, inputs = len(self.heads), self.node.inputs
        parts: list[Part] = []
        ridge = {j: head for j, head in enumerate(self.heads) if isinstance(head, RidgeHead)}
        if ridge:
            first = next(iter(ridge.values()))
            coef, intercept = np.zeros((m, len(first.coef_))), np.zeros(m)
            for j, head in ridge.items():
                coef[j], intercept[j] = head.coef_, head.intercept_
            parts.append(LinearPart(inputs, coef, intercept, 1.0, first.low_, first.high_))
        for j, head in enumerate(self.heads):
            if isinstance(head, KernelRidgeHead):
                coef, intercept = np.zeros((m, len(head.dual_coef_))), np.zeros(m)
                coef[j], intercept[j] = head.dual_coef_, head.intercept_
                kernel = (head.mean_, head.scale_, head.support_, head.gamma_)
                parts.append(KernelPart(inputs, coef, intercept, 1.0, head.low_, head.high_, *kernel))
        return parts

    def choices(self) -> dict[str, Any]:
        """Each dimension's head's settings, by setting (a head without one: null)."""
        keys = dict.fromkeys(key for head in self.heads for key in head.selected_)
        return {key: [head.selected_.get(key) for head in self.heads] for key in keys}

    def describe(self) -> str:
        return " / ".join(head.describe() for head in self.heads)


class LateValues(FittedValues):
    """The mean of ``members``' predictions: those kept (``dropped``: as ``fuse.compose.FittedLate``'s)."""

    node: Late

    def __init__(self, node: Late, members: list[FittedValues], dropped: dict[str, Dropped] | None = None) -> None:
        self.node, self.members, self.dropped = node, members, dict(dropped or {})
        self.inner_pred = np.mean([m.inner_pred for m in members], axis=0)

    def parts(self) -> list[Part]:
        share = 1.0 / len(self.members)
        return [part._replace(weight=part.weight * share) for m in self.members for part in m.parts()]

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

    def parts(self) -> list[Part]:
        return self.chosen.parts()

    def choices(self) -> dict[str, Any]:
        return {"chosen": self.chosen.node.expr, "inner_scores": self.scores, "of_chosen": self.chosen.choices()}

    def describe(self) -> str:
        return f"{self.chosen.node.expr} ({self.chosen.describe()})"


class WeightedValues(FittedValues):
    """A learned combination of its members' predictions, ``late(..., weights=inner)`` or ``stack(...)``: per
    dimension j, ``sum_i shares[j, i] * member_i + intercepts[j]`` (``combination``); its inner predictions are
    cross-fitted (``_cross_fitted``)."""

    node: Late | Stack

    def __init__(
        self,
        node: Late | Stack,
        members: list[FittedValues],
        shares: np.ndarray,
        intercepts: np.ndarray,
        inner_pred: np.ndarray,
    ) -> None:
        self.node, self.members, self.shares, self.intercepts = node, members, shares, intercepts
        self.inner_pred = inner_pred

    def parts(self) -> list[Part]:
        """Each member's parts with its share of each dimension folded into their coefficients and intercepts, and
        the intercepts shared among all the parts by their weights."""
        scaled = [
            part._replace(coef=part.coef * self.shares[:, i, None], intercept=part.intercept * self.shares[:, i])
            for i, member in enumerate(self.members)
            for part in member.parts()
        ]
        total = sum(part.weight for part in scaled)
        return [part._replace(intercept=part.intercept + self.intercepts / total) for part in scaled]

    def choices(self) -> dict[str, Any]:
        members = {m.node.expr: m.choices() for m in self.members}
        return {"shares": self.shares.tolist(), "intercepts": self.intercepts.tolist(), "members": members}

    def describe(self) -> str:
        shares = " / ".join(
            ", ".join(f"{m.node.expr} {share:.2f}" for m, share in zip(self.members, row)) for row in self.shares
        )
        return f"shares {shares}; " + "; ".join(f"{m.node.expr}: {m.describe()}" for m in self.members)


def fit_values(
    node: Node,
    blocks: Mapping[str, np.ndarray],
    values: np.ndarray,
    *,
    groups: Sequence[str],
    strata: np.ndarray,
    selection: SelectionConfig,
    in_sample: frozenset[str] = frozenset(),
    weights: np.ndarray | None = None,
    rated: np.ndarray | None = None,
) -> FittedValues:
    """``node`` fitted to predict ``values`` from ``blocks``, every choice made on grouped inner folds of these rows.

    Parameters
    ----------
    node : Features, Late, Stack or Best
        The model (``fuse.compose``).
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
        Its ``inner_folds`` and ``seed`` draw the inner folds, its ``value_heads`` are the heads the inner folds choose
        among, its ``value_scale`` is the predictions' scale.
    in_sample : frozenset of str
        The inputs computed by nets fine-tuned on these rows (``fuse.compose.Training``'s): a trimmed late fusion keeps
        their members without judging them, and a model that reads one is not mapped onto the ratings' scale.
    weights : ndarray, shape (n,), optional
        Each row's weight in every squared error fitted or scored (default 1): a model that learns from several sets
        weighs each set's rows (``fuse.targets.plane``).
    rated : ndarray of bool, shape (n,), optional
        The rows whose values are ratings (default all): the map onto the ratings' scale learns from them alone.

    Returns
    -------
    FittedValues
        With ``predict(blocks)`` (n, m) and ``inner_pred`` (n, m); a shared member is fitted once. Its predictions
        on the ratings' scale (``on_the_ratings_scale``) unless ``selection.value_scale`` is ``least-squares`` or the
        model reads an input ``in_sample`` (whose inner predictions would teach the map nothing true).

    Raises
    ------
    ConfigError
        For rows too few in groups to split.
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    weights = row_weights(weights, len(values))
    rated = np.ones(len(values), dtype=bool) if rated is None else np.asarray(rated, dtype=bool)
    if fewest_groups(strata, groups)[0] < 2:
        strata = np.zeros_like(strata)
    model = _fit_tree(node, ValueRows(blocks, values, list(groups), strata, weights), selection, in_sample)
    if selection.value_scale != "ratings" or set(inputs_of(node)) & in_sample or not rated.any():
        return model  # in-sample inner predictions teach no map, and without ratings there is no scale to map onto
    return on_the_ratings_scale(model, values[rated], rated)


@dataclass(frozen=True)
class ValueRows:
    """The rows a model of values is fitted on: each input's rows, their values (n, m), groups, strata and weights."""

    blocks: Mapping[str, np.ndarray]
    values: np.ndarray
    groups: list[str]
    strata: np.ndarray
    weights: np.ndarray

    def on(self, rows: np.ndarray) -> ValueRows:
        """These rows' ``rows`` alone."""
        return ValueRows(
            {name: X[rows] for name, X in self.blocks.items()},
            self.values[rows],
            [self.groups[r] for r in rows],
            self.strata[rows],
            self.weights[rows],
        )


def _fit_tree(
    node: Node, rows: ValueRows, selection: SelectionConfig, in_sample: frozenset[str], *, cross_fit: bool = True
) -> FittedValues:
    """``node`` fitted on ``rows``, each member once, every choice on their inner folds (no map onto the ratings).
    ``cross_fit``: a learned combination's inner predictions cross-fitted (``_cross_fitted``), as a choice above it
    and the map read them; else its members' inner predictions combined, for a fit whose predictions alone are read."""
    fitted: dict[Node, FittedValues] = {}
    values, weights = rows.values, rows.weights

    def fit(node: Node) -> FittedValues:
        if node not in fitted:
            if isinstance(node, Features):
                X = concatenated(rows.blocks, node.inputs)
                heads = [fit_value_head(X, v, rows.groups, rows.strata, selection, weights) for v in values.T]
                fitted[node] = FeaturesValues(node, heads)
            elif isinstance(node, Late) and node.weights == "trimmed":
                members = [fit(m) for m in node.members]
                judged = np.flatnonzero(weights > 0)  # rows of weight 0 judge no member
                spread = np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
                row_scores = [-np.sum(((m.inner_pred - values) / spread) ** 2, axis=1)[judged] for m in members]
                groups = [rows.groups[r] for r in judged]
                fitted[node] = LateValues(node, *trimmed(members, row_scores, groups, in_sample))
            elif isinstance(node, Late | Stack) and (isinstance(node, Stack) or node.weights == "inner"):
                members = [fit(m) for m in node.members]
                shares, intercepts = combination(members, values, weights, stacked=isinstance(node, Stack))
                if cross_fit:
                    inner_pred = _cross_fitted(node, rows, selection, in_sample)
                else:
                    stacked = np.stack([m.inner_pred for m in members], axis=1)  # (n, members, m)
                    inner_pred = np.einsum("nij,ji->nj", stacked, shares) + intercepts
                fitted[node] = WeightedValues(node, members, shares, intercepts, inner_pred)
            elif isinstance(node, Late):
                fitted[node] = LateValues(node, [fit(m) for m in node.members])
            else:
                assert isinstance(node, Best)
                members = [fit(m) for m in node.members]
                scores = {m.node.expr: relative_error(values, m.inner_pred, weights) for m in members}
                fitted[node] = BestValues(node, min(members, key=lambda m: scores[m.node.expr]), scores)
        return fitted[node]

    return fit(node)


def combination(
    members: list[FittedValues], values: np.ndarray, weights: np.ndarray, *, stacked: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per dimension of ``values`` (n, m), the members' non-negative weights (m, members) and an intercept (m,) that
    best fit the values from the members' inner out-of-fold predictions (weighted least squares under the constraint):
    a late fusion's (``stacked`` False) share the dimension's prediction (they sum to 1, no intercept); a stack's are
    a meta-regression's (an intercept, weights of any sum)."""
    m, n_members = values.shape[1], len(members)
    shares, intercepts = np.zeros((m, n_members)), np.zeros(m)
    root = np.sqrt(weights)
    for j in range(m):
        P, y = np.stack([member.inner_pred[:, j] for member in members], axis=1), values[:, j]
        if stacked:
            p_mean, y_mean = np.average(P, axis=0, weights=weights), float(np.average(y, weights=weights))
            shares[j] = nnls(root[:, None] * (P - p_mean), root * (y - y_mean))[0]
            intercepts[j] = y_mean - p_mean @ shares[j]
        else:
            found = nnls(root[:, None] * P, root * y)[0]
            shares[j] = found / found.sum() if found.sum() > 0 else np.full(n_members, 1.0 / n_members)
    return shares, intercepts


def _cross_fitted(
    node: Late | Stack, rows: ValueRows, selection: SelectionConfig, in_sample: frozenset[str]
) -> np.ndarray:
    """Inner out-of-fold predictions of a learned combination, none from weights fitted on their own rows: for each
    inner split the whole combination is fitted afresh on its training rows (the members' own inner folds drawn from
    those) and predicts its validation rows (as ``fuse.fitting.cross_fitted`` for classes)."""
    pred = np.zeros_like(rows.values)
    for train, val in _splits(rows, selection):
        part = _fit_tree(node, rows.on(train), selection, in_sample, cross_fit=False)
        pred[val] = part.predict({name: X[val] for name, X in rows.blocks.items()})
    return pred


def _splits(rows: ValueRows, selection: SelectionConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    strata = rows.strata if fewest_groups(rows.strata, rows.groups)[0] >= 2 else np.zeros_like(rows.strata)
    return inner_splits(strata, rows.groups, k=selection.inner_folds, seed=selection.seed)


def on_the_ratings_scale(model: FittedValues, values: np.ndarray, rated: np.ndarray | None = None) -> RescaledValues:
    """``model`` with each dimension's predictions mapped linearly onto the ratings' scale: the map that gives its inner
    out-of-fold predictions of the ``rated`` rows (default all) the mean and standard deviation of their ``values``
    (n_rated, m), learned on those alone (the AVEC practice: CCC counts a prediction's spread and offset, which ridge
    heads and their averages shrink). A dimension whose inner predictions do not rise with the ratings clearly (a
    correlation under 2 / sqrt(n), about its 95 % bound where there is none), or do not vary, keeps its predictions as
    they are: stretching a near constant would spread noise."""
    pred = model.inner_pred if rated is None else model.inner_pred[rated]
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

    def parts(self) -> list[Part]:
        """The model's parts with the map folded in: each part's coefficients and intercept times ``scale``, and
        ``shift`` shared among the parts by their weights."""
        parts = self.model.parts()
        total = sum(part.weight for part in parts)
        return [
            part._replace(
                coef=part.coef * self.scale[:, None], intercept=part.intercept * self.scale + self.shift / total
            )
            for part in parts
        ]

    def choices(self) -> dict[str, Any]:
        return self.model.choices() | {"ratings_scale": {"scale": self.scale.tolist(), "shift": self.shift.tolist()}}

    def describe(self) -> str:
        scale = " / ".join(f"x{s:.2f}{t:+.2g}" for s, t in zip(self.scale, self.shift))
        return f"{self.model.describe()}; on the ratings' scale {scale}"
