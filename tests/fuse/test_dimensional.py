"""Valence and arousal through the nested cross-validation: recovered where the embeddings carry them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvemo.fuse.metrics import sign_agreement
from mvemo.fuse.targets.values import ccc, cross_validate_values, value_metrics
from mvemo.manifests import ConfigError, Manifest
from tests.fuse.helpers import embedding_cache


def valued(manifest: Manifest) -> Manifest:
    """Valence from the class (carried by the embeddings, one value per class plus a little noise), arousal too."""
    rng = np.random.default_rng(3)
    valence, arousal = np.array([7.0, 2.5, 4.0]), np.array([3.0, 2.0, 7.5])
    clips = tuple(
        replace(
            c,
            valence=float(np.clip(valence[y] + 0.3 * rng.standard_normal(), 1, 9)),
            arousal=float(np.clip(arousal[y] + 0.3 * rng.standard_normal(), 1, 9)),
        )
        for c, y in zip(manifest.clips, manifest.y)
    )
    return replace(manifest, clips=clips, scale=(1.0, 9.0))


def test_values_carried_by_the_embeddings_reach_a_high_ccc(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "cache", nets={"a": (8, 2.0), "b": (8, 0.0)}, n_per_class=20, retarget=valued)
    choice = "best(late(a,b),a+b,a,b)"
    result = cross_validate_values(cache, models=f"a,b,late(a,b),{choice}", repeats=2)
    assert result.names == ("valence", "arousal") and len(result.repeats) == 2
    for name in result.names:
        assert result.metrics["a"][name]["ccc"] > 0.8
        assert result.metrics["b"][name]["ccc"] < 0.3, "an input carrying nothing"
        assert result.metrics[choice][name]["ccc"] > 0.8, "the choice among fusions takes the carrying input"
    assert result.metrics["a"]["quadrants"]["accuracy"] > 0.8
    assert np.sum(result.metrics["a"]["quadrants"]["confusion"]) == 2 * 60
    only = cross_validate_values(cache, names=("arousal",), models="a")
    assert only.names == ("arousal",) and "quadrants" not in only.metrics["a"]


def test_metrics_of_known_predictions() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(y, y) == pytest.approx(1.0)
    shifted = value_metrics(y, y + 1)
    assert shifted["pearson"] == pytest.approx(1.0) and shifted["rmse"] == pytest.approx(1.0)
    assert shifted["ccc"] == pytest.approx(2 * 1.25 / (1.25 + 1.25 + 1)), "an offset costs concordance, not correlation"
    assert shifted["r2"] == pytest.approx(1 - 1 / 1.25)


def test_a_cache_without_values_is_refused_and_every_fusion_rule_fits_values(tmp_path: Path) -> None:
    plain = embedding_cache(tmp_path / "plain", nets={"a": (4, 1.0)}, n_per_class=4)
    with pytest.raises(ConfigError, match="holds no valence, arousal values"):
        cross_validate_values(plain)
    cache = embedding_cache(tmp_path / "cache", nets={"a": (8, 2.0), "b": (8, 0.0)}, n_per_class=12, retarget=valued)
    result = cross_validate_values(cache, models="stack(a,b),late(a,b,weights=inner)")
    for model in ("stack(a,b)", "late(a,b,weights=inner)"):
        assert result.metrics[model]["valence"]["ccc"] > 0.8, model


def test_every_figure_says_how_many_clips_it_rests_on_and_a_model_left_out_says_why(tmp_path: Path) -> None:
    """The repro: ``a`` computed for 9 of 30 clips, ``b`` for none. The report gives a's 9 clips and the 21 it left
    out with why, and b as not scored: no figure from fewer clips than it says, no model gone in silence."""
    from mvemo.fuse.stage import run_target_cv

    cache = embedding_cache(
        tmp_path / "cache",
        nets={"a": (8, 2.0), "b": (8, 2.0)},
        n_per_class=10,
        written={"emb/a/all": 9},
        failed_sets=("emb/b/all",),
        retarget=valued,
    )
    document = run_target_cv(cache, tmp_path / "va", "valence,arousal", models="a,b").document
    assert document["metrics"]["a"]["n_rows"] == 9 and "b" not in document["metrics"]
    assert document["clips"]["models"]["a"]["used"] == 9 and len(document["clips"]["models"]["a"]["left_out"]) == 21
    assert "no clip has all its inputs" in document["unscored_models"]["b"]
    assert any(note.startswith("b: not scored") for note in document["notes"])
    text = (tmp_path / "va" / "report.md").read_text()
    assert "| a | 9 |" in text and "| b | not scored: no clip has all its inputs" in text and "## Clips" in text
    assert document["protocol"] == "leakfree" and "protocol `leakfree`" in text


def test_sign_agreement_scores_valence_and_arousal_against_another_sets_quadrants() -> None:
    """Q1 and Q4 are valence's high side, Q1 and Q2 arousal's: values that order the clips so score ROC-AUC 1; valence
    reversed scores 0 and swaps each quadrant with its mirror across the arousal axis."""
    truth = ["Q1", "Q2", "Q3", "Q4", "Q1", "Q3"]
    values = np.array([[3.0, 4.0], [-2.0, 5.0], [-1.0, -3.0], [2.0, -6.0], [0.5, 0.5], [-4.0, -0.5]])
    agreed = sign_agreement(values, truth, (-10, 10))
    assert agreed == {"clips": 6, "valence_roc_auc": 1.0, "arousal_roc_auc": 1.0, "quadrant_accuracy": 1.0}
    mirrored = sign_agreement(values * [-1, 1], truth, (-10, 10))
    assert mirrored["valence_roc_auc"] == 0.0 and mirrored["arousal_roc_auc"] == 1.0
    assert mirrored["quadrant_accuracy"] == 0.0
    assert sign_agreement(values[:2] + np.array([0.0, 20.0]), truth[:2], (0, 40))["arousal_roc_auc"] is None, (
        "Q1 and Q2: all high"
    )
