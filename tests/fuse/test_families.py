"""The head families: each is what it names (LDA as scikit-learn's, the PCA head as its two steps), each folds
into one linear softmax layer, and the inner folds choose among them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression

from mvemo.cache.read import Cache
from mvemo.fuse.compose import Features
from mvemo.fuse.heads.families import (
    ChosenHead,
    Discriminant,
    LdaHead,
    PcaLogisticHead,
    SvmHead,
    make_head,
    principal_axes,
)
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.heads.standardize import standardization
from mvemo.fuse.heads.temperature import fitted_temperature
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.stage import fuse_cache
from mvemo.manifests import ConfigError
from mvemo.pipeline.cli.cv import HEAD_NAMES
from tests.fuse.helpers import embedding_cache


def blobs(
    n: int = 180, d: int = 12, classes: int = 3, signal: float = 1.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.standard_normal((classes, d)) * signal
    mixing = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    return (centres[y] + rng.standard_normal((n, d))) @ mixing + 3.0, np.array([f"c{k}" for k in y])


@pytest.mark.parametrize("d, classes", [(12, 3), (40, 2), (300, 4)])
def test_lda_equals_scikit_learns_shrunk_lda(d: int, classes: int) -> None:
    X, y = blobs(n=120, d=d, classes=classes)
    head = LdaHead(shrinkage=0.3).fit(X, y)
    mean, scale = standardization(X)
    reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.3).fit((X - mean) / scale, y)
    np.testing.assert_allclose(head.predict_proba(X), reference.predict_proba((X - mean) / scale), atol=1e-8)


def test_principal_axes_through_either_matrix() -> None:
    rng = np.random.default_rng(1)
    for n, d in ((50, 10), (10, 50)):
        Zc = rng.standard_normal((n, d))
        Zc -= Zc.mean(axis=0)
        values, axes = principal_axes(Zc)
        np.testing.assert_allclose((axes * values) @ axes.T, Zc.T @ Zc / n, atol=1e-10)
        np.testing.assert_allclose(axes.T @ axes, np.eye(axes.shape[1]), atol=1e-10)
    discriminant = Discriminant(Zc, np.arange(10) % 2, 2)
    assert discriminant.weights(0.5).shape == (2, 50)


def test_pca_logistic_is_its_two_steps_in_one_layer() -> None:
    X, y = blobs(d=30)
    head = PcaLogisticHead(variance=0.9, C=0.5).fit(X, y)
    mean, scale = standardization(X)
    Z = (X - mean) / scale
    values, axes = principal_axes(Z - Z.mean(axis=0))
    kept = head.selected_["components"]
    assert np.sum(values[: kept - 1]) / values.sum() < 0.9 <= np.sum(values[:kept]) / values.sum()
    P = (Z - Z.mean(axis=0)) @ (axes[:, :kept] / np.sqrt(values[:kept]))
    two_steps = LogisticHead(C=0.5).fit(P, y)
    np.testing.assert_allclose(head.predict_proba(X), two_steps.predict_proba(P), atol=1e-9)


def test_svm_probabilities_are_its_scores_at_a_fitted_temperature() -> None:
    X, y = blobs()
    head = SvmHead().fit(X, y)
    assert set(head.selected_) == {"C", "temperature"} and head.selected_["temperature"] > 0
    proba = head.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(head.predict(X) == y) > 0.8
    rng = np.random.default_rng(0)
    scores, target = rng.standard_normal((400, 3)), rng.integers(0, 3, 400)
    scores[np.arange(400), target] += 1.0  # the true class scores 1 higher: a temperature near 1 fits best
    assert 0.5 < fitted_temperature(scores, target) < 2.0
    assert fitted_temperature(scores, rng.permutation(target)) < 0.2  # scores that say nothing: flatten them


@pytest.mark.parametrize("head", [LdaHead(), PcaLogisticHead(), SvmHead()], ids=["lda", "pca-logistic", "svm"])
def test_each_family_chooses_on_inner_folds_and_keeps_groups(head: object) -> None:
    X, y = blobs(n=120)
    groups = np.arange(120) // 4  # four rows per clip
    fitted = head.fit(X, y, groups=groups)  # type: ignore[attr-defined]
    assert isinstance(fitted.linear_, LinearSoftmax) and fitted.inner_proba_.shape == (120, 3)
    np.testing.assert_allclose(fitted.inner_proba_.sum(axis=1), 1.0)
    assert fitted.selected_


def test_chosen_head_keeps_the_family_of_best_inner_score() -> None:
    X, y = blobs(n=150, d=60, signal=0.6)
    head = make_head(None, SelectionConfig(heads=("logistic", "lda", "svm")))
    assert isinstance(head, ChosenHead)
    fitted = head.fit(X, y)
    scores = fitted.inner_scores_
    assert set(scores) == {"logistic", "lda", "svm"} and fitted.selected_["head"] == max(scores, key=scores.get)
    alone = make_head(fitted.selected_["head"]).fit(X, y)
    np.testing.assert_allclose(fitted.predict_proba(X), alone.predict_proba(X))


def test_head_names_and_their_checks() -> None:
    from mvemo.fuse.heads.families import HEADS

    assert sorted(HEAD_NAMES) == sorted(HEADS)
    assert isinstance(make_head(None, SelectionConfig(heads=("lda",))), LdaHead)
    assert isinstance(make_head("logistic", SelectionConfig(heads=("lda",))), LogisticHead), "a head named is that head"
    with pytest.raises(ConfigError, match="head 'qda'"):
        make_head(None, SelectionConfig(heads=("qda",)))
    with pytest.raises(ConfigError, match="give no --head"):
        make_head("svm", SelectionConfig(heads=("logistic", "lda")))
    chosen = make_head(None, SelectionConfig(heads=("logistic", "softmax")))  # its inner folds read at others' epochs
    assert [name for name, _ in chosen.candidates] == ["logistic", "softmax"]
    with pytest.raises(ConfigError, match=r"\[fuse\] heads"):
        SelectionConfig(heads=())
    with pytest.raises(ConfigError, match=r"shrinkage = 2"):
        make_head("lda", None, shrinkage=2)


def test_two_classes_fold_into_two_logits() -> None:
    X, y = blobs(classes=2)
    for head in (LdaHead(shrinkage=0.1), SvmHead(), PcaLogisticHead(C=1.0)):
        fitted = head.fit(X, y)
        assert fitted.linear_.weights.shape == (2, X.shape[1])
        assert np.mean(fitted.predict(X) == y) > 0.8
    logistic = LogisticRegression(C=1.0).fit(X, y)
    assert logistic.coef_.shape == (1, X.shape[1])  # what softmax_layer widens


@pytest.mark.heavy
def test_the_families_chosen_reach_the_report_and_the_saved_model(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c.h5", nets={"musicnn": (8, 1.5), "i3d": (8, 1.0)}, n_per_class=18)
    selection = SelectionConfig(heads=("logistic", "lda"))
    document, folder = fuse_cache(cache, tmp_path / "out", models="musicnn,late(musicnn,i3d)", selection=selection)
    for rep in document["models"]["musicnn"]["choices"]:
        assert all(choice["head"] in ("logistic", "lda") for choice in rep)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Head families chosen in the 3 folds of every repeat" in report
    families = report.split("Head families chosen")[1]
    tally = next(line for line in families.splitlines() if line.startswith("| late(musicnn,i3d) |"))
    assert sum(int(n) for n in re.findall(r" in (\d+)", tally)) == 6  # two heads in each of 3 folds
    saved = load_fusion_model(folder)
    with Cache(cache) as reader:
        inputs = {net: reader.read_matrix(f"emb/{net}/all") for net in ("musicnn", "i3d")}
        y, groups = reader.y, np.asarray(reader.groups)
    head = saved.document["models"]["musicnn"]["model"]["chosen"]["head"]
    alone = make_head(head).fit(inputs["musicnn"], y, groups=groups)
    np.testing.assert_allclose(saved.predict("musicnn", inputs), alone.predict_proba(inputs["musicnn"]), atol=1e-9)


def test_a_stack_meta_head_stays_logistic_whatever_the_families() -> None:
    from mvemo.fuse.compose import Stack
    from mvemo.fuse.fitting import Trainings, fit
    from mvemo.fuse.grammar import parse_models

    X, y = blobs(n=90)
    target = np.searchsorted(np.unique(y), y)
    selection = SelectionConfig(heads=("lda",))
    training = Trainings(target, [str(i) for i in range(90)], 3, make_head(None, selection), selection).on(
        np.arange(90), {"a": X[:, :6], "b": X[:, 6:]}
    )
    ((_, node),) = parse_models("stack(a,b)", {"a": Features(("a",)), "b": Features(("b",))}, KeyError)
    assert isinstance(node, Stack)
    stacked = fit(node, training)
    assert isinstance(stacked.meta, LogisticHead) and all(isinstance(m.model, LdaHead) for m in stacked.members)


def test_a_class_the_rows_lack_stays_at_probability_zero_and_spares_the_temperature() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 500)
    target[:5] = 2  # five rows of a class the fold's SVM never saw: it scores them -1000
    scores = rng.standard_normal((500, 3))
    scores[np.arange(500), target] += 1.0
    scores[:, 2] = -1e3
    alone = fitted_temperature(scores[5:, :2], target[5:])
    assert fitted_temperature(scores, target) == pytest.approx(alone, rel=0.2)
    X, y = blobs(n=90, classes=2)
    discriminant = Discriminant((X - X.mean(0)) / X.std(0), np.searchsorted(np.unique(y), y), 3)
    weights = discriminant.weights(0.3)
    proba = softmax(((X - X.mean(0)) / X.std(0)) @ weights.T + discriminant.bias_of(weights), axis=1)
    assert proba[:, 2].max() < 1e-100
