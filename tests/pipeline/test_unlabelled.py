"""A dataset of tags and values without class labels, end to end: stage one's nets, stage two, a saved model that
predicts through a net."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.extract.stage import extract_features
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.stage import fuse_cache
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.synthetic import DEMO_TAGS, SyntheticConfig
from mvemo.pipeline.demo import build_demo_manifest, demo_configs
from mvemo.pipeline.predict.predictor import Predictor

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled")
    demo = build_demo_manifest(root / "data", SyntheticConfig(clips_per_class=3, duration_s=2.0), k=2)
    manifest = assign_folds(
        replace(demo, classes=(), clips=tuple(replace(c, label="", fold=None) for c in demo.clips)), k=2
    )
    extract_features(manifest, root / "cache", features="descriptors", nets=("onedcnn",), configs=demo_configs(2.0))
    return root / "cache"


@pytest.mark.parametrize("target", ["tags", "valence,arousal"])
def test_a_model_of_unlabelled_clips_predicts_through_a_net(unlabelled: Path, tmp_path: Path, target: str) -> None:
    with Cache(unlabelled) as cache:
        assert cache.classes == () and "emb/onedcnn/all" in cache.feature_sets()
        embedding, clip_id = cache.read_matrix("emb/onedcnn/all"), cache.clip_ids[0]
    fuse_cache(unlabelled, tmp_path / "out", target=target, models="onedcnn,descriptors")
    saved = load_fusion_model(tmp_path / "out" / "model")
    assert saved.classes == [] and saved.outputs == (list(DEMO_TAGS) if target == "tags" else ["valence", "arousal"])
    clip = next(c for c in build_clips(unlabelled) if c.clip_id == clip_id)
    (result,) = Predictor(tmp_path / "out" / "model", "onedcnn").predict([clip])
    assert "error" not in result, result
    scores = result.get("probabilities") or result["values"]
    expected = saved.predict("onedcnn", {"onedcnn": embedding[:1]})[0]
    np.testing.assert_allclose(list(scores.values()), expected, atol=1e-4), "the net rebuilt as stage one built it"


def build_clips(cache_path: Path) -> list:
    from mvemo.manifests import Clip

    with Cache(cache_path) as cache:
        return [Clip(c, "", video=Path(v), audio=Path(v)) for c, v in zip(cache.clip_ids, cache.media["video"])]
