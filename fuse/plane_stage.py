"""Stage two over several caches: a values model learning from rated and placed sets together
(``fuse.targets.plane``), cross-validated on each set (``run_plane_cv``), compared method by method
(``study_plane``), and trained on every clip of every set and saved (``fuse_plane``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache
from mvemo.fuse.inputs import input_set_name
from mvemo.fuse.models import FusionModel
from mvemo.fuse.provenance import protocol, provenance
from mvemo.fuse.report.plane import plane_markdown
from mvemo.fuse.saved.model import save_fusion_model
from mvemo.fuse.saved.targets import FittedGatedValues, FittedValueParts
from mvemo.fuse.selection import SelectionConfig
from mvemo.fuse.targets.plane import (
    DEFAULT_METHOD,
    METHODS,
    GatedValues,
    compare_methods,
    cross_validate_plane,
    decide_method,
    fit_plane,
    load_plane,
    plane_model,
    summarize_plane,
)
from mvemo.fuse.targets.regression import FittedValues
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor
from mvemo.manifests.targets import VALUE_COLUMNS

Places = Mapping[str, Mapping[str, Sequence[float]]]


def run_plane_cv(
    caches: Sequence[Cache],
    out: str | os.PathLike[str] | None,
    *,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    repeats: int = 1,
    models: str | None = None,
    places: Places | None = None,
    selection: SelectionConfig | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Cross-validate a values model learning from every one of ``caches`` by each of ``methods`` on each set, and
    write ``report.json`` and ``report.md`` into ``out`` (None: no files); returns the report's document, with each
    method's paired differences against the others."""
    plane = load_plane(caches, places=places)
    name, node = plane_model(plane, models)
    selection = _ridge(selection)
    result = cross_validate_plane(plane, node, methods=methods, repeats=repeats, selection=selection, executor=executor)
    document = summarize_plane(result) | {"model": name, "expression": node.expr, "repeats": repeats}
    document["selection"] = selection.to_json()
    if len(methods) > 1:
        document["paired"] = compare_methods(document, against=[m for m in ("rated", "own") if m in methods])
    document |= {"version": mvemo_version(), "provenance": provenance(caches[0], _sets(caches[0], plane.inputs))}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(json.dumps(document, indent=2))
        (folder / "report.md").write_text(plane_markdown(document))
    return document


def study_plane(caches: Sequence[Cache], **options: Any) -> dict[str, Any]:
    """The protocol of docs/studies/plane.md: every method on every set (``run_plane_cv``'s options), each against
    ``rated`` and ``own``, and the decision of ``fuse.targets.plane.decide_method``."""
    document = run_plane_cv(caches, None, methods=METHODS, **options)
    return document | {"decision": decide_method(document)}


def fuse_plane(
    caches: Sequence[Cache],
    out: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    repeats: int = 1,
    models: str | None = None,
    places: Places | None = None,
    selection: SelectionConfig | None = None,
    executor: Executor | None = None,
) -> tuple[dict[str, Any], Path]:
    """The CV report of ``method`` in ``out`` (``run_plane_cv``), then the model fitted by it on every clip of every
    set (its choices on inner folds of them), saved in ``out/model`` as a values model on the rated sets' scale."""
    if method == "own":
        raise ConfigError("method 'own' learns from one set: a model of several sets is made by another method")
    document = run_plane_cv(
        caches,
        out,
        methods=(method,),
        repeats=repeats,
        models=models,
        places=places,
        selection=selection,
        executor=executor,
    )
    plane = load_plane(caches, places=places)
    name, node = plane_model(plane, models)
    taken = {s.name: np.arange(len(s)) for s in plane.sets if method != "rated" or s.rated}
    fitted = fit_plane(plane, node, taken, method, _ridge(selection))
    parts = saved_values(fitted.model, fitted.choices())
    rated = next(c for c, s in zip(caches, plane.sets) if s.rated)
    read = _sets(rated, plane.inputs)
    measures = document["methods"][method]
    header: dict[str, Any] = {
        "version": mvemo_version(),
        "protocol": protocol(rated, read),
        "cache_fingerprint": rated.combined_fingerprint(read),
        "provenance": provenance(rated, read),
        "head": "ridge",
        "head_params": {},
        "selection": document["selection"],
        "default_model": name,
        "trained_on": {
            s.name: {"kind": "rated" if s.rated else "placed", "clips": len(s), "learnt": s.name in taken}
            for s in plane.sets
        },
        "method": method,
        "cv_score": {
            "metric": "CCC",
            "models": {name: float(np.mean([_mean_ccc(measures[s.name]) for s in plane.sets if s.rated]))},
        },
    }
    also = [c for c, s in zip(caches, plane.sets) if s.name in taken and c is not rated]
    folder = save_fusion_model(
        Path(out) / "model", rated, [FusionModel(name, node)], {name: parts}, header, ",".join(VALUE_COLUMNS), also
    )
    return document, folder


def _ridge(selection: SelectionConfig | None) -> SelectionConfig:
    """The selection with ridge value heads: rows of unequal weight are fitted by ridge heads alone."""
    return replace(selection or SelectionConfig(), value_heads=("ridge",))


def _sets(cache: Cache, inputs: list[str]) -> list[str]:
    return [input_set_name(cache, name, None) for name in inputs]


def _mean_ccc(measures: Mapping[str, Any]) -> float:
    return float(np.mean([measures[f"ccc_{value}"]["mean"] for value in VALUE_COLUMNS]))


def saved_values(model: FittedValues | GatedValues, chosen: dict[str, Any]) -> FittedValueParts | FittedGatedValues:
    """A fitted values model as a saved model holds it: its parts, or a gate's softmax layer and its two experts'."""
    if not isinstance(model, GatedValues):
        return FittedValueParts(model.parts(), chosen)
    rated, placed = (FittedValueParts(m.parts(), m.choices()) for m in (model.rated, model.placed))
    return FittedGatedValues(model.gate.linear_, model.gate_inputs, rated, placed, chosen)
