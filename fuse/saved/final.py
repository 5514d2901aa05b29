"""The final fusion model: each model fitted on every usable clip of a cache, its choices made on inner folds of those
clips (``fuse.saved.model`` saves it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mvemo.cache.read import Cache
from mvemo.fuse.fitting import Fitted, Trainings, fit
from mvemo.fuse.heads.upper import UpperLayers
from mvemo.fuse.inputs import in_sample_inputs, input_set_name, layers_above, patch_count
from mvemo.fuse.loop import Basis, new_run, release_run, run_matrices
from mvemo.fuse.models import FusionModel
from mvemo.fuse.saved.targets import FittedTags, FittedValueParts, fit_final_tags, fit_final_values
from mvemo.fuse.selection import SelectionConfig
from mvemo.manifests.errors import CacheError


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
