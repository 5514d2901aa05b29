"""A values model learning from a rated set and a set of classes with places on the plane: each set scored on its own
folds with the other's rows in training, never scored; the scored fold's targets move none of its predictions; the
rated method reads no placed label; the placed songs' weight chosen on inner folds; the model trained on both saved
and read back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mvemo.cache.read import Cache
from mvemo.fuse.plane_stage import fuse_plane
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.plane import (
    METHODS,
    PLACED_WEIGHTS,
    cross_validate_plane,
    fit_plane,
    load_plane,
    plane_model,
    summarize_plane,
)
from mvemo.manifests import ConfigError, Manifest
from mvemo.pipeline.cli.cv import METHODS as CLI_METHODS
from mvemo.pipeline.cli.main import cli
from tests.fuse.helpers import CLASSES, embedding_cache
from tests.fuse.test_dimensional import valued

pytestmark = pytest.mark.heavy

PLACES = {"calm": (1.0, -1.0), "sad": (-1.0, -1.0), "tense": (-1.0, 1.0)}  # as valued() rates them on 1..9
NETS = {"a": (8, 1.5), "b": (8, 0.3)}
SELECTION = SelectionConfig(value_heads=("ridge",), inner_folds=3)


def relabelled(fold: int | None = None):
    """A retarget giving the clips of ``fold`` (every clip: None) the next class."""

    def retarget(manifest: Manifest) -> Manifest:
        clips = tuple(
            replace(c, label=CLASSES[(CLASSES.index(c.label) + 1) % 3]) if fold is None or c.fold == fold else c
            for c in manifest.clips
        )
        return replace(manifest, clips=clips)

    return retarget


def caches(tmp_path: Path, *, placed_retarget=None, rated_retarget=valued) -> tuple[Path, Path]:
    """A rated set ('rated', 30 clips on 1..9) and a placed set ('songs', 36 clips of calm, sad and tense), their
    embeddings of the same class means (one seed), each with its own noise."""
    rated = embedding_cache(tmp_path / "r" / "rated", nets=NETS, n_per_class=10, retarget=rated_retarget)
    songs = embedding_cache(tmp_path / "s" / "songs", nets=NETS, n_per_class=12, retarget=placed_retarget)
    return rated, songs


def cv(paths: tuple[Path, Path], methods=METHODS) -> dict:
    with Cache(paths[0]) as rated, Cache(paths[1]) as songs:
        plane = load_plane([rated, songs], places={"songs": PLACES})
        result = cross_validate_plane(plane, plane_model(plane)[1], methods=methods, selection=SELECTION)
    return {"result": result, "summary": summarize_plane(result)}


def test_a_plane_reads_a_rated_set_and_a_placed_set_and_refuses_a_set_without_places(tmp_path: Path) -> None:
    paths = caches(tmp_path)
    with Cache(paths[0]) as rated, Cache(paths[1]) as songs:
        plane = load_plane([rated, songs], places={"songs": PLACES})
        assert [(s.name, s.rated) for s in plane.sets] == [("rated", True), ("songs", False)]
        assert plane.scale == (1.0, 9.0) and plane.inputs == ["a", "b"]
        placed = plane.sets[1]
        assert {tuple(t) for t in placed.targets} == set(PLACES.values())
        assert all(g.startswith("songs:") for g in placed.groups), "groups named after their set"
        with pytest.raises(ConfigError, match="places"):
            load_plane([rated, songs])
        with pytest.raises(ConfigError, match="none holds valence and arousal"):
            load_plane([songs], places={"songs": PLACES})


def test_each_set_is_scored_on_its_own_folds_and_its_scored_fold_moves_none_of_its_predictions(tmp_path: Path) -> None:
    """Scrambling the rated set's fold 0 ratings leaves what every method predicts for that fold of the rated set as
    it was, and relabelling the placed set's fold 0 that fold of the placed set; the other folds, which train on it,
    move under the methods that read it."""
    base = cv(caches(tmp_path / "base"))["result"]
    changed = {
        "rated": cv(caches(tmp_path / "ratings", rated_retarget=lambda m: _scrambled_fold(valued(m))))["result"],
        "songs": cv(caches(tmp_path / "labels", placed_retarget=relabelled(0)))["result"],
    }
    for name, other in changed.items():
        for method in METHODS:
            before, folds, choices = base.runs[method][name][0]
            after, _, after_choices = other.runs[method][name][0]
            np.testing.assert_array_equal(before[folds == 0], after[folds == 0], err_msg=f"{method} {name}")
            assert choices[0] == after_choices[0], f"{method} {name}"
        before, folds, _ = base.runs["pseudo-equal"][name][0]
        assert not np.allclose(before[folds != 0], changed[name].runs["pseudo-equal"][name][0][0][folds != 0])


def _scrambled_fold(manifest: Manifest) -> Manifest:
    clips = tuple(
        replace(c, valence=10 - c.valence, arousal=10 - c.arousal) if c.fold == 0 else c for c in manifest.clips
    )
    return replace(manifest, clips=clips)


def test_the_rated_method_reads_no_placed_label_and_the_pseudo_methods_do(tmp_path: Path) -> None:
    base = cv(caches(tmp_path / "base"), methods=("rated", "pseudo-equal"))["result"]
    moved = cv(caches(tmp_path / "moved", placed_retarget=relabelled()), methods=("rated", "pseudo-equal"))["result"]
    for name in ("rated", "songs"):
        np.testing.assert_array_equal(base.runs["rated"][name][0][0], moved.runs["rated"][name][0][0], err_msg=name)
    assert not np.allclose(base.runs["pseudo-equal"]["rated"][0][0], moved.runs["pseudo-equal"]["rated"][0][0])


def test_the_placed_songs_weight_is_chosen_on_inner_folds_and_labels_of_noise_weigh_less(tmp_path: Path) -> None:
    def weights(paths: tuple[Path, Path]) -> list[float]:
        runs = cv(paths, methods=("pseudo-inner",))["result"].runs["pseudo-inner"]
        return [c["placed_weight"] for name in ("rated", "songs") for c in runs[name][0][2]]

    true = weights(caches(tmp_path / "true"))
    rng = np.random.default_rng(0)

    def noise(manifest: Manifest) -> Manifest:
        return replace(manifest, clips=tuple(replace(c, label=CLASSES[rng.integers(3)]) for c in manifest.clips))

    shuffled = weights(caches(tmp_path / "noise", placed_retarget=noise))
    assert set(true) | set(shuffled) <= set(PLACED_WEIGHTS)
    assert np.mean(shuffled) < np.mean(true), (true, shuffled)


def test_the_summary_scores_each_set_by_its_kind(tmp_path: Path) -> None:
    summary = cv(caches(tmp_path), methods=("own", "pseudo-equal"))["summary"]
    assert summary["sets"] == {
        "rated": {"kind": "rated", "clips": 30, "folds": 3},
        "songs": {"kind": "placed", "clips": 36, "folds": 3},
    }
    rated, songs = (summary["methods"]["pseudo-equal"][name] for name in ("rated", "songs"))
    assert rated["ccc_valence"]["mean"] > 0.7 and "per_fold" in rated["ccc_valence"]
    assert songs["valence_roc_auc"]["mean"] > 0.9 and 0 <= songs["quadrant_accuracy"]["mean"] <= 1
    assert len(summary["fold_scores"]["own"]["songs"]["quadrant_accuracy"][0]) == 3


def test_a_model_of_both_sets_is_saved_on_the_rated_scale_and_the_cli_gives_several_caches(tmp_path: Path) -> None:
    paths = caches(tmp_path)
    config = tmp_path / "sets.toml"
    config.write_text(
        f'[[sets]]\ncache = "{paths[1]}"\nplaces = {{ calm = [1, -1], sad = [-1, -1], tense = [-1, 1] }}\n'
    )
    with Cache(paths[0]) as rated, Cache(paths[1]) as songs:
        document, folder = fuse_plane(
            [rated, songs], tmp_path / "fused", method="pseudo-equal", places={"songs": PLACES}, selection=SELECTION
        )
        saved = load_fusion_model(folder)
        inputs = {name: rated.read_matrix(f"emb/{name}/all") for name in ("a", "b")}
        values = np.asarray(rated.targets.values)
    assert saved.outputs == ["valence", "arousal"] and saved.scale == (1.0, 9.0)
    assert saved.document["trained_on"]["songs"] == {"kind": "placed", "clips": 36, "learnt": True}
    assert len(saved.document["training_media_sha256"]) == 30 + 36 - 30, "the media of both sets (shared names)"
    assert np.corrcoef(saved.predict(saved.default_model, inputs)[:, 0], values[:, 0])[0, 1] > 0.8
    assert (tmp_path / "fused" / "report.md").is_file() and "songs" in document["methods"]["pseudo-equal"]
    result = CliRunner().invoke(
        cli, ["cv", "--cache", str(paths[0]), "--config", str(config), "--out", str(tmp_path / "cv"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["sets"]) == {"rated", "songs"}
    refused = CliRunner().invoke(cli, ["cv", "--cache", str(paths[0]), "--method", "own", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "several caches" in refused.output


def test_the_command_line_names_every_method() -> None:
    assert tuple(CLI_METHODS) == METHODS


def test_a_one_sided_fit_lets_placed_songs_lie_further_out_than_their_quadrants_position(tmp_path: Path) -> None:
    """A placed song predicted beyond its quadrant's mean rated position costs nothing: the one-sided fit's placed
    songs lie further from the middle than the pseudo-equal fit's, on the same side as often."""
    paths = caches(tmp_path)
    with Cache(paths[0]) as rated, Cache(paths[1]) as songs:
        plane = load_plane([rated, songs], places={"songs": PLACES})
    node = plane_model(plane)[1]
    taken = {s.name: np.arange(len(s)) for s in plane.sets}
    placed = plane.sets[1]
    middle = sum(plane.scale) / 2
    spread = {}
    for method in ("pseudo-equal", "one-sided"):
        fitted = fit_plane(plane, node, taken, method, SELECTION)
        pred = fitted.model.predict(placed.blocks)
        spread[method] = float(np.mean(np.abs(pred - middle)))
        assert np.mean(np.sign(pred - middle) == placed.targets) > 0.8, method
    assert spread["one-sided"] > spread["pseudo-equal"]


def test_a_gated_model_mixes_its_experts_by_the_gate_and_reads_back_as_it_predicted(tmp_path: Path) -> None:
    """The gate tells a rated clip from a placed song (the placed set's embeddings lie elsewhere here), so each set's
    clips get their own expert's values; saved (format 5) and loaded, the model predicts what it predicted."""
    rated_path = embedding_cache(tmp_path / "r" / "rated", nets=NETS, n_per_class=10, retarget=valued)
    songs_path = embedding_cache(tmp_path / "s" / "songs", nets={"a": (8, 1.5), "b": (8, 0.3)}, n_per_class=12, seed=7)
    with Cache(rated_path) as rated, Cache(songs_path) as songs:
        plane = load_plane([rated, songs], places={"songs": PLACES})
        taken = {s.name: np.arange(len(s)) for s in plane.sets}
        fitted = fit_plane(plane, plane_model(plane)[1], taken, "gated", SELECTION)
        _, folder = fuse_plane(
            [rated, songs], tmp_path / "fused", method="gated", places={"songs": PLACES}, selection=SELECTION
        )
    model = fitted.model
    for s in plane.sets:
        share = model.rated_share(s.blocks)
        assert (share > 0.5).mean() > 0.9 if s.rated else (share < 0.5).mean() > 0.9, s.name
    saved = load_fusion_model(folder)
    assert (
        saved.document["format"] == 5
        and saved.document["models"][saved.default_model]["model"]["kind"] == "gated-values"
    )
    for s in plane.sets:
        np.testing.assert_allclose(saved.predict(saved.default_model, s.blocks), model.predict(s.blocks), atol=1e-8)
