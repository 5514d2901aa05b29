"""In-fold univariate feature selection: the logistic head over the columns of best ANOVA F, ranked per inner fold."""

from __future__ import annotations

import numpy as np
import pytest

import mvemo.fuse.heads.selected as selected
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.heads.selected import SelectLogisticHead, ranked_columns
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.selection import SelectionConfig


def sparse(n: int = 120, d: int = 300, informative: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes that differ in ``informative`` columns among ``d`` of noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.standard_normal((n, d))
    X[:, :informative] += 1.5 * rng.standard_normal((3, informative))[y]
    return X, y


def log_loss(head: object, X: np.ndarray, y: np.ndarray) -> float:
    proba = head.predict_proba(X)  # type: ignore[attr-defined]
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1))))


def test_a_few_telling_columns_among_many_are_kept_and_predict_better() -> None:
    X_all, y_all = sparse(n=720)
    X, y, held_out, y_held = X_all[:120], y_all[:120], X_all[120:], y_all[120:]
    chosen = SelectLogisticHead().fit(X, y)
    assert chosen.selected_["columns"] <= 30 and set(range(5)) <= set(chosen.columns_.tolist())
    assert isinstance(chosen.linear_, LinearSoftmax) and np.count_nonzero(chosen.linear_.weights.any(axis=0)) == len(
        chosen.columns_
    )
    assert log_loss(chosen, held_out, y_held) < log_loss(LogisticHead().fit(X, y), held_out, y_held)


def test_keeping_every_column_is_the_logistic_head() -> None:
    X, y = sparse(d=20, informative=10)
    every = SelectLogisticHead(shares=(1.0,)).fit(X, y)
    plain = LogisticHead().fit(X, y)
    assert every.selected_["C"] == plain.selected_["C"]
    np.testing.assert_allclose(every.inner_proba_, plain.inner_proba_, atol=1e-6)
    np.testing.assert_allclose(every.predict_proba(X), plain.predict_proba(X), atol=1e-6)


def test_columns_are_ranked_on_each_inner_folds_training_rows_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = sparse(n=100, d=50)
    seen: list[int] = []

    def spy(Z: np.ndarray, target: np.ndarray) -> np.ndarray:
        seen.append(len(Z))
        return ranked_columns(Z, target)

    monkeypatch.setattr(selected, "ranked_columns", spy)
    head = SelectLogisticHead(inner_folds=5).fit(X, y)
    assert seen[:-1] == [80] * 5 and seen[-1] == 100, "five inner training sets of 80 rows, then all 100"
    assert head.inner_proba_.shape == (100, 3)


def test_ranking_puts_the_telling_columns_first_and_constant_ones_last() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    X = rng.standard_normal((90, 12))
    X[:, :3] += 2.0 * np.eye(3)[y]  # column c tells class c apart
    X[:, 11] = 4.0
    order = ranked_columns(X, y)
    assert set(order[:3].tolist()) == {0, 1, 2} and order[-1] == 11


def test_it_is_a_family_the_inner_folds_can_choose() -> None:
    head = make_head(None, SelectionConfig(heads=("logistic", "select-logistic")))
    fitted = head.fit(*sparse())
    assert fitted.selected_["head"] in ("logistic", "select-logistic")
    assert isinstance(make_head("select-logistic", None, shares=[0.1, 0.5]), SelectLogisticHead)
