"""The check of a saved fusion model when it is opened.

``model.json`` is checked against its schema, and its models, inputs, classes, feature sets and
heads against each other and against ``heads.h5``, so that a damaged or hand-edited model fails
at once with the file and its first problem, never later on each clip as if the clips were at
fault. What this version can compute of the feature sets is checked by ``predict`` (which knows
the nets and feature sets); this module knows the saved format alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.layout import IMPORTED, inside
from mvemo.fuse.compose import LATE_WEIGHTS
from mvemo.fuse.heads.softmax import KernelSoftmax
from mvemo.fuse.heads.upper_net import UpperSoftmax, layers_problem, penultimate_size
from mvemo.fuse.models import LLDSTATS
from mvemo.fuse.selection import Dropped
from mvemo.manifests.errors import is_number
from mvemo.manifests.targets import VALUE_COLUMNS

HEAD_ARRAYS = ("classes", "mean", "scale", "weights", "bias")
# Russell's plane's quadrants as (valence, arousal) signs: upper right, upper left, lower left, lower right
QUADRANT_CORNERS = ((1, 1), (-1, 1), (-1, -1), (1, -1))
EXPERTS = ("rated", "placed")  # a gated value model's two (``fuse.saved.targets.FittedGatedValues``)
# a kernel head's arrays; its ``columns`` are optional (absent: every column)
KERNEL_HEAD_ARRAYS = tuple(field.name for field in dataclasses.fields(KernelSoftmax) if field.name != "columns")
UPPER_HEAD_ARRAYS = UpperSoftmax.BASE  # fine-tuned layers above a cut: these, and the layers' arrays by name


class Invalid(Exception):
    """The first problem found, with where in the document it lies."""


def check_saved_model(document: Any, heads: Mapping[str, Mapping[str, np.ndarray]], folder: Path) -> None:
    """Raise ``Invalid`` naming the first problem of a saved model: ``document`` (``model.json``), ``heads`` (each
    group of ``heads.h5`` by name: its arrays by key), ``folder`` (where its checkpoints lie)."""
    _require(isinstance(document, dict), "", "is not a JSON object")
    target = document.get("target", "label")
    _require(
        target in ("label", "tags") or (isinstance(target, str) and target.split(",") == document.get("values")),
        "target",
        "is not label, tags or the value names",
    )
    outputs = _check_outputs(document, target)
    classes = document.get("classes")
    _require(
        isinstance(classes, list) and all(isinstance(c, str) for c in classes), "classes", "is not a list of names"
    )
    models = document.get("models")
    _require(isinstance(models, dict) and models, "models", "is not a non-empty object of models by name")
    default = document.get("default_model")
    _require(
        isinstance(default, str) and default in models, "default_model", f"is not one of the models {sorted(models)}"
    )
    media = document.get("training_media_sha256", [])
    _require(
        isinstance(media, list) and all(isinstance(h, str) for h in media),
        "training_media_sha256",
        "is not a list of sha256",
    )
    score = cv_score(document)
    _require(
        isinstance(score, dict) and isinstance(score.get("metric"), str) and isinstance(score.get("models"), dict),
        "cv_score",
        "is not a metric and its scores by model",
    )
    _require(all(is_number(a) for a in score["models"].values()), "cv_score.models", "is not numbers by model")
    plane = document.get("plane")
    _require(
        plane is None
        or (
            isinstance(plane, dict)
            and set(plane) == set(classes)
            and all(isinstance(p, list) and len(p) == 2 for p in plane.values())
            and {tuple(p) for p in plane.values()} == set(QUADRANT_CORNERS)
        ),
        "plane",
        "is not each class's quadrant as [valence, arousal], one class at each of [1, 1], [-1, 1], [-1, -1], [1, -1]",
    )
    for name, model in models.items():
        _check_model(model, f"models[{name!r}]", target, outputs, heads, folder)


def _check_outputs(document: dict[str, Any], target: str) -> list[str]:
    """The names of a saved model's outputs: its classes, its tags, or its value names (with their scale)."""
    key = {"label": "classes", "tags": "tags"}.get(target, "values")
    names: Any = document.get(key)
    fewest = 2 if key == "classes" else 1
    _require(
        isinstance(names, list) and len(names) >= fewest and all(isinstance(c, str) and c for c in names),
        key,
        f"is not a list of {fewest} or more names",
    )
    _require(len(set(names)) == len(names), key, f"names one twice: {names}")
    if key == "values":
        _require(set(names) <= set(VALUE_COLUMNS), key, f"are not among {list(VALUE_COLUMNS)}")
        scale = document.get("scale")
        _require(
            isinstance(scale, list) and len(scale) == 2 and all(is_number(v) for v in scale) and scale[0] < scale[1],
            "scale",
            "is not [low, high]",
        )
    return names


def _check_model(
    model: Any, where: str, target: str, outputs: list[str], heads: Mapping[str, Mapping[str, np.ndarray]], folder: Path
) -> None:
    _require(isinstance(model, dict), where, "is not an object")
    for key in ("kind", "expression"):
        _require(isinstance(model.get(key), str), f"{where}.{key}", "is not a string")
    inputs = model.get("inputs")
    _require(
        isinstance(inputs, list)
        and inputs
        and all(isinstance(i, str) and i for i in inputs)
        and len(set(inputs)) == len(inputs),
        f"{where}.inputs",
        "is not a list of distinct input names",
    )
    sets = model.get("feature_sets")
    _require(
        isinstance(sets, dict) and len(sets) == len(inputs),
        f"{where}.feature_sets",
        f"is not one feature set per input {inputs}",
    )
    for input_name, (set_name, described) in zip(inputs, sets.items()):
        _check_feature_set(input_name, set_name, described, f"{where}.feature_sets[{set_name!r}]", folder)
    record = model.get("model")
    if target == "tags":
        read = _check_tags(record, f"{where}.model", set(inputs), outputs, heads)
    elif target != "label":
        read = _check_values(record, f"{where}.model", set(inputs), len(outputs), heads)
    else:
        read = _check_record(record, f"{where}.model", set(inputs), len(outputs), heads)
    _require(read == set(inputs), f"{where}.inputs", f"{inputs} are not the inputs its heads read ({sorted(read)})")


def _check_feature_set(input_name: str, set_name: str, described: Any, where: str, folder: Path) -> None:
    expected = {LLDSTATS: "lld"}.get(input_name, input_name)
    if set_name.startswith("emb/"):
        expected = f"emb/{input_name}/all"
    _require(set_name == expected, where, f"is not the set input {input_name!r} reads ({expected!r})")
    _require(isinstance(described, dict), where, "is not an object")
    for key in ("fingerprint", "extractor", "weights_sha256"):
        _require(isinstance(described.get(key), str), f"{where}.{key}", "is not a string")
    _require(len(described["fingerprint"]) == 64, f"{where}.fingerprint", "is not a sha256")
    if "extractor_version" in described or "layout" in described:  # recorded since predict names what differs
        _require(isinstance(described.get("extractor_version"), str), f"{where}.extractor_version", "is not a string")
        layout = described.get("layout")
        _require(
            isinstance(layout, dict) and set(layout) == {"row_shape", "dtype", "columns", "variable_length"},
            f"{where}.layout",
            "is not a layout of row_shape, dtype, columns and variable_length",
        )
    config = described.get("config")
    _require(isinstance(config, dict), f"{where}.config", "is not an object")
    input_configs = described.get("input_configs")
    _require(isinstance(input_configs, dict), f"{where}.input_configs", "is not an object")
    if IMPORTED in config and "columns" in described:  # recorded since predict reads imported sets (``given``)
        columns = described["columns"]
        _require(
            isinstance(columns, list) and bool(columns) and all(isinstance(c, str) for c in columns),
            f"{where}.columns",
            "is not the imported set's column names",
        )
    checkpoint = described.get("checkpoint")
    if checkpoint is not None:
        _require(
            isinstance(checkpoint, dict)
            and isinstance(checkpoint.get("path"), str)
            and isinstance(checkpoint.get("sha256"), str),
            f"{where}.checkpoint",
            "is not a path and a sha256",
        )
        path = inside(folder, checkpoint["path"])
        _require(
            path is not None and path.is_file(),
            f"{where}.checkpoint.path",
            f"{checkpoint['path']!r} is not in the model's folder",
        )


def cv_score(document: dict[str, Any]) -> Any:
    """A saved model's cross-validated scores by model with their metric (``fuse.stage.cv_scores``); a model saved
    before mvemo recorded them for every target kind gives its ``cv_accuracy``."""
    return document.get("cv_score") or {"metric": "accuracy", "models": document.get("cv_accuracy", {})}


def _check_record(
    record: Any, where: str, inputs: set[str], n_classes: int, heads: Mapping[str, Mapping[str, np.ndarray]]
) -> set[str]:
    """Check one node of a model's tree; returns the inputs it reads."""
    _require(isinstance(record, dict), where, "is not an object")
    kind = record.get("kind")
    if kind == "features":
        read = record.get("inputs")
        _require(
            isinstance(read, list) and read and all(isinstance(i, str) for i in read) and set(read) <= inputs,
            f"{where}.inputs",
            f"is not a list of the model's inputs {sorted(inputs)}",
        )
        _check_head(record.get("head"), f"{where}.head", n_classes, heads, None)
        _require(isinstance(record.get("chosen"), dict), f"{where}.chosen", "is not an object")
        return set(read)
    if kind == "best":
        _require(isinstance(record.get("candidates"), list), f"{where}.candidates", "is not a list")
        scores = record.get("scores")
        _require(
            isinstance(scores, dict) and all(is_number(s) for s in scores.values()), f"{where}.scores", "is not numbers"
        )
        return _check_record(record.get("chosen"), f"{where}.chosen", inputs, n_classes, heads)
    _require(kind in ("late", "stack"), f"{where}.kind", f"{kind!r} is not features, late, stack or best")
    members = record.get("members")
    _require(isinstance(members, list) and members, f"{where}.members", "is not a non-empty list")
    read = set().union(
        *(_check_record(m, f"{where}.members[{i}]", inputs, n_classes, heads) for i, m in enumerate(members))
    )
    if kind == "late":
        weights = record.get("weights")
        _require(record.get("rule") in LATE_WEIGHTS, f"{where}.rule", f"is not one of {list(LATE_WEIGHTS)}")
        dropped = record.get("dropped")
        _require(
            isinstance(dropped, dict)
            and all(
                isinstance(d, dict) and set(d) == set(Dropped._fields) and is_number(d["gap"]) and is_number(d["se"])
                for d in dropped.values()
            ),
            f"{where}.dropped",
            "is not an object of {gap, se, under} records",
        )
        _require(
            isinstance(weights, list)
            and len(weights) == len(members)
            and all(is_number(w) and w >= 0 for w in weights),
            f"{where}.weights",
            f"is not {len(members)} weights >= 0, one per member",
        )
    else:
        _check_head(record.get("meta"), f"{where}.meta", n_classes, heads, len(members) * n_classes)
        _require(isinstance(record.get("chosen"), dict), f"{where}.chosen", "is not an object")
    return read


def _check_tags(
    record: Any, where: str, inputs: set[str], tags: list[str], heads: Mapping[str, Mapping[str, np.ndarray]]
) -> set[str]:
    """A tag model: a two-class model and a threshold in [0, 1] per tag, in the tags' order."""
    _require(isinstance(record, dict) and record.get("kind") == "tags", where, "is not a tag model")
    per_tag = record.get("per_tag")
    _require(
        isinstance(per_tag, list) and [e.get("tag") if isinstance(e, dict) else None for e in per_tag] == tags,
        f"{where}.per_tag",
        f"is not one entry per tag {tags}",
    )
    read: set[str] = set()
    for i, entry in enumerate(per_tag):
        threshold = entry.get("threshold")
        _require(is_number(threshold) and 0 <= threshold <= 1, f"{where}.per_tag[{i}].threshold", "is not in [0, 1]")
        read |= _check_record(entry.get("model"), f"{where}.per_tag[{i}].model", inputs, 2, heads)
    return read


def _check_values(
    record: Any, where: str, inputs: set[str], n_values: int, heads: Mapping[str, Mapping[str, np.ndarray]]
) -> set[str]:
    """A value model: linear maps or kernel expansions of the model's inputs, each in heads.h5 whole with one row per
    value."""
    if isinstance(record, dict) and record.get("kind") == "gated-values":
        gate = record.get("gate")
        _require(
            isinstance(gate, dict) and isinstance(gate.get("inputs"), list) and set(gate["inputs"]) <= inputs,
            f"{where}.gate",
            f"is not a gate over some of {sorted(inputs)}",
        )
        assert isinstance(gate, dict)  # _require raised otherwise
        _check_head(gate.get("head"), f"{where}.gate.head", 2, heads, None)
        experts = [_check_values(record.get(name), f"{where}.{name}", inputs, n_values, heads) for name in EXPERTS]
        return set(gate["inputs"]).union(*experts)
    _require(isinstance(record, dict) and record.get("kind") == "values", where, "is not a value model")
    parts = record.get("parts")
    _require(isinstance(parts, list) and parts, f"{where}.parts", "is not a non-empty list")
    read: set[str] = set()
    for i, part in enumerate(parts):
        at = f"{where}.parts[{i}]"
        _require(isinstance(part, dict) and is_number(part.get("weight")), at, "is not an object with a weight")
        names = part.get("inputs")
        _require(
            isinstance(names, list) and names and set(names) <= inputs,
            f"{at}.inputs",
            f"are not among {sorted(inputs)}",
        )
        key = part.get("head")
        _require(isinstance(key, str) and key in heads, f"{at}.head", f"{key!r} is not in heads.h5")
        if "support" in heads[key]:
            _check_kernel_values(key, f"{at}.head", n_values, heads[key])
        else:
            _check_linear_values(key, f"{at}.head", n_values, heads[key])
        read |= set(names)
    return read


def _check_linear_values(key: str, where: str, n_values: int, arrays: Mapping[str, np.ndarray]) -> None:
    coef, intercept, low, high = (
        np.asarray(arrays.get(name, np.zeros(0))) for name in ("coef", "intercept", "low", "high")
    )
    d = coef.shape[1] if coef.ndim == 2 else -1
    _require(
        coef.shape == (n_values, d)
        and intercept.shape == (n_values,)
        and low.shape == high.shape == (d,)
        and _finite(coef, intercept, low, high),
        where,
        f"{key!r}: coef {coef.shape}, intercept {intercept.shape}, low {low.shape} and high {high.shape} are not a"
        f" finite map of d columns to {n_values} values",
    )


def _check_kernel_values(key: str, where: str, n_values: int, arrays: Mapping[str, np.ndarray]) -> None:
    names = ("coef", "intercept", "low", "high", "mean", "scale", "support", "gamma")
    coef, intercept, low, high, mean, scale, support, gamma = (np.asarray(arrays.get(n, np.zeros(0))) for n in names)
    k, d = support.shape if support.ndim == 2 else (-1, -1)
    _require(
        coef.shape == (n_values, k)
        and intercept.shape == (n_values,)
        and gamma.shape == ()
        and low.shape == high.shape == mean.shape == scale.shape == (d,),
        where,
        f"{key!r}: coef {coef.shape}, intercept {intercept.shape}, support {support.shape}, gamma {gamma.shape} and"
        f" low, high, mean, scale {[a.shape for a in (low, high, mean, scale)]} are not a kernel expansion"
        f" over k rows of d columns to {n_values} values",
    )
    _require(
        _finite(coef, intercept, low, high, mean, scale, support, gamma)
        and bool((scale > 0).all())
        and float(gamma) > 0,
        where,
        f"{key!r} holds values that are not finite numbers, a scale <= 0 or a gamma <= 0",
    )


def _finite(*arrays: np.ndarray) -> bool:
    return all(a.dtype.kind == "f" and np.isfinite(a).all() for a in arrays)


def _check_head(
    key: Any, where: str, n_classes: int, heads: Mapping[str, Mapping[str, np.ndarray]], width: int | None
) -> None:
    """A head named by ``key`` lies in heads.h5 whole: its arrays' shapes agree, its classes are the model's, and (a
    stacking meta-head) it reads ``width`` columns."""
    _require(isinstance(key, str) and key in heads, where, f"{key!r} is not in heads.h5 (it holds {sorted(heads)})")
    arrays = heads[key]
    if width is None and "classifier_weight" in arrays:
        _check_upper_head(key, where, n_classes, arrays)
        return
    if "support" in arrays:
        _check_kernel_head(key, where, n_classes, arrays, width)
        return
    missing = [name for name in HEAD_ARRAYS if name not in arrays]
    _require(not missing, where, f"{key!r} in heads.h5 lacks {missing}")
    classes, mean, scale, weights, bias = (np.asarray(arrays[name]) for name in HEAD_ARRAYS)
    _check_classes(key, where, classes, n_classes)
    d = mean.shape[0] if mean.ndim == 1 else -1
    _require(
        mean.ndim == 1 and scale.shape == (d,) and weights.shape == (len(classes), d) and bias.shape == (len(classes),),
        where,
        f"{key!r}: mean {mean.shape}, scale {scale.shape}, weights {weights.shape} and bias {bias.shape} do not fit"
        f" {len(classes)} classes",
    )
    numbers = all(a.dtype.kind in "fiu" for a in (mean, scale, weights, bias))
    _require(
        numbers and all(np.isfinite(a).all() for a in (mean, scale, weights, bias)) and bool((scale > 0).all()),
        where,
        f"{key!r} holds values that are not finite numbers, or a scale <= 0",
    )
    _require(width is None or d == width, where, f"{key!r} reads {d} columns, its members give {width}")


def _check_classes(key: str, where: str, classes: np.ndarray, n_classes: int) -> None:
    _require(
        classes.ndim == 1 and classes.dtype.kind in "iu" and len(np.unique(classes)) == len(classes) >= 2,
        where,
        f"{key!r}: its classes {classes.tolist()} are not distinct class indices",
    )
    _require(
        int(classes.max()) < n_classes,
        where,
        f"{key!r} outputs class {int(classes.max())}, and model.json lists {n_classes} classes",
    )


def _check_kernel_head(
    key: str, where: str, n_classes: int, arrays: Mapping[str, np.ndarray], width: int | None
) -> None:
    """A kernel head (``fuse.heads.softmax.KernelSoftmax``) whole: shapes that fit, finite numbers, gamma > 0."""
    missing = [name for name in KERNEL_HEAD_ARRAYS if name not in arrays]
    _require(not missing, where, f"{key!r} in heads.h5 lacks {missing}")
    classes, mean, scale, support, coef, bias, gamma = (np.asarray(arrays[name]) for name in KERNEL_HEAD_ARRAYS)
    _check_classes(key, where, classes, n_classes)
    d = mean.shape[0] if mean.ndim == 1 else -1
    n = support.shape[0] if support.ndim == 2 else -1
    _require(
        mean.ndim == 1
        and scale.shape == (d,)
        and support.ndim == 2
        and coef.shape == (len(classes), n)
        and bias.shape == (len(classes),)
        and gamma.shape == (),
        where,
        f"{key!r}: mean {mean.shape}, scale {scale.shape}, support {support.shape}, coef {coef.shape}, bias"
        f" {bias.shape} and gamma {gamma.shape} do not fit {len(classes)} classes",
    )
    values = (mean, scale, support, coef, bias, gamma)
    _require(
        all(a.dtype.kind in "fiu" and np.isfinite(a).all() for a in values)
        and bool((scale > 0).all())
        and float(gamma) > 0,
        where,
        f"{key!r} holds values that are not finite numbers, a scale <= 0 or a gamma <= 0",
    )
    columns = np.asarray(arrays["columns"]) if "columns" in arrays else np.arange(d)
    _require(
        columns.ndim == 1
        and len(columns) >= 1
        and columns.dtype.kind in "iu"
        and support.shape[1:] == (len(columns),)
        and bool(np.all(np.diff(columns) > 0))
        and (len(columns) == 0 or 0 <= int(columns[0]) <= int(columns[-1]) < d),
        where,
        f"{key!r}: its columns {columns.shape} are not increasing indices below {d}"
        f" that its support {support.shape} reads",
    )
    _require(width is None or d == width, where, f"{key!r} reads {d} columns, its members give {width}")


def _check_upper_head(key: str, where: str, n_classes: int, arrays: Mapping[str, np.ndarray]) -> None:
    """Fine-tuned layers above a cut lie in heads.h5 whole: their shapes chain, their classes are the model's."""
    missing = [name for name in UPPER_HEAD_ARRAYS if name not in arrays]
    _require(not missing, where, f"{key!r} in heads.h5 lacks {missing}")
    a = {name: np.asarray(arrays[name]) for name in UPPER_HEAD_ARRAYS}
    classes = a["classes"]
    _require(
        classes.ndim == 1
        and classes.dtype.kind in "iu"
        and len(np.unique(classes)) == len(classes) >= 2
        and int(classes.max()) < n_classes,
        where,
        f"{key!r}: its classes {classes.tolist()} are not distinct indices of the model's {n_classes} classes",
    )
    counts = [a[name] for name in ("patches", "width")]
    _require(
        all(c.ndim == 0 and c.dtype.kind in "iu" and int(c) >= 1 for c in counts),
        where,
        f"{key!r}: patches or width is not a count",
    )
    _require(
        all(np.asarray(v).dtype.kind in "fiu" and np.isfinite(v).all() for v in arrays.values()),
        where,
        f"{key!r} holds values that are not finite numbers",
    )
    layers = UpperSoftmax.from_arrays(arrays).layers
    problem = layers_problem(layers)
    _require(problem is None, where, f"{key!r}: {problem}")
    wanted = {"classifier_weight": (len(classes), penultimate_size(layers)), "classifier_bias": (len(classes),)}
    wrong = [
        f"{name} {np.shape(arrays[name])} (not {shape})"
        for name, shape in wanted.items()
        if np.shape(arrays[name]) != shape
    ]
    _require(not wrong, where, f"{key!r}: {', '.join(wrong)}")


def _require(condition: object, where: str, problem: str) -> None:
    if not condition:
        raise Invalid(f"{where} {problem}" if where else problem)
