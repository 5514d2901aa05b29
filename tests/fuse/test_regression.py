"""Stage two for valence/arousal: the ridge head's closed-form inner path against scikit-learn, and the model trees."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import check_estimator

from mvemo.fuse.compose import Best, Features, Late, Stack, choice_among_fusions
from mvemo.fuse.heads.standardize import standardization
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.parts import KernelPart, LinearPart, predict_parts
from mvemo.fuse.targets.regression import fit_values
from mvemo.fuse.targets.value_heads import RidgeHead, ridge_path
from mvemo.manifests import ConfigError
from mvemo.manifests.folds import inner_splits

GOOD, NOISE = Features(("good",)), Features(("noise",))


def linear_data(n: int, d: int, *, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Columns of unequal scales and offsets, and a linear function of them plus ``noise``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 10.0, d) + rng.uniform(-5.0, 5.0, d)
    y = (X - X.mean(axis=0)) / X.std(axis=0) @ rng.standard_normal(d) + 3.0 + noise * rng.standard_normal(n)
    return X, y


def value_blocks(n: int = 120, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """An input that predicts both values (valence, arousal) the same way for every seed, one of noise, and groups of
    three rows."""
    rng = np.random.default_rng(seed)
    good, noise = rng.standard_normal((n, 8)), rng.standard_normal((n, 8))
    values = good @ np.random.default_rng(99).standard_normal((8, 2)) + 0.3 * rng.standard_normal((n, 2))
    return {"good": good, "noise": noise}, values, [f"g{i // 3}" for i in range(n)]


def fit_on(node, blocks, values, groups, scale: str = "least-squares"):
    """``node`` fitted, its predictions as its heads fit them (``least-squares``) or on the ratings' scale."""
    selection = SelectionConfig(value_scale=scale)
    return fit_values(node, blocks, values, groups=groups, strata=np.zeros(len(values), dtype=int), selection=selection)


def test_ridge_head_recovers_a_linear_signal_and_its_coefficients_are_its_predictions() -> None:
    X, y = linear_data(200, 10, noise=0.2)
    head = RidgeHead().fit(X[:150], y[:150])
    assert r2_score(y[150:], head.predict(X[150:])) > 0.9
    clipped = np.clip(X[150:], head.low_, head.high_)
    assert clipped @ head.coef_ + head.intercept_ == pytest.approx(head.predict(X[150:]), abs=1e-10)
    assert np.array_equal(head.low_, X[:150].min(axis=0)) and np.array_equal(head.high_, X[:150].max(axis=0))
    far = X[150:151] + 1e6
    assert head.predict(far) == pytest.approx(head.predict(np.clip(far, head.low_, head.high_))), "no extrapolation"
    assert head.selected_ == {"alpha": head.alpha_} and head.inner_pred_.shape == (150,)
    assert r2_score(y[:150], head.inner_pred_) > 0.9


@pytest.mark.parametrize("n, d", [(90, 12), (60, 150)])
def test_the_closed_form_inner_path_equals_scikit_learn_ridge_per_split(n: int, d: int) -> None:
    X, y = linear_data(n, d, noise=1.0, seed=1)
    groups = [f"g{i // 2}" for i in range(n)]
    alphas = (0.01, 1.0, 100.0, 1e4)
    head = RidgeHead(alphas=alphas).fit(X, y, groups=groups)
    mean, scale = standardization(X)
    Z = (X - mean) / scale
    reference = np.zeros((n, len(alphas)))
    for train, val in inner_splits(np.zeros(n, dtype=int), groups, k=5, seed=0):
        center, offset, coefs = ridge_path(Z[train], y[train], np.array(alphas))
        held_out = np.clip(Z[val], Z[train].min(axis=0), Z[train].max(axis=0))  # clipped to the training rows' range
        for j, alpha in enumerate(alphas):
            reference[val, j] = Ridge(alpha=alpha).fit(Z[train], y[train]).predict(held_out)
            assert (held_out - center) @ coefs[:, j] + offset == pytest.approx(reference[val, j], abs=1e-8)
    best = int(np.argmin(np.mean((reference - y[:, None]) ** 2, axis=0)))
    assert head.alpha_ == alphas[best]
    assert head.inner_pred_ == pytest.approx(reference[:, best], abs=1e-8)
    refit = Ridge(alpha=head.alpha_).fit(Z, y)
    assert head.predict(X) == pytest.approx(refit.predict(Z), abs=1e-8), "the standardization is folded in exactly"


@pytest.mark.parametrize("shape", [(60, 8), (30, 50)])
def test_weighted_ridge_paths_are_sklearns_ridge_with_sample_weights(shape: tuple[int, int]) -> None:
    """Both sides of the Gram trick, rows of weight 0 among them: they train nothing."""
    X, y = linear_data(*shape, noise=0.5)
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    weights[:5] = 0.0
    alphas = np.array([0.1, 1.0, 10.0])
    center, offset, coefs = ridge_path(X, y, alphas, weights)
    for j, alpha in enumerate(alphas):
        reference = Ridge(alpha=alpha).fit(X, y, sample_weight=weights).predict(X)
        assert (X - center) @ coefs[:, j] + offset == pytest.approx(reference, abs=1e-7)
    dropped = ridge_path(X[5:], y[5:], alphas, weights[5:])[2]
    np.testing.assert_allclose(coefs, dropped, atol=1e-9)


def test_a_weighted_ridge_head_chooses_its_alpha_by_the_weighted_inner_error() -> None:
    X, y = linear_data(80, 5, noise=0.3)
    y[40:] = 0.0  # rows that would teach a flat line, of weight 0
    weights = np.where(np.arange(80) < 40, 1.0, 0.0)
    head = RidgeHead().fit(X, y, sample_weight=weights)
    alone = RidgeHead().fit(X[:40], y[:40])
    assert head.alpha_ <= 10 * alone.alpha_ and np.corrcoef(head.predict(X[:40]), y[:40])[0, 1] > 0.9
    assert head.inner_pred_.shape == (80,), "rows of weight 0 are predicted on inner folds all the same"


def test_alpha_is_small_for_a_strong_signal_and_large_for_noise() -> None:
    X, y = linear_data(100, 5, noise=0.01)
    assert RidgeHead().fit(X, y).alpha_ <= 0.1
    noise = np.random.default_rng(3).standard_normal(100)
    assert RidgeHead().fit(X, noise).alpha_ >= 1e3


def test_inner_folds_keep_groups_whole() -> None:
    # Each group is two copies of one row with a value of pure noise: a fold that split a group would validate a row
    # on its own twin, and a wide ridge head nearly interpolates its training rows.
    rng = np.random.default_rng(0)
    X = np.repeat(rng.standard_normal((50, 200)), 2, axis=0)
    y = np.repeat(rng.standard_normal(50), 2)
    groups = [f"g{i // 2}" for i in range(100)]
    leaky, grouped = RidgeHead().fit(X, y), RidgeHead().fit(X, y, groups=groups)
    assert r2_score(y, leaky.inner_pred_) > 0.5, "rows as their own groups see their twins"
    assert r2_score(y, grouped.inner_pred_) < 0.05 and grouped.alpha_ == 1e4
    for train, val in inner_splits(np.zeros(100, dtype=int), groups, k=5, seed=0):
        assert not {groups[i] for i in train} & {groups[i] for i in val}


def test_rows_of_one_group_and_bad_alphas_are_refused() -> None:
    X, y = linear_data(20, 3, noise=0.1)
    with pytest.raises(ConfigError, match="at least 2 groups"):
        RidgeHead().fit(X, y, groups=["same"] * 20)
    with pytest.raises(ConfigError, match="alphas"):
        RidgeHead(alphas=(1.0, -1.0)).fit(X, y)


def test_ridge_head_follows_the_estimator_contract() -> None:
    head = RidgeHead(alphas=(1.0, 10.0), inner_folds=3, seed=2)
    assert clone(head).get_params() == head.get_params()
    repeated = (
        "a weight scales a row's squared error; the standardization, which reads no target, and the inner folds"
        " see each row once, as repeating it would not"
    )
    check_estimator(RidgeHead(), expected_failed_checks={"check_sample_weight_equivalence_on_dense_data": repeated})


def test_late_fusion_averages_its_members() -> None:
    blocks, values, groups = value_blocks()
    late = fit_on(Late((GOOD, NOISE)), blocks, values, groups)
    good, noise = fit_on(GOOD, blocks, values, groups), fit_on(NOISE, blocks, values, groups)
    assert late.predict(blocks) == pytest.approx((good.predict(blocks) + noise.predict(blocks)) / 2, abs=1e-10)
    assert late.inner_pred == pytest.approx((good.inner_pred + noise.inner_pred) / 2)
    per_dimension = [RidgeHead().fit(blocks["good"], v, groups=groups).predict(blocks["good"]) for v in values.T]
    assert good.predict(blocks) == pytest.approx(np.stack(per_dimension, axis=1), abs=1e-10)
    assert json.loads(json.dumps(late.choices()))["members"]["good"]["alpha"] == [h.alpha_ for h in good.heads]


def test_best_picks_the_informative_input_and_integrated_fits_each_head_once(monkeypatch) -> None:
    blocks, values, groups = value_blocks()
    best = fit_on(Best((NOISE, GOOD)), blocks, values, groups)
    choices = json.loads(json.dumps(best.choices()))
    assert choices["chosen"] == "good" and choices["inner_scores"]["good"] < 0.2 < choices["inner_scores"]["noise"]
    assert best.describe().startswith("good (alpha=") and " / " in best.describe()
    fits = []
    original = RidgeHead.fit
    monkeypatch.setattr(RidgeHead, "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    model = fit_on(choice_among_fusions((GOOD, NOISE)), blocks, values, groups)
    assert len(fits) == 3 * 2, "good, noise and good+noise, each per dimension; late(good,noise) reuses them"
    assert model.choices()["chosen"] in ("good", "good+noise")
    held_out, truth, _ = value_blocks(seed=1)
    assert r2_score(truth, model.predict(held_out)) > 0.9


def test_inner_weights_lean_on_the_member_that_carries_the_values_and_stay_a_mean() -> None:
    blocks, values, groups = value_blocks()
    late = fit_on(Late((GOOD, NOISE), "inner"), blocks, values, groups, scale="least-squares")
    assert late.shares.shape == (2, 2) and late.shares.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert (late.shares[:, 0] > 0.8).all() and (late.shares >= 0).all(), "the good member weighs most, none below 0"
    good = fit_on(GOOD, blocks, values, groups, scale="least-squares")
    plain = fit_on(Late((GOOD, NOISE)), blocks, values, groups, scale="least-squares")
    held_out, truth, _ = value_blocks(seed=1)
    assert r2_score(truth, late.predict(held_out)) > r2_score(truth, plain.predict(held_out))
    assert r2_score(truth, late.predict(held_out)) == pytest.approx(r2_score(truth, good.predict(held_out)), abs=0.03)
    parts = late.parts()
    assert late.predict(held_out) == pytest.approx(predict_parts(parts, held_out), abs=1e-9), "saved as its parts"


def test_a_stack_of_values_fits_non_negative_weights_and_an_intercept_on_cross_fitted_predictions() -> None:
    blocks, values, groups = value_blocks()
    stack = fit_on(Stack((GOOD, NOISE)), blocks, values, groups, scale="least-squares")
    assert (stack.shares >= 0).all() and stack.intercepts.shape == (2,)
    members = [fit_on(m, blocks, values, groups, scale="least-squares") for m in (GOOD, NOISE)]
    in_sample = stack.shares[:, 0] * members[0].inner_pred + stack.shares[:, 1] * members[1].inner_pred
    assert not np.allclose(stack.inner_pred, in_sample + stack.intercepts), "its inner predictions are cross-fitted"
    held_out, truth, _ = value_blocks(seed=1)
    assert r2_score(truth, stack.predict(held_out)) > 0.8
    assert stack.predict(held_out) == pytest.approx(predict_parts(stack.parts(), held_out), abs=1e-9)


@pytest.mark.parametrize("scale", ["least-squares", "ratings"])
@pytest.mark.parametrize(
    "node",
    [
        GOOD,
        Late((GOOD, Features(("good", "noise")))),
        choice_among_fusions((GOOD, NOISE)),
        Late((GOOD, NOISE), "trimmed"),
    ],
)
def test_the_parts_reproduce_the_predictions(node, scale: str) -> None:
    blocks, values, groups = value_blocks()
    fitted = fit_on(node, blocks, values, groups, scale)
    new, _, _ = value_blocks(seed=2)
    total = np.zeros((120, 2))
    for inputs, coef, intercept, weight, low, high in fitted.parts():
        assert coef.shape == (2, sum(new[name].shape[1] for name in inputs)) and intercept.shape == (2,)
        X = np.concatenate([new[name] for name in inputs], axis=1)
        assert np.array_equal(low, np.concatenate([blocks[name] for name in inputs], axis=1).min(axis=0))
        total += weight * (np.clip(X, low, high) @ coef.T + intercept)
    assert total == pytest.approx(fitted.predict(new), abs=1e-12)
    assert sum(part.weight for part in fitted.parts()) == pytest.approx(1.0)


@pytest.mark.parametrize("scale", ["least-squares", "ratings"])
def test_kernel_parts_of_the_dimensions_the_inner_folds_gave_kernel_ridge_reproduce_the_predictions(scale: str) -> None:
    """Valence a curve of the input, arousal a line: each dimension keeps the head its inner folds choose, the kernel
    expansion predicting valence alone and the linear map arousal alone; the ratings' scale folds into both."""
    rng = np.random.default_rng(4)
    good = rng.standard_normal((150, 3))
    values = np.stack([np.sin(2 * good[:, 0]) + good[:, 0] ** 2, good @ np.array([1.0, -0.5, 0.2])], axis=1)
    values += 0.1 * rng.standard_normal((150, 2))
    blocks, groups = {"good": good}, [f"g{i // 3}" for i in range(150)]
    selection = SelectionConfig(value_scale=scale, value_heads=("ridge", "kernel-ridge"))
    fitted = fit_values(GOOD, blocks, values, groups=groups, strata=np.zeros(150, dtype=int), selection=selection)
    assert fitted.choices()["head"] == ["kernel-ridge", "ridge"]
    linear, kernel = fitted.parts()
    assert isinstance(linear, LinearPart) and isinstance(kernel, KernelPart) and kernel.support.shape == (150, 3)
    assert not linear.coef[0].any() and not kernel.coef[1].any(), "each part predicts its own dimension"
    new = {"good": rng.standard_normal((40, 3))}
    heads = fitted.heads if scale == "least-squares" else fitted.model.heads
    direct = np.stack([head.predict(new["good"]) for head in heads], axis=1)
    if scale == "ratings":
        direct = direct * fitted.scale + fitted.shift
    assert predict_parts(fitted.parts(), new) == pytest.approx(direct, abs=1e-10), (
        "the parts are the heads' predictions"
    )
    assert r2_score(values[:, 0], fitted.inner_pred[:, 0]) > 0.8


def test_a_trimmed_late_fusion_of_values_drops_the_member_clearly_worse_unless_it_is_in_sample() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((150, 6))
    values = z @ rng.standard_normal((6, 2)) + 0.3 * rng.standard_normal((150, 2))
    blocks = {name: z + 0.7 * rng.standard_normal(z.shape) for name in ("good", "second")}  # two views, equally blurred
    blocks["noise"] = rng.standard_normal(z.shape)
    groups = [f"g{i // 3}" for i in range(150)]
    second = Features(("second",))
    trimmed = Late((GOOD, second, NOISE), "trimmed")
    fitted = fit_on(trimmed, blocks, values, groups)
    assert [m.node for m in fitted.members] == [GOOD, second], "noise is clearly worse; an equal view is not"
    dropped = fitted.choices()["dropped"]
    assert list(dropped) == ["noise"] and dropped["noise"]["under"] in ("good", "second")
    assert "dropped noise (" in fitted.describe()
    assert fitted.predict(blocks) == pytest.approx(np.mean([m.predict(blocks) for m in fitted.members], axis=0))
    tuned = fit_values(
        trimmed,
        blocks,
        values,
        groups=groups,
        strata=np.zeros(len(values), dtype=int),
        selection=SelectionConfig(value_scale="least-squares"),
        in_sample=frozenset({"noise"}),
    )
    assert len(tuned.members) == 3, "an input of a net fine-tuned on these rows is kept, never judged"


def shrunk_blocks(n: int = 150, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Three inputs, each a faint noisy view of both values: ridge shrinks each toward the mean, and their average
    shrinks more (their errors partly cancel)."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((n, 2)) * [4.0, 5.0] + [0.5, -1.0]
    mix = np.random.default_rng(7).standard_normal((3, 2, 6))
    blocks = {f"v{i}": values @ mix[i] / 4 + 3.0 * rng.standard_normal((n, 6)) for i in range(3)}
    return blocks, values, [f"g{i // 3}" for i in range(n)]


def test_on_the_ratings_scale_a_fusion_keeps_the_spread_of_the_ratings_and_gains_concordance() -> None:
    """The map is learned on the model's inner out-of-fold predictions of the rows fitted: those get the ratings' mean
    and spread; on new clips the rescaled fusion correlates as the fitted one does, with a larger CCC."""
    from mvemo.fuse.targets.values import ccc

    blocks, values, groups = shrunk_blocks()
    late = Late(tuple(Features((name,)) for name in blocks))
    fitted, rescaled = fit_on(late, blocks, values, groups), fit_on(late, blocks, values, groups, "ratings")
    np.testing.assert_allclose(rescaled.inner_pred.std(axis=0), values.std(axis=0))
    np.testing.assert_allclose(rescaled.inner_pred.mean(axis=0), values.mean(axis=0))
    assert (fitted.inner_pred.std(axis=0) < 0.8 * values.std(axis=0)).all(), "the fitted fusion shrinks"
    scale, shift = (np.array(rescaled.choices()["ratings_scale"][k]) for k in ("scale", "shift"))
    np.testing.assert_allclose(scale, values.std(axis=0) / fitted.inner_pred.std(axis=0))
    new, truth, _ = shrunk_blocks(seed=1)
    np.testing.assert_allclose(rescaled.predict(new), fitted.predict(new) * scale + shift)
    for j in range(2):
        before, after = fitted.predict(new)[:, j], rescaled.predict(new)[:, j]
        assert ccc(truth[:, j], after) > ccc(truth[:, j], before) + 0.05
        assert np.corrcoef(truth[:, j], after)[0, 1] == pytest.approx(np.corrcoef(truth[:, j], before)[0, 1])


def test_a_dimension_the_model_cannot_predict_keeps_its_predictions() -> None:
    """Where the inner predictions fall as the ratings rise, barely rise (a correlation under 2 / sqrt(n)), or do not
    vary, stretching them would spread noise: that dimension keeps its predictions; the other is mapped."""
    from mvemo.fuse.targets.regression import on_the_ratings_scale

    blocks, values, groups = shrunk_blocks()
    fitted = fit_on(Features(("v0",)), blocks, values, groups)
    rng = np.random.default_rng(1)
    faint = values[:, 1] + 30 * values[:, 1].std() * rng.standard_normal(len(values))
    assert 0 < np.corrcoef(faint, values[:, 1])[0, 1] < 2 / np.sqrt(len(values))
    for inner in (-fitted.inner_pred[:, 1], np.full(len(values), 2.0), faint):
        fitted.inner_pred = np.stack([fitted.inner_pred[:, 0], inner], axis=1)
        rescaled = on_the_ratings_scale(fitted, values)
        assert (rescaled.scale[1], rescaled.shift[1]) == (1.0, 0.0) and rescaled.scale[0] > 1.0
        np.testing.assert_allclose(rescaled.predict(blocks)[:, 1], fitted.predict(blocks)[:, 1])


def test_a_model_over_a_net_fine_tuned_on_its_rows_keeps_its_predictions() -> None:
    """The inner predictions over an input in-sample (a net fine-tuned on these rows) look better than they are: no
    map is learned from them."""
    blocks, values, groups = shrunk_blocks()
    node = Late(tuple(Features((name,)) for name in blocks))
    selection = SelectionConfig(value_scale="ratings")
    strata = np.zeros(len(values), dtype=int)
    tuned = fit_values(
        node, blocks, values, groups=groups, strata=strata, selection=selection, in_sample=frozenset({"v1"})
    )
    assert "ratings_scale" not in tuned.choices()
    assert (
        "ratings_scale" in fit_values(node, blocks, values, groups=groups, strata=strata, selection=selection).choices()
    )
