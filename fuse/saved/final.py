"""The final fusion model: each model fitted on every usable clip of a cache, its choices made on inner folds of those
clips (``fuse.saved.model`` saves it): a model of classes as ``fuse.fitting`` fits it, one of tags as a two-class model
per tag with its threshold (``fit_final_tags``; a tag too few groups carry gets its share, ``prior_member``), and one
of values as its parts (``fit_final_values``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvemo.cache.read import Cache
from mvemo.fuse.compose import Features, Node, inputs_of
from mvemo.fuse.fitted import Fitted, FittedFeatures
from mvemo.fuse.fitting import Trainings, fit, inner_threshold
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.inputs import in_sample_inputs, input_set_name, layers_above, patch_count
from mvemo.fuse.loop import Basis, new_run, release_run, run_matrices
from mvemo.fuse.models import FusionModel
from mvemo.fuse.saved.targets import FittedTags, FittedValueParts
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.regression import fit_values
from mvemo.fuse.targets.tags import unlearnable
from mvemo.manifests.errors import CacheError
from mvemo.manifests.targets import quadrants


def train_final(
    cache: Cache,
    models: list[FusionModel],
    head: Any,
    selection: SelectionConfig | None = None,
    upper: Mapping[str, UpperLayers] | None = None,
    target: str = "label",
    run: str | None = None,
    basis: Basis | None = None,
) -> dict[str, Fitted | FittedTags | FittedValueParts]:
    """Each model fitted on every usable clip of the final feature sets (``emb/<net>/all``, LLDs), its choices
    made on inner folds of those clips (``upper`` and ``run``: as ``fuse.cv.cross_validate``'s, so that the
    matrices its CV read serve it too); for ``target`` "tags" a model per tag, for values (e.g. "valence,arousal")
    value heads (``fuse.saved.targets``). ``basis``: that of the cross-validation that scored ``models``; the cache
    must be as it read it (``fuse.loop.Basis.require_unchanged``), or nothing is fitted."""
    if basis is not None:
        basis.require_unchanged(cache)
    selection = selection or SelectionConfig()
    fitted: dict[str, Fitted | FittedTags | FittedValueParts] = {}
    y = cache.y
    set_names = {name: input_set_name(cache, name, None) for model in models for name in model.inputs}
    patches = {name: n for name, s in set_names.items() if (n := patch_count(cache, s)) is not None}
    above = layers_above(cache, set_names, upper or {})
    in_sample = in_sample_inputs(cache, set_names)
    trainings = Trainings(y, cache.groups, len(cache.classes), head, selection, patches, above, in_sample)
    this_run = run or new_run()
    reads = {s: (m, cache.done(s)) for s, m in run_matrices(this_run, cache, set_names.values()).items()}
    if run is None:
        release_run(this_run)
    targets, groups = cache.targets, cache.groups
    for model in models:
        read = {name: reads[set_names[name]] for name in model.inputs}
        rows = np.flatnonzero(np.logical_and.reduce([done for _, done in read.values()]))
        blocks = {name: X for name, (X, _) in read.items()}
        if target == "tags":
            fitted[model.name] = fit_final_tags(
                model.node,
                rows,
                blocks,
                list(targets.tags),
                targets.tag_matrix,
                groups,
                head,
                selection,
                patches,
                above,
                in_sample,
            )
        elif target != "label":
            columns = [targets.value_names.index(n) for n in target.split(",")]
            values = targets.values[:, columns]
            fitted[model.name] = fit_final_values(
                model.node, rows, blocks, values, targets.scale, groups, selection, in_sample
            )
        elif len(np.unique(y[rows])) < 2:
            raise CacheError(f"model {model.name!r}: fewer than two classes among its {len(rows)} usable clips")
        else:
            fitted[model.name] = fit(model.node, trainings.on(rows, blocks))
    return fitted


@dataclass
class PriorHead:
    """A tag's share among the rows whatever the inputs, as a linear softmax layer of zero weights: the head of a tag
    that too few groups carry (or lack) for anything to be chosen on inner folds."""

    linear_: LinearSoftmax

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.linear_.predict_proba(X)


def prior_member(inputs: tuple[str, ...], width: int, share: float) -> FittedFeatures:
    """The model of a tag that cannot be learnt: its share (kept off 0 and 1) over the model's inputs."""
    p = float(np.clip(share, 1e-6, 1 - 1e-6))
    linear = LinearSoftmax(np.array([0, 1]), np.zeros(width), np.ones(width), np.zeros((2, width)), np.log([1 - p, p]))
    return FittedFeatures(Features(inputs), PriorHead(linear), linear.classes, 2, {"prior": share})


def fit_final_tags(
    node: Node,
    rows: np.ndarray,
    blocks: Mapping[str, np.ndarray],
    tags: list[str],
    tag_matrix: np.ndarray,
    groups: list[str],
    head: Any,
    selection: SelectionConfig,
    patches: Mapping[str, int],
    upper: Mapping[str, Any],
    in_sample: frozenset[str],
) -> FittedTags:
    """A model per tag fitted on ``rows`` (of the cache; ``blocks`` holds every row), its threshold the best-F1
    probability of the inner folds' out-of-fold predictions of those rows (``fuse.fitting.inner_threshold``;
    ``patches``, ``upper`` and ``in_sample``: as ``fuse.fitting.Trainings``'). A tag that fewer than two groups carry,
    or lack, among the rows gets its share instead (``prior_member``, threshold 0.5), as its CV reported it
    unscored."""
    members: list[Fitted] = []
    thresholds = []
    inputs = inputs_of(node)
    width = sum(blocks[name].shape[1] for name in inputs)
    for t in range(tag_matrix.shape[1]):
        y = tag_matrix[:, t].astype(np.int64)
        if unlearnable(y[rows], [groups[r] for r in rows]):
            members.append(prior_member(inputs, width, float(y[rows].mean())))
            thresholds.append(0.5)
            continue
        training = Trainings(y, groups, 2, head, selection, patches, upper, in_sample).on(rows, blocks)
        fitted = fit(node, training, inner=True)
        members.append(fitted)
        thresholds.append(inner_threshold(fitted, y[rows], training))
    return FittedTags(tags, members, thresholds)


def fit_final_values(
    node: Node,
    rows: np.ndarray,
    blocks: Mapping[str, np.ndarray],
    values: np.ndarray,
    scale: tuple[float, float] | None,
    groups: list[str],
    selection: SelectionConfig,
    in_sample: frozenset[str],
) -> FittedValueParts:
    """The value model fitted on ``rows`` (of the cache), inner folds stratified by quadrant (of ``scale``) where
    they can be (``in_sample``: as ``fuse.targets.regression.fit_values``')."""
    strata = np.zeros(len(rows), dtype=np.int64) if scale is None else quadrants(values[rows], scale)
    train_groups = [groups[r] for r in rows]
    fitted = fit_values(
        node,
        {i: X[rows] for i, X in blocks.items()},
        values[rows],
        groups=train_groups,
        strata=strata,
        selection=selection,
        in_sample=in_sample,
    )
    return FittedValueParts(fitted.parts(), fitted.choices())
