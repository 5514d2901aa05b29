"""Model selection on inner folds: the settings and the scores.

Every choice of stage two (a head's C, learning rate, weight decay and epochs, the
weights of a decision-level fusion, the meta-head of stacking, the fusion picked as
``integrated``) is scored here, on out-of-fold probabilities of inner folds drawn
from the outer fold's training rows only (``manifests.folds.inner_splits``). The logistic head's path of C values,
which fits, is ``fuse.heads.logistic_path``'s: this module imports no scikit-learn until a macro F1 is scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mvemo.manifests.errors import ConfigError, is_number, is_seed, require

SCORINGS = ("log_loss", "accuracy", "f1_macro")
CHOICE_RULES = ("best", "one-se")
VALUE_SCALES = ("ratings", "least-squares")
VALUE_HEAD_NAMES = ("ridge", "kernel-ridge")  # fuse.targets.value_heads.VALUE_HEADS
# Probabilities are clipped here before a log: a class a fit never saw scores finite.
EPS = 1e-7
# The C path stops this many grid steps past the best score: larger C only fit the training rows closer. The
# log-loss of held-out rows is smooth and single-peaked in log C (one step is enough and saved 30 % of a nested CV);
# accuracy and F1 move in steps and plateaus, so they get two.
PATH_PATIENCE = {"log_loss": 1, "accuracy": 2, "f1_macro": 2}


def decades(low: float, high: float) -> tuple[float, ...]:
    """``low``, ``10 * low``, ... up to ``high``: a log grid of decades."""
    return tuple(float(low * 10**i) for i in range(round(np.log10(high / low)) + 1))


@dataclass(frozen=True)
class SelectionConfig:
    """How stage two chooses on inner folds (a config's ``[fuse]`` table).

    Parameters
    ----------
    inner_folds : int
        Inner folds of each outer fold's training rows (fewer where a class has fewer groups).
    scoring : {"log_loss", "accuracy", "f1_macro"}
        What the inner folds' pooled out-of-fold predictions are scored by.
    C_grid : tuple of float
        The logistic head's C, tried in increasing order.
    lr_grid, l2_grid : tuple of float
        The softmax head's learning rates and L2 weights; its epochs are chosen too.
    seed : int
        Seed of the inner folds' shuffle.
    heads : tuple of str
        The head families (``fuse.heads.families.HEADS``); several: each fits and the inner folds choose one per model
        and fold.
    upper_lr_grid, upper_weight_decay_grid : tuple of float
        The learning rates and weight decays an upper head (``fuse.heads.upper``: the layers above a cut) tries.
    upper_max_epochs : int
        The most epochs an upper head trains; early stopping on its inner folds chooses fewer.
    choice_scoring : {"log_loss", "accuracy", "f1_macro"} or None
        What a choice among whole models is scored by (``best(...)``); None: as ``scoring``.
    choice_rule : {"best", "one-se"}
        How that choice is made: ``best`` (default), the candidate of the best inner score; ``one-se`` (the
        one-standard-error rule), the first candidate in the model's order whose inner score lies within one standard
        error of the best's (the paired difference over the inner out-of-fold rows). ``best(...)`` lists its
        candidates as the user wrote them (``fuse.compose.choice_among_fusions`` its broadest ensemble first). On
        4q-dev and mved-sample the two rules read the same (docs/results.md).
        Classes and tags only: valence and arousal choose the candidate of the least inner error.
    value_scale : {"ratings", "least-squares"}
        What scale a model of values predicts on: ``ratings`` (default), each dimension's prediction mapped linearly to
        the mean and spread of the ratings, the map learned on the model's inner out-of-fold predictions
        (``fuse.targets.regression.on_the_ratings_scale``: CCC, the field's measure, counts spread and offset);
        ``least-squares``, the heads' predictions as fitted, shrunk toward the mean (the least squared error: R²,
        RMSE).
    value_heads : tuple of str
        The heads of a model of values (``fuse.targets.value_heads``): ``ridge`` (default), ``kernel-ridge`` (RBF);
        both: each fits, and the inner folds choose one per value, input and fold.
    """

    inner_folds: int = 5
    scoring: str = "log_loss"
    C_grid: tuple[float, ...] = decades(1e-4, 1e2)
    lr_grid: tuple[float, ...] = (1e-3, 1e-2)
    l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    seed: int = 0
    heads: tuple[str, ...] = ("logistic",)
    upper_lr_grid: tuple[float, ...] = (3e-4, 1e-3)
    upper_weight_decay_grid: tuple[float, ...] = (1e-3, 1e-2)
    upper_max_epochs: int = 40
    choice_scoring: str | None = None
    choice_rule: str = "best"
    value_scale: str = "ratings"
    value_heads: tuple[str, ...] = ("ridge",)

    def __post_init__(self) -> None:
        require(
            isinstance(self.heads, tuple | list) and bool(self.heads) and all(isinstance(h, str) for h in self.heads),
            f'[fuse] heads = {self.heads!r}: expected a non-empty list of head names, e.g. ["logistic", "lda"]',
        )
        object.__setattr__(self, "heads", tuple(dict.fromkeys(self.heads)))
        require(
            isinstance(self.inner_folds, int) and not isinstance(self.inner_folds, bool) and self.inner_folds >= 2,
            f"[fuse] inner_folds = {self.inner_folds!r}: expected an integer >= 2",
        )
        require(self.scoring in SCORINGS, f"[fuse] scoring = {self.scoring!r}: expected one of {SCORINGS}")
        require(
            self.choice_scoring is None or self.choice_scoring in SCORINGS,
            f"[fuse] choice_scoring = {self.choice_scoring!r}: expected one of {SCORINGS}",
        )
        require(
            self.choice_rule in CHOICE_RULES,
            f"[fuse] choice_rule = {self.choice_rule!r}: expected one of {CHOICE_RULES}",
        )
        require(
            self.value_scale in VALUE_SCALES,
            f"[fuse] value_scale = {self.value_scale!r}: expected one of {VALUE_SCALES}",
        )
        require(
            isinstance(self.value_heads, tuple | list)
            and bool(self.value_heads)
            and set(self.value_heads) <= set(VALUE_HEAD_NAMES),
            f"[fuse] value_heads = {self.value_heads!r}: expected a non-empty list of {list(VALUE_HEAD_NAMES)}",
        )
        object.__setattr__(self, "value_heads", tuple(dict.fromkeys(self.value_heads)))
        require(is_seed(self.seed), f"[fuse] seed = {self.seed!r}: expected an integer from 0 to 2**32-1")
        require(
            isinstance(self.upper_max_epochs, int)
            and not isinstance(self.upper_max_epochs, bool)
            and self.upper_max_epochs >= 1,
            f"[fuse] upper_max_epochs = {self.upper_max_epochs!r}: expected an integer >= 1",
        )
        for name in ("C_grid", "lr_grid", "l2_grid", "upper_lr_grid", "upper_weight_decay_grid"):
            grid = getattr(self, name)
            positive = name not in ("l2_grid", "upper_weight_decay_grid")
            valid = (
                isinstance(grid, tuple | list)
                and grid
                and all(is_number(v) and (v > 0 or (not positive and v == 0)) for v in grid)
            )
            require(
                bool(valid),
                f"[fuse] {name} = {grid!r}: expected a non-empty list of numbers {'> 0' if positive else '>= 0'}",
            )
            object.__setattr__(self, name, tuple(sorted(float(v) for v in grid)))

    @classmethod
    def from_table(cls, table: dict[str, Any], *, taken: tuple[str, ...] = ()) -> SelectionConfig:
        """From a config's ``[fuse]`` table, naming an unknown key (the ``taken`` keys, read by others, among those
        allowed)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"[fuse]: unknown key(s) {unknown}; allowed keys are {sorted(known | set(taken))}")
        return cls(**table)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def inner_score(y: np.ndarray, proba: np.ndarray, scoring: str) -> float:
    """The score of out-of-fold probabilities ``proba`` (n, n_classes) of classes ``y`` (indices): higher is better."""
    if scoring == "f1_macro":
        from sklearn.metrics import f1_score  # scikit-learn only where a choice is made: predict never imports it

        pred = np.argmax(proba, axis=1)
        return float(f1_score(y, pred, average="macro", labels=np.arange(proba.shape[1]), zero_division=0))
    return float(np.mean(row_scores(y, proba, scoring)))


def row_scores(y: np.ndarray, proba: np.ndarray, scoring: str) -> np.ndarray:
    """Each row's share of ``inner_score``: its log-probability of its class (``log_loss``), else whether its most
    probable class is its class (macro F1 has no share per row: accuracy's stands for it)."""
    if scoring == "log_loss":
        return np.log(np.clip(proba[np.arange(len(y)), y], EPS, 1.0))
    return (np.argmax(proba, axis=1) == y).astype(np.float64)


def choose(y: np.ndarray, probas: list[np.ndarray], scoring: str, rule: str) -> int:
    """The candidate a choice takes among out-of-fold ``probas``, listed in order of preference: the best scored
    (``best``), or the first within one standard error of it (``one-se``): the error of the paired per-row
    difference (``row_scores``), so that a candidate worse by less than the inner folds can tell is not passed over."""
    scores = [inner_score(y, p, scoring) for p in probas]
    top = int(np.argmax(scores))  # the first listed on a tie
    if rule == "best" or len(y) < 2:
        return top
    best_rows = row_scores(y, probas[top], scoring)
    for i, proba in enumerate(probas[:top]):
        difference = best_rows - row_scores(y, proba, scoring)
        if difference.mean() <= difference.std(ddof=1) / np.sqrt(len(y)):
            return i
    return top


def mixture_weights(probas: list[np.ndarray], y: np.ndarray, *, iterations: int = 200) -> np.ndarray:
    """Weights on the simplex of a mixture of the members' probabilities that maximize the likelihood of ``y``.

    The likelihood is concave in the weights; the EM update w_j <- mean_i(w_j p_ij / sum_k w_k p_ik)
    climbs it monotonically from equal weights.
    """
    p = np.clip(np.stack([proba[np.arange(len(y)), y] for proba in probas], axis=1), EPS, 1.0)  # (n, members)
    w = np.full(len(probas), 1.0 / len(probas))
    for _ in range(iterations):
        share = p * w
        share /= share.sum(axis=1, keepdims=True)
        updated = share.mean(axis=0)
        if np.max(np.abs(updated - w)) < 1e-6:
            return updated
        w = updated
    return w


# A member of a trimmed late fusion is dropped where its inner score lies more than this many standard errors under the
# best member's: clear evidence, not the inner folds' noise (docs/pipeline.md, "The default fusion rule"). Set before
# any measurement and never tuned.
TRIM_Z = 2.0


class Dropped(NamedTuple):
    """A member a trimmed late fusion dropped: how far its mean inner row score lies under that of the member that set
    the bar (``under``), and the standard error of that gap."""

    gap: float
    se: float
    under: str


@dataclass(frozen=True)
class Trim:
    """What trimming decided: the members kept (indices, in order) and, per member judged against the best, how far
    its mean row score lies under the best's and the standard error of that gap."""

    kept: list[int]
    gaps: dict[int, tuple[float, float]]
    best: int | None

    def dropped(self, names: list[str]) -> dict[str, Dropped]:
        """The members dropped, by their ``names``."""
        if self.best is None:  # no member was judged: none dropped
            return {}
        under = names[self.best]
        return {names[i]: Dropped(gap, se, under) for i, (gap, se) in self.gaps.items() if i not in self.kept}


def described_drops(dropped: Mapping[str, Dropped]) -> str:
    """The members a trimmed fusion dropped, in a few words for a report's table."""
    return ", ".join(f"{name} ({d.gap:.3f} under {d.under}, SE {d.se:.3f})" for name, d in dropped.items())


def clustered_se(d: np.ndarray, groups: Any) -> float:
    """The standard error of the mean of ``d`` (n,) with rows clustered by ``groups`` (n,): rows of one group (an
    artist's songs, a video's segments) are not independent, so their residuals are summed per group first (the
    cluster-robust variance, with the small-sample factor G / (G - 1))."""
    n = len(d)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(codes.max()) + 1 if n else 0
    if n_groups < 2:
        return float("inf")
    sums = np.bincount(codes, weights=d - d.mean(), minlength=n_groups)
    return float(np.sqrt(np.sum(sums**2) * n_groups / (n_groups - 1)) / n)


def trim(scores: list[np.ndarray], groups: Any, judged: list[bool], *, z: float = TRIM_Z) -> Trim:
    """The members of a late fusion that its inner folds do not show clearly weaker than the best.

    Parameters
    ----------
    scores : list of ndarray, shape (n,)
        Each member's score of each row on inner out-of-fold predictions, higher better (``row_scores``).
    groups : array-like, shape (n,)
        The rows' groups, for the standard error (``clustered_se``).
    judged : list of bool
        Which members may be judged: those whose inner predictions are out of sample at every level. The others
        (nets fine-tuned on these rows) are always kept and never set the bar.
    z : float
        How many standard errors of the paired gap make a member clearly weaker.
    """
    candidates = [i for i, ok in enumerate(judged) if ok]
    if len(candidates) < 2:
        return Trim(list(range(len(scores))), {}, None)
    best = max(candidates, key=lambda i: float(np.mean(scores[i])))  # the first listed on a tie
    gaps = {}
    for i in candidates:
        if i != best:
            d = scores[best] - scores[i]
            gaps[i] = (float(d.mean()), clustered_se(d, groups))
    kept = [i for i in range(len(scores)) if i not in gaps or gaps[i][0] <= z * gaps[i][1]]
    return Trim(kept, gaps, best)
