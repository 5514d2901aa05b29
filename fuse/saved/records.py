"""A fitted fusion model as the records of ``model.json`` and the head arrays of ``heads.h5``, and back: the file
format of ``fuse.saved.model`` (plain JSON and arrays, never pickle)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeAlias

import h5py
import numpy as np

from mvemo.fuse.compose import Best, Features, Late, Stack
from mvemo.fuse.fitted import Fitted, FittedBest, FittedFeatures, FittedLate, FittedStack
from mvemo.fuse.heads.softmax import KernelSoftmax, LinearSoftmax
from mvemo.fuse.heads.upper_net import UpperSoftmax
from mvemo.fuse.saved.check import HEAD_ARRAYS, KERNEL_HEAD_ARRAYS, UPPER_HEAD_ARRAYS, Invalid
from mvemo.fuse.saved.targets import (
    KERNEL_VALUE_ARRAYS,
    VALUE_ARRAYS,
    FittedGatedValues,
    FittedTags,
    FittedValueParts,
    KernelValues,
    LinearValues,
    gated_from_record,
    gated_record,
    tags_from_record,
    tags_record,
    values_from_record,
    values_record,
)
from mvemo.fuse.selection import Dropped
from mvemo.manifests.errors import ConfigError

# what heads.h5 holds: a linear or kernel softmax layer, fine-tuned upper layers, or a linear map or kernel expansion to
# values
SavedHead: TypeAlias = LinearSoftmax | KernelSoftmax | UpperSoftmax | LinearValues | KernelValues


def to_record(
    fitted: Fitted | FittedTags | FittedValueParts | FittedGatedValues, heads: dict[str, SavedHead]
) -> dict[str, Any]:
    """A fitted model as JSON, its linear heads added to ``heads`` (stored in ``heads.h5`` under their keys)."""
    if isinstance(fitted, FittedTags):
        return tags_record(fitted, lambda m: to_record(m, heads))
    if isinstance(fitted, FittedValueParts):
        return values_record(fitted, heads)
    if isinstance(fitted, FittedGatedValues):
        return gated_record(fitted, heads)

    def head(estimator: Any) -> str:
        saved = getattr(estimator, "linear_", None) or getattr(estimator, "upper_", None)
        if saved is None:
            raise ConfigError(
                f"{type(estimator).__name__}: only mvemo's heads (LinearSoftmax, UpperSoftmax) can be saved"
            )
        # a head shared by several models (a pair's, inside integrated too) is stored once
        key = next((k for k, stored in heads.items() if stored is saved), f"head{len(heads)}")
        heads[key] = saved
        return key

    if isinstance(fitted, FittedFeatures):
        return {
            "kind": "features",
            "inputs": list(fitted.node.inputs),
            "head": head(fitted.model),
            "chosen": fitted.choices(),
        }
    if isinstance(fitted, FittedLate):
        members = [to_record(m, heads) for m in fitted.members]
        return {
            "kind": "late",
            "rule": fitted.node.weights,
            "weights": fitted.weights.tolist(),
            "members": members,
            "dropped": {expr: d._asdict() for expr, d in fitted.dropped.items()},
        }
    if isinstance(fitted, FittedStack):
        return {
            "kind": "stack",
            "members": [to_record(m, heads) for m in fitted.members],
            "meta": head(fitted.meta),
            "chosen": fitted.selected,
        }
    assert isinstance(fitted, FittedBest)
    return {
        "kind": "best",
        "candidates": [m.expr for m in fitted.node.members],
        "scores": fitted.scores,
        "chosen": to_record(fitted.chosen, heads),
    }


def from_record(record: dict[str, Any], heads: dict[str, SavedHead], n_classes: int) -> Any:
    """The fitted model a record describes (``to_record``'s inverse, as far as predicting goes): a ``Fitted``, or
    for tags and values a ``FittedTags`` or ``FittedValueParts``."""
    kind = record["kind"]
    if kind == "tags":
        return tags_from_record(record, lambda member: from_record(member, heads, 2))
    if kind == "values":
        return values_from_record(record, heads)
    if kind == "gated-values":
        return gated_from_record(record, heads)
    if kind == "features":
        linear: Any = heads[record["head"]]
        return FittedFeatures(Features(tuple(record["inputs"])), linear, linear.classes, n_classes, record["chosen"])
    members = [from_record(m, heads, n_classes) for m in record.get("members", [])]
    if kind == "late":
        node = Late(tuple(m.node for m in members), record["rule"])
        dropped = {expr: Dropped(**d) for expr, d in record["dropped"].items()}
        return FittedLate(node, members, np.asarray(record["weights"]), dropped)
    if kind == "stack":
        meta: Any = heads[record["meta"]]
        return FittedStack(
            Stack(tuple(m.node for m in members)), members, meta, meta.classes, n_classes, record["chosen"]
        )
    if kind == "best":
        chosen = from_record(record["chosen"], heads, n_classes)
        return FittedBest(Best((chosen.node,)), chosen, record["scores"])
    raise ConfigError(
        f"a saved model of kind {kind!r}: this version reads features, late, stack and best; save it again"
    )


HEAD_KINDS = (UPPER_HEAD_ARRAYS, KERNEL_HEAD_ARRAYS, HEAD_ARRAYS, VALUE_ARRAYS)


def head_arrays(saved: SavedHead) -> dict[str, Any]:
    """A head as the arrays of its ``heads.h5`` group (``saved_head`` reads them back)."""
    if isinstance(saved, UpperSoftmax):
        return saved.arrays()
    arrays = {field.name: getattr(saved, field.name) for field in dataclasses.fields(saved)}
    return {name: array for name, array in arrays.items() if array is not None}


def saved_head(group: Mapping[str, np.ndarray]) -> SavedHead:
    """The head a group of ``heads.h5`` holds, by its arrays: fine-tuned upper layers, a kernel expansion to classes, a
    softmax layer, or a kernel expansion or linear map to values."""
    if set(UPPER_HEAD_ARRAYS) <= set(group):
        return UpperSoftmax.from_arrays(group)
    if set(KERNEL_HEAD_ARRAYS) <= set(group):
        return KernelSoftmax(**{key: group[key] for key in KERNEL_HEAD_ARRAYS}, columns=group.get("columns"))
    if set(HEAD_ARRAYS) <= set(group):
        return LinearSoftmax(*(group[key] for key in HEAD_ARRAYS))
    if set(KERNEL_VALUE_ARRAYS) <= set(group):
        return KernelValues(*(group[key] for key in KERNEL_VALUE_ARRAYS))
    return LinearValues(*(group[key] for key in VALUE_ARRAYS))


def read_head_group(group: h5py.Group) -> dict[str, np.ndarray]:
    """A head's arrays by key, each checked to be an array of numbers (a group or text in its place is a damaged or
    hand-edited file)."""
    arrays = {}
    for key, item in group.items():
        if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biuf":
            found = "a group" if not isinstance(item, h5py.Dataset) else f"{item.dtype} values"
            raise Invalid(f"{group.name.lstrip('/')}/{key} is {found} where an array of numbers belongs")
        arrays[key] = item[()]
    return arrays
