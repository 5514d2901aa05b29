from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.svm import SVC

from mvemo.cache.read import Cache
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.heads.kernel import KernelSvmHead
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.heads.selected import SHARES
from mvemo.fuse.heads.standardize import standardization
from mvemo.fuse.saved.model import HEADS_H5, load_fusion_model
from mvemo.fuse.stage import fuse_cache
from mvemo.manifests import ConfigError
from tests.fuse.helpers import embedding_cache
from tests.fuse.test_families import blobs


def rings(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes on concentric rings in 2-d (and 3 noise columns): no line separates them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 1.0 + 1.5 * y + 0.2 * rng.standard_normal(n)
    X = np.column_stack([radius * np.cos(angle), radius * np.sin(angle), 0.3 * rng.standard_normal((n, 3))])
    return X, y


@pytest.mark.parametrize("classes", [2, 4])
def test_the_kernel_head_equals_scikit_learns_svcs_at_its_choices(classes: int) -> None:
    X, y = blobs(n=160, d=10, classes=classes, signal=1.0)
    head = KernelSvmHead(C_grid=(0.3, 3.0), gamma_grid=(0.5, 2.0)).fit(X[:120], y[:120])
    C, gamma, temperature = (head.selected_[k] for k in ("C", "gamma", "temperature"))
    mean, scale = standardization(X[:120])
    Z, Z_test = (X[:120] - mean) / scale, (X[120:] - mean) / scale
    target = np.searchsorted(head.classes_, y[:120])
    svcs = [SVC(C=C, kernel="rbf", gamma=gamma / X.shape[1]).fit(Z, (target == c).astype(int)) for c in range(classes)]
    scores = np.column_stack([svm.decision_function(Z_test) for svm in svcs])
    if classes == 2:  # one SVM, its score the second class's logit
        scores = np.column_stack([np.zeros(len(Z_test)), scores[:, 1]])
    np.testing.assert_allclose(head.predict_proba(X[120:]), softmax(temperature * scores, axis=1), atol=1e-6)


def test_the_kernel_head_separates_what_no_line_does() -> None:
    X, y = rings()
    train, test = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    kernel = KernelSvmHead().fit(X[train], y[train])
    linear = LogisticHead().fit(X[train], y[train])
    assert np.mean(kernel.predict(X[test]) == y[test]) > 0.95
    assert np.mean(linear.predict(X[test]) == y[test]) < 0.75
    assert kernel.inner_proba_.shape == (int(train.sum()), 2), "its inner folds' out-of-fold probabilities"
    assert make_head("rbf-svm").get_params()["gamma_grid"] == (0.25, 1.0, 4.0)


def test_the_selecting_kernel_head_keeps_the_telling_columns_and_equals_svc_over_them() -> None:
    """Two classes apart in 2 columns among 30 of noise: the kernel over every column blurs them, the share chosen
    on inner folds keeps them, and the head is scikit-learn's SVC over the columns kept."""
    rng = np.random.default_rng(0)
    y = np.arange(320) % 2
    X = np.column_stack([rng.standard_normal((320, 2)) + 1.2 * y[:, None], rng.standard_normal((320, 30))])
    train, test = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    selecting = KernelSvmHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,), shares=SHARES).fit(X[train], y[train])
    whole = KernelSvmHead(C_grid=(1.0, 10.0), gamma_grid=(1.0,)).fit(X[train], y[train])
    columns = selecting.linear_.columns
    assert {0, 1} <= set(columns.tolist()) and selecting.selected_["columns"] == len(columns) <= 8
    assert whole.linear_.columns is None and "columns" not in whole.selected_
    assert make_head("select-rbf-svm").get_params()["shares"] == SHARES and make_head("rbf-svm").get_params()[
        "shares"
    ] == (1.0,)
    assert np.mean(selecting.predict(X[test]) == y[test]) > np.mean(whole.predict(X[test]) == y[test])
    C, gamma, temperature = (selecting.selected_[k] for k in ("C", "gamma", "temperature"))
    mean, scale = standardization(X[train])
    Z, Z_test = ((X[train] - mean) / scale)[:, columns], ((X[test] - mean) / scale)[:, columns]
    svm = SVC(C=C, kernel="rbf", gamma=gamma / len(columns)).fit(Z, y[train])
    expected = softmax(temperature * np.column_stack([np.zeros(len(Z_test)), svm.decision_function(Z_test)]), axis=1)
    np.testing.assert_allclose(selecting.predict_proba(X[test]), expected, atol=1e-6)


# each family's saved head, and the damage its check refuses: (array, edit, message)
DAMAGES = {
    "rbf-svm": ("gamma", lambda value: -1.0, "gamma <= 0"),
    "select-rbf-svm": ("columns", lambda value: value + 20, "are not increasing indices below 20"),
}


@pytest.mark.heavy
@pytest.mark.parametrize("family", sorted(DAMAGES))
def test_a_saved_kernel_head_is_arrays_predicts_as_fitted_and_is_checked(tmp_path: Path, family: str) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"musicnn": (20, 1.0)}, n_per_class=10)
    _, folder = fuse_cache(cache, tmp_path / "out", models="musicnn", head=family)
    saved = load_fusion_model(folder)
    with Cache(cache) as reader:
        X, y, groups = reader.read_matrix("emb/musicnn/all"), reader.y, np.asarray(reader.groups)
    alone = make_head(family).fit(X, y, groups=groups)
    np.testing.assert_allclose(saved.predict("musicnn", {"musicnn": X}), alone.predict_proba(X), atol=1e-9)
    with h5py.File(folder / HEADS_H5, "r") as f:
        (group,) = f.values()
        arrays = {key: group[key][()] for key in group}
    assert {"support", "coef", "gamma"} <= set(arrays)
    if alone.linear_.columns is None:  # every column: none listed, as in a head saved before selection
        assert "columns" not in arrays and arrays["support"].shape[1] == X.shape[1]
    else:
        np.testing.assert_array_equal(arrays["columns"], alone.linear_.columns)
        assert arrays["support"].shape[1] == len(alone.linear_.columns) < X.shape[1]
    damaged, edit, message = DAMAGES[family]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes((folder / "model.json").read_bytes())
    with h5py.File(broken / HEADS_H5, "w") as f:
        for key, value in arrays.items():
            f[f"head0/{key}"] = edit(value) if key == damaged else value
    with pytest.raises(ConfigError, match=message):
        load_fusion_model(broken)
