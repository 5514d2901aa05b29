"""Standardization makes a column's unit irrelevant: a column of large finite values (an imported set in other
units, up to float32's maximum) gives every head the predictions of the same column unscaled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.imported import import_vectors
from mvemo.cache.read import Cache
from mvemo.fuse.cv import cross_validate
from mvemo.fuse.heads.families import HEADS, make_head
from mvemo.fuse.targets.value_heads import RidgeHead
from tests.cache.test_imported import features_csv
from tests.fuse.helpers import embedding_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


def rows(scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """90 rows of 6 float32 columns, three classes told apart by column 0, which is multiplied by ``scale``."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    X = rng.standard_normal((90, 6)) + np.eye(3, 6)[y] * 1.5
    X[:, 0] *= scale
    return X.astype(np.float32), y, np.arange(90) // 3


@pytest.mark.parametrize("kind", sorted(set(HEADS) - {"select-rbf-svm"}))
@pytest.mark.parametrize("scale", [1e20, 1e38])
def test_a_column_of_huge_values_predicts_as_the_same_column_unscaled(kind: str, scale: float) -> None:
    X, y, groups = rows(1.0)
    big, _, _ = rows(scale)
    assert np.isfinite(big).all()
    plain = make_head(kind).fit(X, y, groups).predict_proba(X)
    scaled = make_head(kind).fit(big, y, groups).predict_proba(big)
    assert scaled == pytest.approx(plain, abs=2e-3)


@pytest.mark.parametrize("scale", [1e20, 1e38])
def test_a_value_head_over_huge_values_predicts_as_over_the_values_unscaled(scale: float) -> None:
    X, _, groups = rows(1.0)
    big, _, _ = rows(scale)
    values = X[:, 0].astype(np.float64) * 2 + 1
    plain = RidgeHead().fit(X, values, groups).predict(X)
    scaled = RidgeHead().fit(big, values, groups).predict(big)
    assert scaled == pytest.approx(plain, rel=1e-4, abs=1e-4)


def test_an_imported_set_of_huge_values_cross_validates_as_the_set_unscaled(tmp_path: Path) -> None:
    """The review's repro: one column of an imported CSV multiplied by 1e20 read 87.5 % against 95.8 %."""
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"descriptors": (4, 0.0)}, n_per_class=8)
    with Cache(cache) as reader:
        ids, y = reader.clip_ids, reader.y
    values = (np.random.default_rng(0).standard_normal((len(ids), 3)) + 2.0 * np.eye(3)[y]).astype(np.float32)
    huge = values.copy()
    huge[:, 1] *= 1e20
    import_vectors(cache, "mine", features_csv(tmp_path / "mine.csv", ids, values), key="song")
    import_vectors(cache, "huge", features_csv(tmp_path / "huge.csv", ids, huge), key="song")
    metrics = cross_validate(cache, models="mine,huge", repeats=3, head=make_head("rbf-svm")).metrics
    assert metrics["mine"]["accuracy"]["mean"] > 0.7
    assert metrics["huge"]["accuracy"]["folds"] == metrics["mine"]["accuracy"]["folds"]
