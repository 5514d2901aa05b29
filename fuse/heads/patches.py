"""Patch-level heads: an input that keeps each 3-s patch of a clip (a music encoder's ``pool = "patches"``
variant) trains its head on one row per patch, or on the clip's mean over patches, as inner folds choose.

A clip's probabilities are the softmax of the mean of its patches' logits. For the patch rows that is the
normalized geometric mean of the patches' probabilities, the mean of their log-probabilities (whose
normalizers do not depend on the class); for the clip's mean it is the head itself. Either way it is one
linear softmax layer over the input's patch-major columns: the head's weights once per patch, over the
patch count. A saved model stores it like any other head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.utils.multiclass import unique_labels

from mvemo.fuse.heads.families import ChosenHead
from mvemo.fuse.heads.linear import _groups, _LinearHead, fit_head
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.manifests.errors import ConfigError

POOLINGS = ("patch", "clip")


class PatchHead(_LinearHead):
    """``base`` (any of mvemo's heads) over an input of ``patches`` patches per clip, each ``d`` columns, patch
    after patch: fitted on one row per patch (``pooling="patch"``: the clip's label, its group, so inner folds keep
    a clip's patches together) or on each clip's mean over its patches (``"clip"``)."""

    def __init__(self, base: Any = None, patches: int = 1, pooling: str = "patch") -> None:
        self.base = base
        self.patches = patches
        self.pooling = pooling

    def fit(self, X: Any, y: Any, groups: Any = None) -> PatchHead:
        X, y = np.asarray(X), np.asarray(y)
        n, p = len(X), self.patches
        if X.ndim != 2 or X.shape[1] % p:
            raise ConfigError(
                f"a patch-level head over {p} patches per clip: the input's {X.shape[1:]} columns do not split"
            )
        per_patch = X.reshape(n, p, -1)
        self.classes_, self.n_features_in_ = unique_labels(y), X.shape[1]
        clip_groups = np.asarray(_groups(groups, n))
        if self.pooling == "patch":
            base = fit_head(self.base, per_patch.reshape(n * p, -1), np.repeat(y, p), np.repeat(clip_groups, p))
        else:
            base = fit_head(self.base, per_patch.mean(axis=1), y, clip_groups)
        linear = base.linear_
        self.linear_ = LinearSoftmax(
            linear.classes,
            np.tile(linear.mean, p),
            np.tile(linear.scale, p),
            np.tile(linear.weights, (1, p)) / p,
            linear.bias,
        )
        self.selected_ = dict(base.selected_)
        self.inner_proba_ = base.inner_proba_
        if self.pooling == "patch" and base.inner_proba_ is not None:
            log_p = np.log(np.clip(base.inner_proba_, 1e-300, 1.0)).reshape(n, p, -1)
            self.inner_proba_ = softmax(log_p.mean(axis=1), axis=1)
        return self

    def chooses(self) -> bool:
        return chooses(self.base)


def chooses(head: Any) -> bool:
    """Whether ``head`` chooses settings on inner folds: mvemo's heads say; any other classifier does not."""
    return bool(getattr(head, "chooses", lambda: False)())


def patch_head(base: Any, patches: int, scoring: str) -> _LinearHead:
    """``base`` over an input of ``patches`` patches per clip, trained on patch rows or on clip means as the inner
    folds choose (``selected_["pooling"]``); a head of fixed settings, which chooses nothing there, on patch rows."""
    if not chooses(base):
        return PatchHead(base, patches, "patch")
    return ChosenHead(tuple((p, PatchHead(base, patches, p)) for p in POOLINGS), scoring, key="pooling")
