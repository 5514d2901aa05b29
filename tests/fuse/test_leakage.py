"""The outer test fold only scores: change its ratings or its labels, and what the CV predicts for it, what the inner
folds chose for it and the map onto the ratings' scale it was given do not move (while the other folds, which train
on it, do)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from mvemo.fuse.cv import cross_validate
from mvemo.fuse.targets.values import cross_validate_values
from mvemo.manifests import Manifest
from tests.fuse.helpers import CLASSES, embedding_cache

SCORED = 0  # the outer fold whose targets change
NETS = {"a": (8, 1.5), "b": (8, 0.5)}
VALUE_MODELS = "a,b,late(a,b),late(a,b,weights=trimmed),best(late(a,b),a+b,a,b)"
CLASS_MODELS = "a,late(a,b),late(a,b,weights=inner),stack(a,b),best(late(a,b),a+b,a,b)"


def rated(manifest: Manifest, *, scrambled: bool) -> Manifest:
    """Valence and arousal from each clip's class, with noise; ``scrambled``: the scored fold's ratings otherwise (its
    valence turned over and its arousal drawn anew)."""
    rng = np.random.default_rng(5)
    means = np.array([[7.0, 3.0], [2.5, 2.0], [4.0, 7.5]])
    clips = []
    for clip, y in zip(manifest.clips, manifest.y):
        valence, arousal = np.clip(means[y] + 0.4 * rng.standard_normal(2), 1, 9)
        redrawn = rng.uniform(1, 9)
        if scrambled and clip.fold == SCORED:
            valence, arousal = 10 - valence, redrawn
        clips.append(replace(clip, valence=float(valence), arousal=float(arousal)))
    return replace(manifest, clips=tuple(clips), scale=(1.0, 9.0))


def relabelled(manifest: Manifest) -> Manifest:
    """The scored fold's clips each given the next class."""
    clips = tuple(
        replace(c, label=CLASSES[(CLASSES.index(c.label) + 1) % len(CLASSES)]) if c.fold == SCORED else c
        for c in manifest.clips
    )
    return replace(manifest, clips=clips)


def test_the_scored_folds_ratings_move_none_of_its_predictions_choices_or_scale_map(tmp_path: Path) -> None:
    results = {
        scrambled: cross_validate_values(
            embedding_cache(
                tmp_path / f"cache-{scrambled}",
                nets=NETS,
                n_per_class=12,
                retarget=lambda m, scrambled=scrambled: rated(m, scrambled=scrambled),
            ),
            models=VALUE_MODELS,
        )
        for scrambled in (False, True)
    }
    before, after = (results[s].repeats[0] for s in (False, True))
    for model in before:
        old, new = before[model], after[model]
        np.testing.assert_array_equal(old.rows, new.rows)
        scored = old.folds == SCORED
        assert not np.allclose(old.values[scored], new.values[scored]), "the scored fold's ratings changed"
        np.testing.assert_array_equal(old.pred[scored], new.pred[scored], err_msg=model)
        assert old.choices[SCORED] == new.choices[SCORED], model
        assert old.described[SCORED] == new.described[SCORED], model
        assert not np.allclose(old.pred[~scored], new.pred[~scored]), f"{model}: the other folds train on it"
    assert any("ratings_scale" in choice for choice in before["a"].choices), "a map onto the ratings' scale was fitted"


def test_the_scored_folds_labels_move_none_of_its_probabilities_or_choices(tmp_path: Path) -> None:
    results = {
        changed: cross_validate(
            embedding_cache(
                tmp_path / f"cache-{changed}", nets=NETS, n_per_class=12, retarget=relabelled if changed else None
            ),
            models=CLASS_MODELS,
        )
        for changed in (False, True)
    }
    before, after = (results[c].repeats[0] for c in (False, True))
    for model in before:
        old, new = before[model], after[model]
        scored = old.folds == SCORED
        assert not np.array_equal(old.y[scored], new.y[scored]), "the scored fold's labels changed"
        np.testing.assert_array_equal(old.proba[scored], new.proba[scored], err_msg=model)
        assert old.choices[SCORED] == new.choices[SCORED], model
        assert not np.allclose(old.proba[~scored], new.proba[~scored]), f"{model}: the other folds train on it"
