"""Stage two for continuous targets (valence, arousal): the model trees of ``fuse.compose`` fitted by value heads.

A feature-level model fits one head per dimension of the values over its inputs' concatenated columns (ridge, or the
family ``[fuse] value_heads`` lets the inner folds choose: ``fuse.targets.value_heads``); ``late(...)`` averages its
members' predictions (``weights=trimmed``: those not clearly worse on inner folds, each row scored by minus its
squared error in units of each value's spread) and ``best(...)`` keeps the member whose inner out-of-fold predictions
have the least relative squared error. Every choice (each head's family and settings, the members kept, the member a
best-of keeps) is made on grouped inner folds of the rows fitted. ``stack(...)`` and ``late(..., weights=inner)`` are
classification-only.

A fitted model is a weighted sum of parts, each a linear map (``LinearPart``) or a kernel expansion (``KernelPart``)
of concatenated inputs (``parts``), which is what a saved model stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from mvemo.fuse.compose import Best, Features, Late, Node, Stack, inputs_of
from mvemo.fuse.fitting import concatenated, trimmed
from mvemo.fuse.heads.kernel import rbf
from mvemo.fuse.heads.linear import standardized
from mvemo.fuse.selection import Dropped, SelectionConfig, described_drops
from mvemo.fuse.targets.value_heads import KernelRidgeHead, RidgeHead, ValueHead, fit_value_head
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.folds import fewest_groups


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

    def values(self, X: np.ndarray) -> np.ndarray:
        """The part's values of rows ``X`` (n, d), its weight aside: shape (n, m)."""
        return np.clip(X, self.low, self.high) @ self.coef.T + self.intercept


class KernelPart(NamedTuple):
    """One term of a fitted model's predictions: ``weight * (rbf(support, z) @ coef.T + intercept)`` with ``z`` the
    inputs' concatenated columns clipped to ``low`` and ``high`` (d,) and standardized by ``mean`` and ``scale`` (d,),
    ``rbf`` the kernel exp(-gamma |z - s|^2) with each row s of ``support`` (k, d), ``coef`` (m, k) and ``intercept``
    (m,) (``fuse.targets.value_heads.KernelRidgeHead``: one dimension's row nonzero)."""

    inputs: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    weight: float
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    support: np.ndarray
    gamma: float

    def values(self, X: np.ndarray) -> np.ndarray:
        """The part's values of rows ``X`` (n, d), its weight aside: shape (n, m)."""
        Z = standardized(np.clip(X, self.low, self.high), self.mean, self.scale)
        return rbf(self.support, Z, self.gamma) @ self.coef.T + self.intercept


Part = LinearPart | KernelPart


def predict_parts(parts: Sequence[Part], blocks: Mapping[str, np.ndarray]) -> np.ndarray:
    """The sum of ``parts`` on rows ``blocks`` (input -> (n, d_i)): shape (n, m)."""
    return np.sum([part.weight * part.values(concatenated(blocks, part.inputs)) for part in parts], axis=0)


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
        Its ``inner_folds`` and ``seed`` draw the inner folds, its ``value_heads`` are the heads the inner folds choose
        among, its ``value_scale`` is the predictions' scale.
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
                fitted[node] = FeaturesValues(node, [fit_value_head(X, v, groups, strata, selection) for v in values.T])
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
    if (
        selection.value_scale != "ratings" or set(inputs_of(node)) & in_sample
    ):  # in-sample inner predictions teach no map
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


def _require_offered(node: Node) -> None:
    """Refuse the fusions that exist for classes alone, before anything is fitted."""
    if isinstance(node, Stack):
        raise ConfigError(
            f"model {node.expr}: stack(...) is not offered for valence/arousal; use late(...) or best(...)"
        )
    if isinstance(node, Late) and node.weights == "inner":
        raise ConfigError(
            f"model {node.expr}: weights=inner is not offered for valence/arousal; use late(...) without weights"
        )
    for member in node.members:
        _require_offered(member)
