"""Patch-level heads: trained on one row per patch or on clip means as inner folds choose, predicted as one linear
softmax layer that is the softmax of the mean of the patches' logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from mvemo.cache.read import Cache
from mvemo.fuse.heads.linear import LogisticHead
from mvemo.fuse.heads.patches import PatchHead, patch_head
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.stage import fuse_cache
from tests.fuse.helpers import embedding_cache

PATCHES, DIM = 5, 6


def patch_rows(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    means = rng.standard_normal((3, DIM))
    X = means[y][:, None, :] + 1.5 * rng.standard_normal((n, PATCHES, DIM))
    return X.reshape(n, PATCHES * DIM), y, np.arange(n) // 2  # two clips per group


def test_patch_rows_predict_the_softmax_of_the_mean_logit() -> None:
    X, y, groups = patch_rows()
    head = PatchHead(LogisticHead(C=0.5), PATCHES, "patch").fit(X, y, groups)
    base = LogisticHead(C=0.5).fit(X.reshape(-1, DIM), np.repeat(y, PATCHES))
    logits = np.log(base.predict_proba(X.reshape(-1, DIM))).reshape(len(X), PATCHES, 3)
    np.testing.assert_allclose(head.predict_proba(X), softmax(logits.mean(axis=1), axis=1), atol=1e-9)


def test_clip_pooling_is_the_head_of_the_clip_means() -> None:
    X, y, groups = patch_rows()
    head = PatchHead(LogisticHead(C=0.5), PATCHES, "clip").fit(X, y, groups)
    means = X.reshape(len(X), PATCHES, DIM).mean(axis=1)
    base = LogisticHead(C=0.5).fit(means, y)
    np.testing.assert_allclose(head.predict_proba(X), base.predict_proba(means), atol=1e-9)


class Recording(LogisticHead):
    groups: np.ndarray | None = None

    def fit(self, X, y, groups=None):  # type: ignore[no-untyped-def]
        Recording.groups = np.asarray(groups)
        return super().fit(X, y, groups)


def test_inner_folds_choose_the_pooling_and_keep_a_clips_patches_together() -> None:
    X, y, groups = patch_rows()
    head = patch_head(LogisticHead(), PATCHES, "log_loss").fit(X, y, groups)
    assert head.selected_["pooling"] in ("patch", "clip") and set(head.inner_scores_) == {"patch", "clip"}
    assert head.inner_proba_.shape == (90, 3)
    np.testing.assert_allclose(head.inner_proba_.sum(axis=1), 1.0)
    PatchHead(Recording(), PATCHES, "patch").fit(X, y, groups)
    # the base's inner folds split the patch rows by their clips' groups: a clip's patches never straddle two folds
    np.testing.assert_array_equal(Recording.groups, np.repeat(groups.astype(str), PATCHES))
    assert not patch_head(LogisticHead(C=1.0), PATCHES, "log_loss").chooses()  # fixed settings: patch rows, no choice


@pytest.mark.heavy
def test_a_cached_patch_input_is_fitted_per_patch_and_saved_as_one_layer(tmp_path: Path) -> None:
    cache = embedding_cache(
        tmp_path / "c.h5", nets={"musicnn.patches": (DIM, 1.0)}, n_per_class=18, patches={"musicnn.patches": PATCHES}
    )
    document, folder = fuse_cache(cache, tmp_path / "out", models="musicnn.patches")
    choices = [c["pooling"] for rep in document["models"]["musicnn.patches"]["choices"] for c in rep]
    assert len(choices) == 3 and set(choices) <= {"patch", "clip"}
    saved = load_fusion_model(folder)
    with Cache(cache) as reader:
        X, y, groups = reader.read_matrix("emb/musicnn.patches/all"), reader.y, np.asarray(reader.groups)
    pooling = saved.document["models"]["musicnn.patches"]["model"]["chosen"]["pooling"]
    alone = PatchHead(LogisticHead(), PATCHES, pooling).fit(X, y, groups)
    np.testing.assert_allclose(
        saved.predict("musicnn.patches", {"musicnn.patches": X}), alone.predict_proba(X), atol=1e-9
    )


@pytest.mark.heavy
def test_default_fusions_leave_per_patch_inputs_out_and_say_so(tmp_path: Path) -> None:
    from mvemo.fuse.compose import inputs_of
    from mvemo.fuse.cv import cross_validate

    nets = {"musicnn": (DIM, 1.0), "i3d": (DIM, 1.0), "musicnn.patches": (DIM, 1.0)}
    cache = embedding_cache(tmp_path / "c.h5", nets=nets, n_per_class=12, patches={"musicnn.patches": PATCHES})
    result = cross_validate(cache)
    models = {m.name: m for m in result.models}
    assert "musicnn.patches" in models, "reported alone"
    assert set(inputs_of(models["integrated"].node)) == {"musicnn", "i3d"}
    assert any(note.startswith("musicnn.patches: per-patch inputs") for note in result.notes)
