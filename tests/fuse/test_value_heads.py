"""The heads of values: kernel ridge's closed-form inner path against scikit-learn, and the choice between heads."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import check_estimator

from mvemo.fuse.heads.standardize import standardization
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.value_heads import KernelRidgeHead, RidgeHead, fit_value_head
from mvemo.manifests import ConfigError
from mvemo.manifests.folds import inner_splits


def curved_data(n: int, d: int = 4, *, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Columns of unequal scales, and values that rise and fall with the first of them: no line fits them."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 5.0, d) + rng.uniform(-3.0, 3.0, d)
    z = (X[:, 0] - X[:, 0].mean()) / X[:, 0].std()
    return X, np.sin(2 * z) + 0.5 * z**2 + noise * rng.standard_normal(n)


def test_the_closed_form_inner_path_equals_scikit_learn_kernel_ridge_per_split() -> None:
    X, y = curved_data(80)
    groups = [f"g{i // 2}" for i in range(80)]
    alphas, multiples = (0.01, 1.0, 100.0), (0.5, 2.0)
    head = KernelRidgeHead(alphas=alphas, gamma_grid=multiples).fit(X, y, groups=groups)
    mean, scale = standardization(X)
    Z = (X - mean) / scale
    reference = {}
    for multiple in multiples:
        for alpha in alphas:
            pred = np.zeros(80)
            for train, val in inner_splits(np.zeros(80, dtype=int), groups, k=5, seed=0):
                held_out = np.clip(Z[val], Z[train].min(axis=0), Z[train].max(axis=0))
                offset = y[train].mean()
                ridge = KernelRidge(alpha=alpha, kernel="rbf", gamma=multiple / 4).fit(Z[train], y[train] - offset)
                pred[val] = ridge.predict(held_out) + offset
            reference[multiple, alpha] = pred
    chosen = min(reference, key=lambda key: np.mean((reference[key] - y) ** 2))
    assert head.selected_ == {"alpha": chosen[1], "gamma": chosen[0]} and head.gamma_ == chosen[0] / 4
    assert head.inner_pred_ == pytest.approx(reference[chosen], abs=1e-8)
    refit = KernelRidge(alpha=head.alpha_, kernel="rbf", gamma=head.gamma_).fit(Z, y - y.mean())
    assert head.predict(X) == pytest.approx(refit.predict(Z) + y.mean(), abs=1e-8)
    far = X[:1] + 1e6
    assert head.predict(far) == pytest.approx(head.predict(np.clip(far, head.low_, head.high_))), "no extrapolation"


def test_on_a_curved_signal_the_inner_folds_choose_kernel_ridge_which_predicts_it_better() -> None:
    X, y = curved_data(300, noise=0.2)
    train, test = slice(0, 200), slice(200, 300)
    both = SelectionConfig(value_heads=("ridge", "kernel-ridge"))
    chosen = fit_value_head(X[train], y[train], None, None, both)
    assert isinstance(chosen, KernelRidgeHead) and chosen.selected_["head"] == "kernel-ridge"
    ridge = fit_value_head(X[train], y[train], None, None, SelectionConfig())
    assert isinstance(ridge, RidgeHead) and "head" not in ridge.selected_, "one family: nothing chosen among families"
    assert r2_score(y[test], chosen.predict(X[test])) > r2_score(y[test], ridge.predict(X[test])) + 0.3


def test_on_a_straight_signal_the_inner_folds_keep_ridge() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 6))
    y = X @ rng.standard_normal(6) + 0.3 * rng.standard_normal(200)
    chosen = fit_value_head(X, y, None, None, SelectionConfig(value_heads=("ridge", "kernel-ridge")))
    assert chosen.selected_["head"] == "ridge"


def test_bad_grids_and_head_names_are_refused() -> None:
    X, y = curved_data(40)
    with pytest.raises(ConfigError, match="gamma_grid"):
        KernelRidgeHead(gamma_grid=(0.0,)).fit(X, y)
    with pytest.raises(ConfigError, match="value_heads"):
        SelectionConfig(value_heads=("ridge", "lasso"))


def test_kernel_ridge_head_follows_the_estimator_contract() -> None:
    check_estimator(KernelRidgeHead(alphas=(1.0,), gamma_grid=(1.0,), inner_folds=3))
