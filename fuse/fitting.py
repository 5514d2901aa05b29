"""Fitting the model trees of ``fuse.compose`` on some rows (an outer fold's training rows, or every clip for the final
model), every choice made on inner folds drawn from those rows alone, so that an outer test fold never influences a
choice.

A weighted late fusion's weights are refitted per inner fold for its score; a stack's score comes from a second level
of inner folds over its members' out-of-fold probabilities, which is optimistic (see
``fuse.compose.choice_among_fusions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mvemo.fuse.compose import Best, Features, Late, Node, Stack, inputs_of
from mvemo.fuse.fitted import (
    Fitted,
    FittedBest,
    FittedFeatures,
    FittedLate,
    FittedStack,
    concatenated,
    full_proba,
    meta_features,
)
from mvemo.fuse.heads.families import family_head
from mvemo.fuse.heads.linear import fit_head
from mvemo.fuse.heads.patches import patch_head
from mvemo.fuse.heads.upper import UpperHead
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.metrics import best_f1_threshold
from mvemo.fuse.selection import (
    Dropped,
    SelectionConfig,
    choose,
    inner_score,
    mixture_weights,
    row_scores,
    trim,
)
from mvemo.manifests.folds import inner_splits


@dataclass
class Training:
    """The rows a model is fitted on and how its choices are made.

    ``blocks`` maps each input to its (n, d) matrix of these rows; ``y`` holds class
    indices into ``n_classes``; ``groups`` the rows' groups, kept whole by inner folds;
    ``in_sample`` the inputs whose rows trained what computed them (nets fine-tuned on
    these rows), so that inner out-of-fold probabilities over them are in-sample.
    Fits are remembered, so a head shared by several models is fitted once.
    """

    blocks: Mapping[str, np.ndarray]
    y: np.ndarray
    groups: list[str]
    n_classes: int
    head: Any
    selection: SelectionConfig
    patches: Mapping[str, int] = field(default_factory=dict)  # inputs that keep each clip's patches: how many
    upper: Mapping[str, UpperLayers] = field(default_factory=dict)  # inputs cut below layers to fine-tune: those
    in_sample: frozenset[str] = frozenset()
    fitted: dict[Node, Fitted] = field(default_factory=dict)

    def head_of(self, node: Features) -> Any:
        """The head a feature-level model fits: over one input of activations at a cut, the layers above it
        fine-tuned (``fuse.heads.upper``); over one input of patches, a patch-level head (``fuse.heads.patches``);
        otherwise ``head``."""
        (first, *others) = node.inputs
        if not others and first in self.upper:
            selection = self.selection
            return UpperHead(
                self.upper[first],
                lr_grid=selection.upper_lr_grid,
                weight_decay_grid=selection.upper_weight_decay_grid,
                max_epochs=selection.upper_max_epochs,
                scoring=selection.scoring,
                random_state=selection.seed,
            )
        if not others and first in self.patches:
            return patch_head(self.head, self.patches[first], self.selection.scoring)
        return self.head

    def on_rows(self, rows: np.ndarray) -> Training:
        """The training on ``rows`` of these rows alone, with fits of its own (its inner folds drawn from them)."""
        blocks = {name: X[rows] for name, X in self.blocks.items()}
        return replace(self, blocks=blocks, y=self.y[rows], groups=[self.groups[r] for r in rows], fitted={})

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return inner_splits(self.y, self.groups, k=self.selection.inner_folds, seed=self.selection.seed)


class Trainings:
    """The ``Training`` of each set of rows, so that models on the same rows share their fits."""

    def __init__(
        self,
        y: np.ndarray,
        groups: list[str],
        n_classes: int,
        head: Any,
        selection: SelectionConfig,
        patches: Mapping[str, int] | None = None,
        upper: Mapping[str, UpperLayers] | None = None,
        in_sample: frozenset[str] = frozenset(),
    ) -> None:
        self.y, self.groups, self.n_classes, self.head, self.selection = y, groups, n_classes, head, selection
        self.patches, self.upper, self.in_sample = dict(patches or {}), dict(upper or {}), in_sample
        self.by_rows: dict[bytes, Training] = {}

    def on(self, rows: np.ndarray, matrices: Mapping[str, np.ndarray]) -> Training:
        """The training on ``rows`` of the cache, holding those rows of each of ``matrices`` (input -> all rows)."""
        key = rows.tobytes()
        if key not in self.by_rows:
            self.by_rows[key] = Training(
                {},
                self.y[rows],
                [self.groups[r] for r in rows],
                self.n_classes,
                self.head,
                self.selection,
                self.patches,
                self.upper,
                self.in_sample,
            )
        training = self.by_rows[key]
        training.blocks = dict(training.blocks) | {
            name: X[rows] for name, X in matrices.items() if name not in training.blocks
        }
        return training


def fit(node: Node, training: Training, *, inner: bool = False) -> Fitted:
    """``node`` fitted on ``training``'s rows; with ``inner``, its ``inner_proba`` too (a choice above reads it)."""
    fitted = training.fitted.get(node)
    if fitted is None or (inner and fitted.inner_proba is None):
        fitted = _FIT[type(node)](node, training, inner)
        training.fitted[node] = fitted
    return fitted


def _fit_features(node: Features, training: Training, inner: bool) -> Fitted:
    X = concatenated(training.blocks, node.inputs)
    head = fit_head(training.head_of(node), X, training.y, np.asarray(training.groups))
    fitted = FittedFeatures(node, head, head.classes_, training.n_classes, getattr(head, "selected_", {}))
    if getattr(head, "inner_proba_", None) is not None:
        fitted.inner_proba = np.zeros((len(X), training.n_classes))
        fitted.inner_proba[:, head.classes_] = head.inner_proba_
    elif inner:  # a head with fixed settings chose nothing on inner folds: one fit per inner fold
        fitted.inner_proba = np.zeros((len(X), training.n_classes))
        for train, val in training.splits():
            part = fit_head(training.head_of(node), X[train], training.y[train], np.asarray(training.groups)[train])
            fitted.inner_proba[val] = full_proba(part, part.classes_, X[val], training.n_classes)
    return fitted


def in_sample(node: Node, training: Training) -> bool:
    """Whether ``node``'s inner probabilities are in-sample at some level: it reads an input computed by a net trained
    on these rows."""
    return bool(set(inputs_of(node)) & training.in_sample)


def trimmed(
    members: list[Any], scores: list[np.ndarray], groups: Any, tuned_inputs: frozenset[str]
) -> tuple[list[Any], dict[str, Dropped]]:
    """The members a trimmed late fusion keeps, and those it drops with their gaps (``fuse.selection.trim``), from each
    member's ``scores`` of the rows on its inner out-of-fold predictions (classes, tags or values alike); a member
    over one of ``tuned_inputs`` (computed by a net fine-tuned on these rows) is kept unjudged and sets no bar."""
    decided = trim(scores, groups, [not set(inputs_of(m.node)) & tuned_inputs for m in members])
    return [members[i] for i in decided.kept], decided.dropped([m.node.expr for m in members])


def inner_threshold(fitted: Fitted, y: np.ndarray, training: Training) -> float:
    """The probability of the second of two classes at and above which a row is called of it: the best F1 of the
    model's inner out-of-fold probabilities of ``training``'s rows (classes ``y``), where those are out of sample at
    every level; else 0.5 (no inner probabilities, or in-sample ones: a net fine-tuned on these rows)."""
    if fitted.inner_proba is None or in_sample(fitted.node, training):
        return 0.5
    return best_f1_threshold(y, fitted.inner_proba[:, 1])


def _fit_late(node: Late, training: Training, inner: bool) -> Fitted:
    members = [fit(m, training, inner=inner or node.weights != "equal") for m in node.members]
    if node.weights == "equal":
        return FittedLate(node, members, np.full(len(members), 1.0 / len(members)))
    if node.weights == "trimmed":
        scoring = training.selection.choice_scoring or training.selection.scoring
        scores = [row_scores(training.y, m.inner_proba, scoring) for m in members]  # type: ignore[arg-type]
        kept, dropped = trimmed(members, scores, training.groups, training.in_sample)
        return FittedLate(node, kept, np.full(len(kept), 1.0 / len(kept)), dropped)
    late = FittedLate(node, members, inner_weights(members, training))
    late.inner_proba = cross_fitted(node, training) if inner else None
    return late


def inner_weights(members: list[Fitted], training: Training) -> np.ndarray:
    """A late fusion's weights by its inner folds: each member whose inner probabilities are in-sample (a net
    fine-tuned on these rows) keeps its equal share, 1/n; the others share the rest as the mixture that maximizes the
    likelihood of their own inner out-of-fold probabilities weighs them (``fuse.selection.mixture_weights``)."""
    weights = np.full(len(members), 1.0 / len(members))
    judged = [i for i, m in enumerate(members) if not in_sample(m.node, training)]
    if len(judged) > 1:
        probas: list[np.ndarray] = [members[i].inner_proba for i in judged]  # type: ignore[misc]
        weights[judged] = len(judged) / len(members) * mixture_weights(probas, training.y)
    return weights


def _fit_stack(node: Stack, training: Training, inner: bool) -> Fitted:
    members = [fit(m, training, inner=True) for m in node.members]
    meta = family_head("logistic", training.selection)
    meta.fit(meta_features([m.inner_proba for m in members]), training.y, groups=training.groups)  # type: ignore[misc]
    stack = FittedStack(node, members, meta, meta.classes_, training.n_classes, meta.selected_)
    stack.inner_proba = cross_fitted(node, training) if inner else None
    return stack


def cross_fitted(node: Stack | Late, training: Training) -> np.ndarray:
    """Inner out-of-fold probabilities of a combination fitted on its members' inner probabilities (a stack, a late
    fusion of inner weights), none of whose rows any level was fitted on: for each inner split the whole model is
    fitted afresh on the split's training rows (its members' own inner folds drawn from those), and predicts the
    split's validation rows. Its meta-head's (or its weights') own out-of-fold probabilities would read members'
    probabilities of the other rows, which fits that saw the validation rows made: optimistic, so its thresholds
    and its inner accuracy would lean high."""
    proba = np.zeros((len(training.y), training.n_classes))
    for train, val in training.splits():
        proba[val] = fit(node, training.on_rows(train), inner=False).proba(
            {n: X[val] for n, X in training.blocks.items()}
        )
    return proba


def _fit_best(node: Best, training: Training, inner: bool) -> Fitted:
    members = [fit(m, training, inner=True) for m in node.members]
    selection = training.selection
    scoring = selection.choice_scoring or selection.scoring
    probas: list[np.ndarray] = [m.inner_proba for m in members]  # type: ignore[misc]
    scores = {m.node.expr: inner_score(training.y, p, scoring) for m, p in zip(members, probas)}
    return FittedBest(node, members[choose(training.y, probas, scoring, selection.choice_rule)], scores)


_FIT: dict[type, Any] = {Features: _fit_features, Late: _fit_late, Stack: _fit_stack, Best: _fit_best}
