"""Final models of tags and of valence/arousal as a saved model holds them: records and arrays (never pickle); they
are fitted by ``fuse.saved.final``.

A tag model is one two-class model per tag (``fuse.compose``'s tree, saved as any class model) with the threshold
at and above which the tag is called, chosen on inner folds of every clip. A value model is a weighted sum of linear
maps and kernel expansions of its inputs (``fuse.targets.parts.LinearPart``, ``KernelPart``): ``heads.h5`` holds
each map's ``coef`` (m, d), ``intercept`` (m,) and the range ``low``, ``high`` (d,) its inputs are clipped to, and an
expansion's ``coef`` (m, k) over its ``support`` (k, d), with its ``mean``, ``scale`` and ``gamma``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvemo.fuse.fitted import Fitted, concatenated
from mvemo.fuse.heads.softmax import LinearSoftmax
from mvemo.fuse.targets.parts import KernelPart, LinearPart, Part, predict_parts

VALUE_ARRAYS = ("coef", "intercept", "low", "high")
KERNEL_VALUE_ARRAYS = (*VALUE_ARRAYS, "mean", "scale", "support", "gamma")


@dataclass
class LinearValues:
    """A linear map to values as ``heads.h5`` stores it: ``coef`` (m, d), ``intercept`` (m,), and the range its
    inputs are clipped to, ``low`` and ``high`` (d,) (``fuse.targets.parts.LinearPart``)."""

    coef: np.ndarray
    intercept: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass
class KernelValues:
    """A kernel expansion to values as ``heads.h5`` stores it (``fuse.targets.parts.KernelPart``, its inputs and
    weight aside)."""

    coef: np.ndarray
    intercept: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    support: np.ndarray
    gamma: np.ndarray


class FittedTags:
    """One two-class model per tag, each with its threshold: ``proba`` gives each tag's probability (n, n_tags)."""

    def __init__(self, tags: list[str], members: list[Fitted], thresholds: list[float]) -> None:
        self.tags, self.members, self.thresholds = tags, members, thresholds

    def proba(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.stack([m.proba(blocks)[:, 1] for m in self.members], axis=1)

    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for m in self.members for name in m.inputs()))


class FittedValueParts:
    """A value model as its parts: ``values`` gives its values of new rows (n, m)."""

    def __init__(self, parts: list[Part], chosen: dict[str, Any]) -> None:
        self.parts, self.chosen = parts, chosen

    def values(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        return predict_parts(self.parts, blocks)

    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for part in self.parts for name in part.inputs))


class FittedGatedValues:
    """Two value models mixed by a gate (``fuse.targets.plane.GatedValues``): ``rated`` weighed by the gate's
    probability of class 1 (a clip's music is like the rated sets') over the ``gate_inputs``' columns side by side,
    ``placed`` by the rest."""

    def __init__(
        self,
        gate: LinearSoftmax,
        gate_inputs: tuple[str, ...],
        rated: FittedValueParts,
        placed: FittedValueParts,
        chosen: dict[str, Any],
    ) -> None:
        self.gate, self.gate_inputs, self.rated, self.placed, self.chosen = gate, gate_inputs, rated, placed, chosen

    def values(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        proba = self.gate.predict_proba(concatenated(blocks, self.gate_inputs))
        share = proba[:, list(self.gate.classes).index(1)][:, None]
        return share * self.rated.values(blocks) + (1 - share) * self.placed.values(blocks)

    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.gate_inputs, *self.rated.inputs(), *self.placed.inputs()]))


def tags_record(fitted: FittedTags, record: Callable[[Fitted], dict[str, Any]]) -> dict[str, Any]:
    """A tag model as JSON: each tag's class-model record (``record``, ``fuse.saved.model.to_record``) and threshold."""
    return {
        "kind": "tags",
        "per_tag": [
            {"tag": tag, "threshold": threshold, "model": record(member)}
            for tag, member, threshold in zip(fitted.tags, fitted.members, fitted.thresholds)
        ],
    }


def values_record(fitted: FittedValueParts, heads: dict[str, Any]) -> dict[str, Any]:
    """A value model as JSON, each part's arrays added to ``heads`` under its key."""
    parts = []
    for part in fitted.parts:
        key = f"head{len(heads)}"
        kind, names = (
            (KernelValues, KERNEL_VALUE_ARRAYS) if isinstance(part, KernelPart) else (LinearValues, VALUE_ARRAYS)
        )
        heads[key] = kind(*(np.asarray(getattr(part, name), dtype=np.float64) for name in names))
        parts.append({"inputs": list(part.inputs), "head": key, "weight": float(part.weight)})
    return {"kind": "values", "parts": parts, "chosen": fitted.chosen}


def gated_record(fitted: FittedGatedValues, heads: dict[str, Any]) -> dict[str, Any]:
    """A gated value model as JSON: its gate (a softmax layer, added to ``heads``) and its two experts' records."""
    key = f"head{len(heads)}"
    heads[key] = fitted.gate
    experts = {name: values_record(getattr(fitted, name), heads) for name in ("rated", "placed")}
    return {"kind": "gated-values", "gate": {"inputs": list(fitted.gate_inputs), "head": key}, **experts} | {
        "chosen": fitted.chosen
    }


def gated_from_record(record: dict[str, Any], heads: Mapping[str, Any]) -> FittedGatedValues:
    gate = record["gate"]
    rated, placed = (values_from_record(record[name], heads) for name in ("rated", "placed"))
    return FittedGatedValues(heads[gate["head"]], tuple(gate["inputs"]), rated, placed, record["chosen"])


def tags_from_record(record: dict[str, Any], member: Callable[[dict[str, Any]], Fitted]) -> FittedTags:
    members = [member(entry["model"]) for entry in record["per_tag"]]
    tags = [str(entry["tag"]) for entry in record["per_tag"]]
    return FittedTags(tags, members, [float(entry["threshold"]) for entry in record["per_tag"]])


def values_from_record(record: dict[str, Any], heads: Mapping[str, Any]) -> FittedValueParts:
    parts: list[Part] = []
    for p in record["parts"]:
        head, inputs, weight = heads[p["head"]], tuple(p["inputs"]), float(p["weight"])
        linear = (head.coef, head.intercept, weight, head.low, head.high)
        if isinstance(head, KernelValues):
            parts.append(KernelPart(inputs, *linear, head.mean, head.scale, head.support, float(head.gamma)))
        else:
            parts.append(LinearPart(inputs, *linear))
    return FittedValueParts(parts, record["chosen"])
