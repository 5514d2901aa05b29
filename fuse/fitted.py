"""Fitted model trees: what ``fuse.fitting`` makes of ``fuse.compose``'s nodes, and what a saved model loads.

Each gives probabilities over all classes for new rows (``proba``) and says what was chosen on inner folds. Their
heads are any object with ``predict_proba`` (a saved one is a ``fuse.heads.softmax`` layer or
``fuse.heads.upper_net.UpperSoftmax``), so that reading and running a saved model needs neither scikit-learn nor the
fitting code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mvemo.fuse.compose import Best, Features, Late, Node, Stack, inputs_of
from mvemo.fuse.selection import EPS, Dropped, described_drops


class Fitted:
    """A fitted model: probabilities over all classes for new rows, and what was chosen on inner folds."""

    node: Node
    # Out-of-fold probabilities of the training rows on inner folds (n, n_classes), where a choice above needs them.
    inner_proba: np.ndarray | None = None

    def proba(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def choices(self) -> dict[str, Any]:
        """What was chosen on inner folds, as JSON."""
        raise NotImplementedError

    def describe(self) -> str:
        """The choices in a few words, for a report's table."""
        raise NotImplementedError

    def inputs(self) -> tuple[str, ...]:
        """The cached inputs its predictions read (a best-of's chosen member's alone)."""
        return inputs_of(self.node)


def described(selected: Mapping[str, Any]) -> str:
    """What a head chose, in a few words: ``head=lda, shrinkage=0.3``."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in selected.items())


def full_proba(model: Any, classes: np.ndarray, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``model``'s probabilities of its ``classes`` spread over all ``n_classes`` (0 for a class it never saw)."""
    proba = np.zeros((len(X), n_classes))
    proba[:, classes] = model.predict_proba(X)
    return proba


def concatenated(blocks: Mapping[str, np.ndarray], inputs: tuple[str, ...]) -> np.ndarray:
    if len(inputs) == 1:
        return blocks[inputs[0]]
    return np.concatenate([blocks[name] for name in inputs], axis=1)


class FittedFeatures(Fitted):
    node: Features

    def __init__(
        self, node: Features, model: Any, classes: np.ndarray, n_classes: int, selected: dict[str, Any]
    ) -> None:
        self.node, self.model, self.classes, self.n_classes, self.selected = node, model, classes, n_classes, selected

    def proba(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        return full_proba(self.model, self.classes, concatenated(blocks, self.node.inputs), self.n_classes)

    def choices(self) -> dict[str, Any]:
        return dict(self.selected)

    def describe(self) -> str:
        return described(self.selected)


class FittedLate(Fitted):
    """A late fusion: ``members`` those it kept (all but where ``weights=trimmed`` dropped some: ``dropped``)."""

    node: Late

    def __init__(
        self, node: Late, members: list[Fitted], weights: np.ndarray, dropped: Mapping[str, Dropped] | None = None
    ) -> None:
        self.node, self.members, self.weights, self.dropped = node, members, weights, dict(dropped or {})
        if all(m.inner_proba is not None for m in members):
            self.inner_proba = _mixture([m.inner_proba for m in members], weights)  # type: ignore[misc]

    def proba(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        return _mixture([m.proba(blocks) for m in self.members], self.weights)

    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for m in self.members for name in m.inputs()))

    def choices(self) -> dict[str, Any]:
        choices = {
            "weights": [float(w) for w in self.weights],
            "members": {m.node.expr: m.choices() for m in self.members},
        }
        if self.node.weights == "trimmed":
            choices["dropped"] = {expr: d._asdict() for expr, d in self.dropped.items()}
        return choices

    def shares(self) -> dict[str, float]:
        """Each member's share of the fusion, nested late fusions flattened (their members' shares multiplied)."""
        shares: dict[str, float] = {}
        for member, weight in zip(self.members, self.weights):
            for expr, share in (member.shares() if isinstance(member, FittedLate) else {member.node.expr: 1.0}).items():
                shares[expr] = shares.get(expr, 0.0) + float(weight) * share
        return shares

    def all_dropped(self) -> dict[str, Dropped]:
        """The members this fusion and the late fusions inside it dropped."""
        nested = [m.all_dropped() for m in self.members if isinstance(m, FittedLate)]
        return {expr: gap for dropped in [self.dropped, *nested] for expr, gap in dropped.items()}

    def describe(self) -> str:
        parts = ["weights " + ", ".join(f"{expr} {share:.2f}" for expr, share in self.shares().items())]
        if dropped := self.all_dropped():
            parts.append("dropped " + described_drops(dropped))
        return "; ".join(parts + self._heads())

    def _heads(self) -> list[str]:
        """What the members that are not late fusions chose, nested ones' included."""
        heads = []
        for m in self.members:
            if isinstance(m, FittedLate):
                heads += m._heads()
            elif m.describe():
                heads.append(f"{m.node.expr}: {m.describe()}")
        return heads


def _mixture(probas: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return np.tensordot(weights, np.stack(probas), axes=1)


def meta_features(probas: list[np.ndarray]) -> np.ndarray:
    """What a stacking meta-head reads: the members' log-probabilities side by side."""
    return np.concatenate([np.log(np.clip(p, EPS, 1.0)) for p in probas], axis=1)


class FittedStack(Fitted):
    node: Stack

    def __init__(
        self, node: Stack, members: list[Fitted], meta: Any, classes: np.ndarray, n_classes: int, selected: dict
    ) -> None:
        self.node, self.members, self.meta, self.classes, self.n_classes, self.selected = (
            node,
            members,
            meta,
            classes,
            n_classes,
            selected,
        )

    def proba(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        return full_proba(
            self.meta, self.classes, meta_features([m.proba(blocks) for m in self.members]), self.n_classes
        )

    def choices(self) -> dict[str, Any]:
        return {"meta": dict(self.selected), "members": {m.node.expr: m.choices() for m in self.members}}

    def describe(self) -> str:
        meta = described(self.selected)
        return f"meta {meta}; " + "; ".join(f"{m.node.expr}: {m.describe()}" for m in self.members if m.describe())


class FittedBest(Fitted):
    node: Best

    def __init__(self, node: Best, chosen: Fitted, scores: dict[str, float]) -> None:
        self.node, self.chosen, self.scores = node, chosen, scores
        self.inner_proba = chosen.inner_proba

    def proba(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.chosen.proba(blocks)

    def inputs(self) -> tuple[str, ...]:
        return self.chosen.inputs()

    def choices(self) -> dict[str, Any]:
        return {"chosen": self.chosen.node.expr, "inner_scores": self.scores, "of_chosen": self.chosen.choices()}

    def describe(self) -> str:
        detail = self.chosen.describe()
        return self.chosen.node.expr + (f" ({detail})" if detail else "")
