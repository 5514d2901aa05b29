"""Multi-label tags through the nested cross-validation: recovered where the embeddings carry them, chance where not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvemo.fuse.metrics import best_f1_threshold
from mvemo.fuse.tagging import cross_validate_tags, tag_metrics
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
    first = result.per_tag["gentle"].repeat_folds
    assert all(np.array_equal(f, g) for f, g in zip(first, result.per_tag["random"].repeat_folds)), "one split per repeat"


def test_tag_metrics_against_hand_computed_values() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    proba = np.array([[0.9, 0.2], [0.85, 0.8], [0.6, 0.4], [0.1, 0.5]])
    metrics = tag_metrics(["x", "z"], y, proba, np.full_like(proba, 0.5))
    assert metrics["per_tag"]["x"]["roc_auc"] == 0.75  # of 4 (present, absent) pairs, 0.6 < 0.85 is ranked wrong
    assert metrics["per_tag"]["x"]["f1"] == pytest.approx(0.8)  # 2 right calls, 1 false
    assert metrics["per_tag"]["z"]["roc_auc"] == 0.75  # 0.4 < 0.5 ranked wrong
    assert metrics["per_tag"]["z"]["f1"] == pytest.approx(0.5)  # 1 right, 1 false, 1 missed
    assert metrics["lrap"] == pytest.approx((1 + 0.5 + 1) / 3), "row 1's tag ranks second; the untagged row 3 is left out"


def test_best_f1_threshold_is_a_score_of_the_rows() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.35, 0.8, 0.4, 0.9])
    assert best_f1_threshold(y, scores) == 0.35
    assert best_f1_threshold(np.zeros(3), scores[:3]) == 0.5


def test_a_cache_without_tags_says_how_to_store_them(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "cache", nets={"a": (4, 1.0)}, n_per_class=4)
    with pytest.raises(ConfigError, match="holds no tags"):
        cross_validate_tags(cache)
