"""Multi-label tags through the nested cross-validation: recovered where the embeddings carry them, chance where not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.fuse.metrics import best_f1_threshold
from mvemo.fuse.targets.tags import cross_validate_tags, tag_metrics
from mvemo.manifests import ConfigError, Manifest
from tests.fuse.helpers import embedding_cache

TAGS = ("gentle", "gloomy", "random")


def tagged(manifest: Manifest) -> Manifest:
    """Tags that follow from the class (carried by the embeddings) and one drawn at random (carried by nothing)."""
    rng = np.random.default_rng(7)
    clips = []
    for clip, y in zip(manifest.clips, manifest.y):
        tags = [t for t, on in zip(TAGS, (y == 0, y in (0, 1), rng.random() < 0.5)) if on]
        clips.append(replace(clip, tags=tuple(tags)))
    return replace(manifest, clips=tuple(clips), tags=TAGS)


@pytest.mark.heavy
def test_tags_carried_by_the_embeddings_are_recovered_and_a_random_one_is_not(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "cache", nets={"a": (8, 2.0), "b": (8, 0.0)}, n_per_class=20, retarget=tagged)
    result = cross_validate_tags(cache, models="a,b,late(a,b)", repeats=2)
    assert set(result.metrics) == {"a", "b", "late(a,b)"}
    per_tag = result.metrics["a"]["per_tag"]
    assert per_tag["gentle"]["roc_auc"]["min"] > 0.9 and per_tag["gloomy"]["roc_auc"]["min"] > 0.9
    assert abs(per_tag["random"]["roc_auc"]["mean"] - 0.5) < 0.2
    assert per_tag["gentle"]["f1"]["mean"] > 0.8, "a threshold chosen on inner folds calls the carried tag well"
    noise = result.metrics["b"]["per_tag"]
    assert all(abs(noise[t]["roc_auc"]["mean"] - 0.5) < 0.2 for t in TAGS), "an input carrying nothing: chance"
    assert result.metrics["a"]["lrap"]["mean"] > result.metrics["b"]["lrap"]["mean"]
    assert result.metrics["a"]["repeats"] == 2
    assert len(result.repeat_folds) == 2 and not np.array_equal(*result.repeat_folds), (
        "every tag on each repeat's split"
    )
    predictions = result.repeats[1]["a"]
    assert np.array_equal(predictions.folds, result.repeat_folds[1][predictions.rows])


def test_tag_metrics_against_hand_computed_values() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    proba = np.array([[0.9, 0.2], [0.85, 0.8], [0.6, 0.4], [0.1, 0.5]])
    metrics = tag_metrics(["x", "z"], y, proba, np.full_like(proba, 0.5))
    assert metrics["per_tag"]["x"]["roc_auc"] == 0.75  # of 4 (present, absent) pairs, 0.6 < 0.85 is ranked wrong
    assert metrics["per_tag"]["x"]["f1"] == pytest.approx(0.8)  # 2 right calls, 1 false
    assert metrics["per_tag"]["z"]["roc_auc"] == 0.75  # 0.4 < 0.5 ranked wrong
    assert metrics["per_tag"]["z"]["f1"] == pytest.approx(0.5)  # 1 right, 1 false, 1 missed
    assert metrics["lrap"] == pytest.approx((1 + 0.5 + 1) / 3), (
        "row 1's tag ranks second; the untagged row 3 is left out"
    )


def test_best_f1_threshold_is_a_score_of_the_rows() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.35, 0.8, 0.4, 0.9])
    assert best_f1_threshold(y, scores) == 0.35
    assert best_f1_threshold(np.zeros(3), scores[:3]) == 0.5


def test_a_cache_without_tags_says_how_to_store_them(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "cache", nets={"a": (4, 1.0)}, n_per_class=4)
    with pytest.raises(ConfigError, match="holds no tags"):
        cross_validate_tags(cache)


def rare_in_one_fold(manifest: Manifest) -> Manifest:
    """A tag on three clips, all of fold 0 (the other folds train without it), and a control tag on every other clip."""
    fold0 = [i for i, clip in enumerate(manifest.clips) if clip.fold == 0][:3]
    clips = []
    for i, clip in enumerate(manifest.clips):
        tags = (["rare"] if i in fold0 else []) + (["control"] if i % 2 else [])
        clips.append(replace(clip, tags=tuple(tags)))
    return replace(manifest, clips=tuple(clips), tags=("rare", "control"))


def test_a_tag_that_a_fold_trains_without_is_not_scored_in_that_fold(tmp_path: Path) -> None:
    """The repro: an input of pure noise, a tag whose three carriers sit in fold 0. Fold 0's heads never saw the tag,
    so its test clips are left out of the tag's figures (said in a note): never probability 1/2 called at 0.5."""
    cache = embedding_cache(tmp_path / "cache", nets={"noise": (6, 0.0)}, n_per_class=20, retarget=rare_in_one_fold)
    result = cross_validate_tags(cache, models="noise")
    rare = result.metrics["noise"]["per_tag"]["rare"]
    # the folds that learnt the tag test none of its clips: no AUC at all, rather than 0.84 from guesses of 1/2
    assert rare["roc_auc"] is None and rare["prevalence"]["mean"] == 0.0, rare
    with Cache(cache) as reader:
        outside_fold0 = int((reader.folds != 0).sum())
    assert rare["n_rows"]["mean"] == outside_fold0, "fold 0's clips, which no head learnt the tag for, are left out"
    assert any("'rare'" in note and "fold 0" in note and "not scored" in note for note in result.notes), result.notes
    assert result.metrics["noise"]["per_tag"]["control"]["roc_auc"] is not None


def test_lrap_over_scored_pairs_is_scikit_learns_on_each_rows_scored_tags(rng: np.random.Generator) -> None:
    from sklearn.metrics import label_ranking_average_precision_score as lrap

    y = (rng.random((40, 5)) < 0.3).astype(int)
    proba = np.round(rng.random((40, 5)), 1)  # ties included
    tagged = y.any(axis=1)
    full = tag_metrics(list("abcde"), y, proba, np.full_like(proba, 0.5))
    assert full["lrap"] == pytest.approx(lrap(y[tagged], proba[tagged]))
    scored = np.ones_like(y, dtype=bool)
    scored[:20, 1] = False  # tag b not scored in the first 20 rows (as when their fold trained without it)
    masked = tag_metrics(list("abcde"), y, proba, np.full_like(proba, 0.5), scored)
    rows = [lrap(y[i : i + 1, on], proba[i : i + 1, on]) for i, on in enumerate(scored) if y[i, on].any()]
    assert masked["lrap"] == pytest.approx(np.mean(rows))
    assert masked["per_tag"]["b"]["n_rows"] == 20 and masked["per_tag"]["a"]["n_rows"] == 40
    from sklearn.metrics import roc_auc_score

    assert masked["per_tag"]["b"]["roc_auc"] == pytest.approx(roc_auc_score(y[20:, 1], proba[20:, 1]))


def test_a_head_that_chooses_nothing_still_gets_its_threshold_from_inner_folds(tmp_path: Path) -> None:
    """A fixed C chooses nothing on inner folds; the tag's threshold is still the best-F1 point of inner out-of-fold
    probabilities, as the saved model's is, never a default 0.5."""
    from mvemo.fuse.heads.linear import LogisticHead

    cache = embedding_cache(tmp_path / "cache", nets={"a": (8, 2.0)}, n_per_class=12, retarget=tagged)
    result = cross_validate_tags(cache, models="a", head=LogisticHead(C=1.0))
    predictions = result.repeats[0]["a"]
    gentle = result.tags.index("gentle")
    thresholds = {fold: predictions.thresholds[predictions.folds == fold, gentle] for fold in range(3)}
    assert all(len(set(t)) == 1 and t[0] != 0.5 for t in thresholds.values()), (
        "one threshold a fold, from its inner folds"
    )


@pytest.mark.parametrize("target", ["tags", "valence,arousal"])
def test_tag_and_value_reports_warn_of_the_paper_protocol_as_the_class_report_does(tmp_path: Path, target: str) -> None:
    from mvemo.fuse.report.classes import PAPER_BANNER
    from mvemo.fuse.stage import run_target_cv
    from tests.fuse.test_dimensional import valued

    both = lambda m: valued(tagged(m))  # noqa: E731
    cache = embedding_cache(tmp_path / "cache", nets={"a": (8, 2.0)}, n_per_class=10, protocol="paper", retarget=both)
    document = run_target_cv(cache, tmp_path / "report", target, models="a").document
    assert document["protocol"] == "paper"
    assert PAPER_BANNER in (tmp_path / "report" / "report.md").read_text()
    assert "| a | 30 |" in (tmp_path / "report" / "report.md").read_text(), "the clips each figure rests on"


def test_the_ap_plot_gives_each_of_many_tags_a_row(tmp_path: Path) -> None:
    """24 tags and 4 models: a row per tag, tall enough to read (the bars side by side made a 3,330 x 360 strip)."""
    from matplotlib.image import imread

    from mvemo.fuse.report.targets import tag_ap_png

    rng = np.random.default_rng(0)
    tags, models = [f"mood{i}" for i in range(24)], ["a", "b", "late(a,b)", "integrated(a,b)"]
    per_tag = {t: {"average_precision": {"mean": rng.random()}, "prevalence": {"mean": 0.1}} for t in tags}
    document = {"tags": tags, "metrics": {m: {"per_tag": per_tag} for m in models}}
    height, width, _ = imread(tag_ap_png(document, tmp_path / "ap.png")).shape
    assert width <= 800 and height / len(tags) >= 20, (width, height)
