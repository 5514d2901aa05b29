"""Choices on inner folds: the C path, the softmax head's grid, mixture weights, and the intervals of repeated CV."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t
from sklearn.linear_model import LogisticRegression

from mvemo.fuse.heads.families import make_head
from mvemo.fuse.heads.linear import LogisticHead, SoftmaxHead, _groups
from mvemo.fuse.heads.logistic_path import logistic_path
from mvemo.fuse.heads.standardize import standardization
from mvemo.fuse.metrics import corrected_interval, paired_differences
from mvemo.fuse.selection import TRIM_Z, SelectionConfig, choose, clustered_se, inner_score, mixture_weights, trim
from mvemo.manifests import ConfigError
from mvemo.manifests.folds import inner_splits
from mvemo.pipeline.config import head_config


def blobs(separation: float, n: int = 90, dim: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.standard_normal((3, dim))[y] * separation + rng.standard_normal((n, dim)), y


def test_noise_gets_the_strongest_regularization_and_clear_classes_a_weak_one() -> None:
    X, y = blobs(0.0, n=300)
    assert LogisticHead().fit(X, y).selected_["C"] <= 1e-2, "noise: nearly the priors"
    X, y = blobs(3.0)
    assert LogisticHead().fit(X, y).selected_["C"] >= 1.0


def test_the_path_gives_the_out_of_fold_probabilities_of_plain_fits_at_the_chosen_c() -> None:
    X, y = blobs(0.6)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    splits = inner_splits(y, [str(i) for i in range(len(y))], k=5, seed=0)
    best, proba, scores = logistic_path(
        Z, y, splits, Cs=(1e-3, 1e-2, 1e-1, 1.0, 10.0), scoring="log_loss", tol=1e-6, max_iter=1000
    )
    assert best == int(np.argmax(scores)) and len(scores) >= best + 1
    plain = np.zeros_like(proba)
    for train, val in splits:
        model = LogisticRegression(C=(1e-3, 1e-2, 1e-1, 1.0, 10.0)[best], tol=1e-6, max_iter=1000).fit(
            Z[train], y[train]
        )
        plain[val] = model.predict_proba(Z[val])
    np.testing.assert_allclose(proba, plain, atol=1e-3)
    assert scores[best] == pytest.approx(inner_score(y, plain, "log_loss"), abs=1e-3)


def test_the_softmax_head_chooses_its_rate_decay_and_epochs_on_inner_folds() -> None:
    X, y = blobs(1.0)
    head = SoftmaxHead(max_epochs=30, patience=3, lr_grid=(1e-3, 1e-1), l2_grid=(0.0, 1.0)).fit(X, y)
    assert head.selected_["lr"] in (1e-3, 1e-1) and head.selected_["l2"] in (0.0, 1.0)
    assert 1 <= head.selected_["epochs"] <= 30
    assert head.selected_["l2"] == 0.0, "an L2 weight of 1 on a sum of squares crushes the layer"
    assert head.inner_proba_.shape == (90, 3) and np.mean(head.predict(X) == y) > 0.8
    fixed = SoftmaxHead(lr=1e-2, l2=1e-3, max_epochs=5).fit(X, y)
    assert fixed.selected_ == {}


def test_the_softmax_heads_inner_probabilities_read_each_fold_at_the_epoch_the_other_folds_chose() -> None:
    X, y = blobs(0.4, n=150)
    head = SoftmaxHead(max_epochs=60, patience=3, lr_grid=(3e-2,), l2_grid=(1e-3,)).fit(X, y)
    mean, scale = standardization(X)
    Z = ((X - mean) / scale).astype(np.float32)
    splits = inner_splits(y, _groups(None, len(y)), k=5, seed=0)
    trained = []
    for train, val in splits:
        curve: list[np.ndarray] = []
        _, epoch = head._train(Z, y, train, val, lr=3e-2, l2=1e-3, epochs=60, curve=curve)
        trained.append((epoch, curve))
    epochs = [epoch for epoch, _ in trained]
    assert len(set(epochs)) > 1, "folds that stop at one epoch could not tell the two readings apart"
    expected = np.zeros_like(head.inner_proba_)
    for k, ((_, curve), (_, val)) in enumerate(zip(trained, splits)):
        others = round(float(np.mean(epochs[:k] + epochs[k + 1 :])))
        expected[val] = curve[min(others, len(curve)) - 1]
    np.testing.assert_allclose(head.inner_proba_, expected, atol=1e-6)


def test_mixture_weights_maximize_the_likelihood() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.full((200, 3), 0.1)
    good[np.arange(200), y] = 0.8
    noise = rng.dirichlet([1, 1, 1], size=200)
    weights = mixture_weights([noise, good], y)
    assert weights.sum() == pytest.approx(1) and weights[1] > 0.9
    grid = np.linspace(0, 1, 101)
    likelihood = [np.mean(np.log((1 - w) * noise[np.arange(200), y] + w * good[np.arange(200), y])) for w in grid]
    assert weights[1] == pytest.approx(grid[int(np.argmax(likelihood))], abs=0.011)


def test_the_interval_corrects_for_overlapping_training_rows() -> None:
    scores = [0.6, 0.7, 0.65, 0.55, 0.72, 0.68]
    low, high = corrected_interval(scores, k=6)
    half = student_t.ppf(0.975, 5) * np.sqrt(np.var(scores, ddof=1) * (1 / 6 + 1 / 5))
    assert (low, high) == pytest.approx((np.mean(scores) - half, np.mean(scores) + half))
    naive = student_t.ppf(0.975, 5) * np.std(scores, ddof=1) / np.sqrt(6)
    assert high - low > 2 * naive, "wider than the interval that takes folds as independent"


def outcomes(rows_right: list[list[tuple[int, int]]]) -> list[np.ndarray]:
    return [np.array(fold, dtype=np.int64).reshape(-1, 2) for fold in rows_right]


def test_paired_differences_count_folds_on_the_clips_both_models_score() -> None:
    reference = [outcomes([[(0, 1), (1, 0)], [(2, 1), (3, 1)]]), outcomes([[(0, 0), (1, 0)], [(2, 1), (3, 0)]])]
    fused = [outcomes([[(0, 1), (1, 1)], [(2, 1), (3, 1)]]), outcomes([[(0, 1), (1, 0)], [(2, 0), (3, 0)]])]
    versus = paired_differences(fused, reference, k=2)
    assert versus is not None
    assert (versus["won"], versus["lost"], versus["tied"]) == (2, 1, 1)
    assert versus["per_repeat"] == pytest.approx([0.25, 0.0]) and versus["mean"] == pytest.approx(0.125)
    # a model that scores clip 1 alone in fold 0 is compared there on clip 1 alone, where both are wrong
    partial = [outcomes([[(1, 0)], [(2, 1), (3, 1)]])]
    versus = paired_differences(partial, reference[:1], k=2)
    assert versus["per_repeat"] == pytest.approx([0.0]) and (versus["won"], versus["tied"]) == (0, 2)
    assert versus["clips_per_fold"] == pytest.approx(1.5)
    assert paired_differences([outcomes([[(5, 1)], []])], reference[:1], k=2) is None, "no clip in common: no figure"


def test_the_fuse_table_sets_the_choices(tmp_path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[fuse]\ninner_folds = 3\nscoring = "accuracy"\nC_grid = [1, 0.01]\n')
    head, params, selection, reference = head_config(config, None)
    assert reference is None
    assert (head, params) == (None, {}) and selection.C_grid == (0.01, 1.0) and selection.inner_folds == 3
    built = make_head(head, selection, **params)
    assert isinstance(built, LogisticHead), "no head named: [fuse] heads' default, logistic"
    assert built.get_params()["C_grid"] == (0.01, 1.0) and built.get_params()["scoring"] == "accuracy"
    for table, message in [
        ("inner_folds = 1", "inner_folds = 1: expected an integer >= 2"),
        ('scoring = "auc"', "scoring = 'auc'"),
        ("C_grid = [0]", "C_grid = \\[0\\]: expected a non-empty list of numbers > 0"),
        ("folds = 3", "\\[fuse\\]: unknown key\\(s\\) \\['folds'\\]"),
    ]:
        config.write_text(f"[fuse]\n{table}\n")
        with pytest.raises(ConfigError, match=message):
            head_config(config, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fuse]\nseed = -1\n", r"\[fuse\] seed = -1: expected an integer from 0 to 2\*\*32-1"),
        ("[fuse]\nseed = 1.5\n", r"\[fuse\] seed = 1.5: expected an integer"),
        ('head = "svm"\n', r"head = 'svm' is a value where a table belongs; write \[head\] on a line of its own"),
    ],
)
def test_config_values_out_of_range_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    """Values that numpy or Python would refuse with a traceback are refused first, naming the key and the fix."""
    from click.testing import CliRunner

    from mvemo.pipeline.cli.main import cli
    from tests.fuse.helpers import embedding_cache

    cache = embedding_cache(tmp_path / "c", nets={"a": (4, 2.0)}, n_per_class=6)
    (tmp_path / "c.toml").write_text(text)
    result = CliRunner().invoke(cli, ["cv", "--cache", str(cache), "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert re.search(message, result.stderr), result.stderr


def test_a_training_seed_out_of_range_is_refused() -> None:
    from mvemo.extract.finetune.train import TrainConfig

    with pytest.raises(ConfigError, match=r"\[train\] seed=-3: expected an integer from 0 to 2\*\*32-1"):
        TrainConfig(seed=-3)


def probabilities_of(right: np.ndarray, y: np.ndarray, p_right: float = 0.7) -> np.ndarray:
    """Two-class probabilities that give each row's class ``p_right`` where ``right``, else 1 - ``p_right``."""
    proba = np.full((len(y), 2), 0.0)
    on_class = np.where(right, p_right, 1 - p_right)
    proba[np.arange(len(y)), y] = on_class
    proba[np.arange(len(y)), 1 - y] = 1 - on_class
    return proba


def test_the_one_standard_error_rule_keeps_the_preferred_candidate_unless_another_is_clearly_better() -> None:
    """Candidates listed in order of preference: the first stays unless the best beats it by more than the standard
    error of their paired per-row difference; ``best`` takes the best whatever the difference."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    broad = rng.random(400) < 0.70
    slightly = broad.copy()  # 22 rows gained, 18 lost: better by 4 rows, less than the error of 40 rows that differ
    slightly[np.flatnonzero(~broad)[:22]] = True
    slightly[np.flatnonzero(broad)[:18]] = False
    clearly = broad | (rng.random(400) < 0.30)  # many rows gained, none lost: beyond it
    close, far = [probabilities_of(r, y) for r in (broad, slightly)], [probabilities_of(r, y) for r in (broad, clearly)]
    for scoring in ("log_loss", "accuracy"):
        assert choose(y, close, scoring, "one-se") == 0
        assert choose(y, close, scoring, "best") == 1
        assert choose(y, far, scoring, "one-se") == 1
    assert choose(y, [far[1], far[0]], "log_loss", "one-se") == 0, "the preferred is the best: kept"
    with pytest.raises(ConfigError, match=r"\[fuse\] choice_rule = 'max': expected one of \('best', 'one-se'\)"):
        SelectionConfig(choice_rule="max")


def test_trimming_drops_a_member_clearly_weaker_than_the_best_and_keeps_one_within_the_noise() -> None:
    rng = np.random.default_rng(0)
    n = 400
    best = rng.normal(-0.5, 0.4, n)
    close = best - 0.01 + rng.normal(0, 0.3, n)  # 0.01 under the best: well inside the noise of 400 rows
    far = best - 0.3 + rng.normal(0, 0.3, n)  # 0.3 under it: twenty standard errors
    decided = trim([close, best, far], [str(i) for i in range(n)], [True, True, True])
    assert decided.best == 1 and decided.kept == [0, 1]
    gap, se = decided.gaps[2]
    assert gap == pytest.approx(0.3, abs=0.05) and gap > TRIM_Z * se
    assert decided.gaps[0][0] <= TRIM_Z * decided.gaps[0][1]


def test_a_member_whose_inner_scores_are_in_sample_is_kept_and_never_sets_the_bar() -> None:
    rng = np.random.default_rng(1)
    n = 300
    honest = [rng.normal(-0.9, 0.3, n), rng.normal(-0.95, 0.3, n)]
    memorised = np.zeros(n)  # log-probability 0 for every row's class: what a net that trained on the rows reads
    decided = trim([*honest, memorised], [str(i) for i in range(n)], [True, True, False])
    assert decided.kept == [0, 1, 2], "judged against the memoriser, both honest members would go"
    assert decided.best == 0 and 2 not in decided.gaps
    alone = trim([honest[0], memorised], [str(i) for i in range(n)], [True, False])
    assert alone.kept == [0, 1] and alone.gaps == {}, "one member judged: nothing to judge it against"


def test_the_standard_error_counts_groups_not_rows() -> None:
    rng = np.random.default_rng(2)
    per_group = rng.standard_normal(40)
    d = np.repeat(per_group, 10)  # 400 rows, 40 groups of identical rows: 40 independent values
    groups = np.repeat(np.arange(40), 10)
    rows_se = d.std(ddof=1) / np.sqrt(len(d))
    assert clustered_se(d, groups) == pytest.approx(per_group.std(ddof=1) / np.sqrt(40), rel=0.05)
    assert clustered_se(d, groups) > 2.5 * rows_se
    assert clustered_se(d, np.arange(400)) == pytest.approx(rows_se, rel=0.01), "a group per row: the plain error"
    shared = rng.normal(0, 1.5, 40)
    gap = rng.normal(0.3, 1.0, 400) + np.repeat(shared - shared.mean(), 10)  # a gap of 0.3 that varies by group
    assert trim([gap, np.zeros(400)], np.arange(400), [True, True]).kept == [0], "rows as independent: dropped"
    assert trim([gap, np.zeros(400)], groups, [True, True]).kept == [0, 1], "clustered by group: inside the noise"
