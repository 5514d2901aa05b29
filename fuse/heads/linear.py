"""Fusion heads: paper 001's softmax layer over concatenated embeddings, as scikit-learn estimators.

Both heads standardize with statistics of the training rows only and end in a
linear softmax layer, so a fitted head reduces to ``fuse.heads.softmax.LinearSoftmax``
(mean, scale, weights, bias), which is what a saved model stores.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from mvemo.fuse.heads.logistic_path import logistic_path
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.heads.standardize import standardization, standardized
from mvemo.fuse.selection import SelectionConfig, inner_score
from mvemo.manifests.errors import ConfigError, is_number
from mvemo.manifests.folds import inner_split, inner_splits
from mvemo.manifests.shared_optimizers import OPTIMIZERS, make_optimizer


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


POSITIVE = (lambda v: is_number(v) and v > 0, "a number > 0")
COUNT = (_is_count, "an integer >= 1")
SEED = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")


class _LinearHead(ClassifierMixin, BaseEstimator):
    """Shared predict/predict_proba of heads that expose ``linear_`` after ``fit``."""

    linear_: LinearSoftmax
    classes_: np.ndarray
    # where settings were chosen on inner folds: what was chosen, and the inner folds' out-of-fold probabilities
    selected_: dict[str, float]
    inner_proba_: np.ndarray | None
    # Each parameter's check and what it expects, for a config's [head] table.
    PARAM_RULES: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {}

    def chooses(self) -> bool:
        """Whether ``fit`` chooses settings on inner folds (and so leaves their out-of-fold ``inner_proba_``)."""
        raise NotImplementedError

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "linear_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.linear_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class _ChoosingHead(_LinearHead):
    """A head that chooses its settings on inner folds of its training rows, grouped as the outer ones."""

    inner_folds: int
    scoring: str
    random_state: int

    def _splits(self, y: np.ndarray, groups: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        return inner_splits(y, _groups(groups, len(y)), k=self.inner_folds, seed=self.random_state)


class LogisticHead(_ChoosingHead):
    """Standardization + multinomial logistic regression (L-BFGS, L2 ``C``): the fast default.

    With ``C=None`` (the default) C is chosen from ``C_grid`` on grouped, stratified
    inner folds of the training rows (``fuse.heads.logistic_path``); then
    ``selected_`` holds it and ``inner_proba_`` the inner folds' out-of-fold
    probabilities at it, rows as given to ``fit``, columns ``classes_``.
    The standardization uses every training row, inner validation rows included:
    it reads no label, and the outer test fold never reaches it.

    Measured against ``SoftmaxHead`` (the same softmax layer trained by a first-order
    optimizer with early stopping): equal accuracy within fold noise, 10-40x faster.
    """

    PARAM_RULES: ClassVar = {
        "C": (lambda v: v is None or (is_number(v) and v > 0), "a number > 0, or none to choose it on inner folds"),
        "max_iter": COUNT,
        "tol": POSITIVE,
        "random_state": SEED,
    }

    def __init__(
        self,
        C: float | None = None,
        max_iter: int = 300,
        tol: float = 1e-3,
        C_grid: tuple[float, ...] = SelectionConfig.C_grid,
        inner_folds: int = 5,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.C_grid = C_grid
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.random_state = random_state

    def chooses(self) -> bool:
        return self.C is None

    def fit(self, X: Any, y: Any, groups: Any = None) -> LogisticHead:
        """Fit on rows ``X`` of classes ``y``; inner folds keep each of ``groups`` whole (default: a group per row)."""
        Z, y, target, mean, scale = prepared(self, X, y)
        C, self.selected_, self.inner_proba_ = self.C, {}, None
        with threadpool_limits(
            1
        ):  # BLAS threads slowed these thin products 1.6x (`mvemo bench fuse`): fan fits out instead
            if C is None:
                best, self.inner_proba_, _ = logistic_path(
                    Z,
                    target,
                    self._splits(y, groups),
                    Cs=tuple(self.C_grid),
                    scoring=self.scoring,
                    tol=self.tol,
                    max_iter=self.max_iter,
                )
                C = self.C_grid[best]
                self.selected_ = {"C": C}
            model = LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol).fit(Z, y)
        weights, bias = softmax_layer(model.coef_, model.intercept_, len(self.classes_))
        self.n_iter_ = int(np.max(model.n_iter_))
        self.linear_ = LinearSoftmax(
            self.classes_, *(np.asarray(a, dtype=np.float64) for a in (mean, scale, weights, bias))
        )
        return self


def softmax_layer(weights: np.ndarray, bias: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A scikit-learn linear model's ``coef_`` and ``intercept_`` as one logit per class: for two classes it keeps
    one logit, the second class's against a first of 0."""
    if n_classes == 2 and len(weights) == 1:
        return np.vstack([np.zeros_like(weights), weights]), np.concatenate([[0.0], bias])
    return weights, bias


def _groups(groups: Any, n: int) -> list[str]:
    """The rows' groups as strings (each row its own group where none are given)."""
    return [str(i) for i in range(n)] if groups is None else [str(g) for g in groups]


class SoftmaxHead(_ChoosingHead):
    """Paper 001's "SoftMax layer": standardization, one linear layer, cross-entropy + L2, trained
    with a first-order optimizer.

    With ``lr`` or ``l2`` None (the default), the missing ones are chosen from
    ``lr_grid`` and ``l2_grid`` on grouped, stratified inner folds of the training
    rows, each inner fold trained with early stopping on its own validation rows;
    the epochs are the mean of the inner folds' best epochs, and the head is then
    trained on every row for that many epochs. ``selected_`` holds the three and
    ``inner_proba_`` the inner folds' out-of-fold probabilities, each fold read at the
    epoch the other folds chose (``cross_fitted_epochs``).

    With both given, the epoch is chosen on one inner split (``manifests.folds.inner_split``,
    about ``val_fraction`` of the rows); rows too few to split train ``max_epochs`` epochs:
    no row ever validates the epoch it trained.

    Parameters
    ----------
    optimizer : {"adam", "sgd", "rmsprop"}
    lr, l2 : float or None
    momentum : float
    max_epochs, patience, batch_size : int
    val_fraction : float
    lr_grid, l2_grid : tuple of float
    inner_folds : int
    scoring : {"log_loss", "accuracy", "f1_macro"}
    random_state : int
    """

    PARAM_RULES: ClassVar = {
        "optimizer": (lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        "lr": (lambda v: v is None or (is_number(v) and v > 0), "a number > 0"),
        "l2": (lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0"),
        "momentum": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "max_epochs": COUNT,
        "patience": COUNT,
        "batch_size": COUNT,
        "val_fraction": (lambda v: is_number(v) and 0 < v < 0.5, "a share in (0, 0.5)"),
        "random_state": SEED,
    }

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float | None = None,
        l2: float | None = None,
        momentum: float = 0.9,
        max_epochs: int = 200,
        patience: int = 10,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        lr_grid: tuple[float, ...] = SelectionConfig.lr_grid,
        l2_grid: tuple[float, ...] = SelectionConfig.l2_grid,
        inner_folds: int = 5,
        scoring: str = "log_loss",
        random_state: int = 0,
    ) -> None:
        self.optimizer = optimizer
        self.lr = lr
        self.l2 = l2
        self.momentum = momentum
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.lr_grid = lr_grid
        self.l2_grid = l2_grid
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.random_state = random_state

    def chooses(self) -> bool:
        return self.lr is None or self.l2 is None

    def fit(self, X: Any, y: Any, groups: Any = None) -> SoftmaxHead:
        Z, y, target, mean, scale = prepared(self, X, y)
        Z = Z.astype(np.float32)
        group_list = _groups(groups, len(y))
        self.inner_proba_ = None
        if self.lr is None or self.l2 is None:
            lr, l2, epochs = self._select(Z, y, target, group_list)
            self.selected_ = {"lr": lr, "l2": l2, "epochs": epochs}
            layer, _ = self._train(Z, target, np.arange(len(y)), None, lr=lr, l2=l2, epochs=epochs)
        else:
            self.selected_ = {}
            try:
                train, val = inner_split(target, group_list, share=self.val_fraction, seed=self.random_state)
            except ConfigError:
                train, val = np.arange(len(target)), None
            layer, _ = self._train(Z, target, train, val, lr=self.lr, l2=self.l2, epochs=self.max_epochs)
        weights, bias = (p.detach().numpy().astype(np.float64) for p in (layer.weight, layer.bias))
        self.linear_ = LinearSoftmax(self.classes_, mean.astype(np.float64), scale.astype(np.float64), weights, bias)
        return self

    def _select(self, Z: np.ndarray, y: np.ndarray, target: np.ndarray, groups: list[str]) -> tuple[float, float, int]:
        """(lr, l2, epochs) with the best pooled inner score; sets ``inner_proba_``."""
        splits = self._splits(y, groups)
        lrs = self.lr_grid if self.lr is None else (self.lr,)
        l2s = self.l2_grid if self.l2 is None else (self.l2,)
        best: tuple[float, float, float, int, np.ndarray] | None = None
        for lr in lrs:
            for l2 in l2s:
                trained = []
                for train, val in splits:
                    curve: list[np.ndarray] = []
                    _, epoch = self._train(Z, target, train, val, lr=lr, l2=l2, epochs=self.max_epochs, curve=curve)
                    trained.append((epoch, curve))
                proba = cross_fitted_epochs(trained, [val for _, val in splits], (len(target), len(self.classes_)))
                score = inner_score(target, proba, self.scoring)
                if best is None or score > best[0]:
                    best = (score, lr, l2, max(1, round(float(np.mean([epoch for epoch, _ in trained])))), proba)
        assert best is not None  # the grids are non-empty
        _, lr, l2, epochs, self.inner_proba_ = best
        return lr, l2, epochs

    def _train(
        self,
        Z: np.ndarray,
        target: np.ndarray,
        train: np.ndarray,
        val: np.ndarray | None,
        *,
        lr: float,
        l2: float,
        epochs: int,
        curve: list[np.ndarray] | None = None,
    ) -> Any:
        """A linear layer trained on rows ``train`` for at most ``epochs`` epochs, and the epoch kept: the one of
        least validation loss on rows ``val`` (early stopping after ``patience`` worse epochs), else the last.
        ``curve``, where given, receives the probabilities of rows ``val`` after each epoch."""
        import torch

        generator = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        layer = torch.nn.Linear(Z.shape[1], len(self.classes_))
        optimizer = make_optimizer(self.optimizer, layer.parameters(), lr=lr, momentum=self.momentum)
        Zt, yt = torch.from_numpy(Z), torch.from_numpy(target)
        best, best_state, best_epoch, stale = np.inf, None, epochs, 0
        for epoch in range(1, epochs + 1):
            order = train[torch.randperm(len(train), generator=generator).numpy()]
            for start in range(0, len(order), self.batch_size):
                batch = torch.from_numpy(order[start : start + self.batch_size])
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(layer(Zt[batch]), yt[batch]) + l2 * layer.weight.pow(2).sum()
                loss.backward()
                optimizer.step()
            if val is None:
                continue
            with torch.no_grad():
                held = torch.from_numpy(val)
                logits = layer(Zt[held])
                score = torch.nn.functional.cross_entropy(logits, yt[held]).item()
                if curve is not None:
                    curve.append(torch.softmax(logits, dim=1).numpy().astype(np.float64))
            if score < best - 1e-6:
                best, best_state, best_epoch, stale = (
                    score,
                    {k: v.clone() for k, v in layer.state_dict().items()},
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            layer.load_state_dict(best_state)
        return layer, best_epoch


def cross_fitted_epochs(
    trained: list[tuple[int, list[np.ndarray]]], vals: list[np.ndarray], shape: tuple[int, int]
) -> np.ndarray:
    """Out-of-fold probabilities of inner folds trained with early stopping, each fold's rows read at the epoch the
    other folds chose (their mean best epoch, or its last epoch where it stopped before): read at the epoch chosen
    on them, its own rows would flatter the setting."""
    proba = np.zeros(shape)
    for k, ((_, curve), val) in enumerate(zip(trained, vals, strict=True)):
        others = [epoch for j, (epoch, _) in enumerate(trained) if j != k] or [trained[k][0]]
        proba[val] = curve[min(max(1, round(float(np.mean(others)))), len(curve)) - 1]
    return proba


def fit_head(head: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Any:
    """A clone of ``head`` fitted on ``X, y``, given the rows' ``groups`` where its ``fit`` takes them: mvemo's
    heads do, and any scikit-learn classifier without them serves too."""
    fitted = clone(head)
    if "groups" in inspect.signature(fitted.fit).parameters:
        return fitted.fit(X, y, groups=groups)
    return fitted.fit(X, y)


def prepared(head: _LinearHead, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A family's rows standardized, the labels as validated, their class indices, and the standardization; sets
    ``head.classes_``."""
    X, y = validate_data(head, X, y, dtype=(np.float32, np.float64))  # float32 stays: 3x faster fits, same accuracy
    head.classes_ = unique_labels(y)
    if len(head.classes_) < 2:
        raise ValueError(f"{type(head).__name__} needs at least 2 classes; got 1 class ({head.classes_.tolist()})")
    mean, scale = standardization(X)
    return standardized(X, mean, scale), y, np.searchsorted(head.classes_, y), mean, scale
