"""The final fusion model: heads trained on every clip, saved as JSON + HDF5 (never pickle), and loaded back.

``DIR/model/model.json`` names the classes, each model's tree (``fuse.compose``:
its heads, weights and what was chosen on inner folds of every clip), its inputs
and the cached feature sets (fingerprints, configs, net checkpoints and their
sha256) they were computed with, so ``predict`` can compute exactly the same
features for new files. ``DIR/model/heads.h5`` holds each head as a linear
softmax layer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import h5py
import numpy as np

from mvemo.cache.h5file import DamagedFile, open_h5, write_whole
from mvemo.cache.layout import IMPORTED, POOLED_KEY, inside
from mvemo.cache.read import Cache
from mvemo.fuse.compose import (
    Best,
    Features,
    Fitted,
    FittedBest,
    FittedFeatures,
    FittedLate,
    FittedStack,
    Late,
    Stack,
    Trainings,
    fit,
)
from mvemo.fuse.heads.kernel import KernelSoftmax
from mvemo.fuse.heads.linear import LinearSoftmax
from mvemo.fuse.heads.upper import UpperLayers, UpperSoftmax
from mvemo.fuse.inputs import in_sample_inputs, input_set_name, layers_above, patch_count
from mvemo.fuse.loop import Basis, new_run, release_run, run_matrices
from mvemo.fuse.models import FusionModel
from mvemo.fuse.saved.check import (
    HEAD_ARRAYS,
    KERNEL_HEAD_ARRAYS,
    QUADRANT_CORNERS,
    UPPER_HEAD_ARRAYS,
    Invalid,
    check_saved_model,
)
from mvemo.fuse.saved.targets import (
    KERNEL_VALUE_ARRAYS,
    VALUE_ARRAYS,
    FittedTags,
    FittedValueParts,
    KernelValues,
    LinearValues,
    fit_final_tags,
    fit_final_values,
    tags_from_record,
    tags_record,
    values_from_record,
    values_record,
)
from mvemo.fuse.saved.upgrade import from_format_2
from mvemo.fuse.selection import Dropped, SelectionConfig
from mvemo.manifests.errors import CacheError, ConfigError

MODEL_JSON = "model.json"
# 2: each model a tree (features, late, stack, best) of linear heads; 3: a late fusion names its weights rule and, where
# trimmed, the members it dropped; 4: a model of values may hold kernel expansions, which a reader of format 3 would
# take for linear maps (a model without one is saved as format 3, which every reader since reads)
FORMAT = 3
KERNEL_VALUES_FORMAT = 4
READ_FORMATS = (FORMAT, KERNEL_VALUES_FORMAT)
HEADS_H5 = "heads.h5"
# what heads.h5 holds: a linear or kernel softmax layer, fine-tuned upper layers, or a linear map or kernel expansion to
# values
SavedHead: TypeAlias = LinearSoftmax | KernelSoftmax | UpperSoftmax | LinearValues | KernelValues
CHECKPOINTS = "checkpoints"
RESAVE = "save the model again with `mvemo fuse CACHE --out DIR`"


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


def outputs_of(cache: Cache, target: str) -> dict[str, Any]:
    """What a saved model's outputs are, for ``model.json``: its target and the cache's classes, with its tags, or
    its value names and scale."""
    outputs: dict[str, Any] = {"target": target, "classes": list(cache.classes)}  # the nets' heads are sized by them
    if target == "tags":
        return outputs | {"tags": list(cache.targets.tags)}
    if target != "label":
        return outputs | {"values": target.split(","), "scale": list(cache.targets.scale or ())}
    return outputs


def to_record(fitted: Fitted | FittedTags | FittedValueParts, heads: dict[str, SavedHead]) -> dict[str, Any]:
    """A fitted model as JSON, its linear heads added to ``heads`` (stored in ``heads.h5`` under their keys)."""
    if isinstance(fitted, FittedTags):
        return tags_record(fitted, lambda m: to_record(m, heads))
    if isinstance(fitted, FittedValueParts):
        return values_record(fitted, heads)

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


def describe_inputs(cache: Cache, inputs: tuple[str, ...]) -> dict[str, Any]:
    """The cached feature sets a final model reads, with what recomputing them needs."""
    described: dict[str, dict[str, Any]] = {}
    for name in inputs:
        set_name = input_set_name(cache, name, None)
        attrs = cache.set_attrs(set_name)
        config = cache.config(set_name)
        described[set_name] = {
            "fingerprint": cache.fingerprint(set_name),
            "config": config,
            "extractor": str(attrs["extractor"]),
            # with the rest of the set's fingerprint record: predict names what this version would compute otherwise
            "extractor_version": str(attrs["extractor_version"]),
            "layout": json.loads(attrs["record"])["layout"],
            "weights_sha256": str(attrs["weights_sha256"]),
            # the configs of the cached inputs an embedding was computed from, to compute them again (those of a
            # set pooled over windows lie in the window cache, and in its config)
            "input_configs": config[POOLED_KEY].get("input_configs", {})
            if POOLED_KEY in config
            else {kind: cache.config(kind) for kind in config.get("inputs", {})},
        }
        if IMPORTED in config:  # predict takes these columns for new clips from --features
            described[set_name]["columns"] = cache.columns(set_name)
    return described


def save_fusion_model(
    out: str | os.PathLike[str],
    cache: Cache,
    models: list[FusionModel],
    fitted: dict[str, Any],
    header: dict[str, Any],
    target: str = "label",
) -> Path:
    """Write ``out/model.json`` and ``out/heads.h5`` of the models of ``target`` (``train_final``'s); returns the
    folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    heads: dict[str, SavedHead] = {}
    document = {
        **header,
        "format": FORMAT,
        **outputs_of(cache, target),
        # the content hash of every clip the model trained on: predict warns when it meets one again
        "training_media_sha256": sorted({h.decode() for h in cache.media_hash} - {""}),
        "models": {
            m.name: {
                "kind": m.kind,
                "expression": m.node.expr,
                "inputs": list(fitted[m.name].inputs()),
                "model": to_record(fitted[m.name], heads),
                "feature_sets": describe_inputs(cache, fitted[m.name].inputs()),
            }
            for m in models
        },
    }
    if any(isinstance(head, KernelValues) for head in heads.values()):
        document["format"] = KERNEL_VALUES_FORMAT
    _copy_checkpoints(document, cache.path.parent, out)

    def fill(f: h5py.File) -> None:
        for name, saved in heads.items():
            group = f.create_group(name)
            for key, array in head_arrays(saved).items():
                group[key] = np.asarray(array)

    write_whole(out / HEADS_H5, fill, sealed=True)  # a damaged copy is refused before HDF5 reads it
    (out / MODEL_JSON).write_text(json.dumps(document, indent=2))
    return out


def _copy_checkpoints(document: dict[str, Any], cache_dir: Path, out: Path) -> None:
    """Copy each fine-tuned net's checkpoint into ``out/checkpoints`` so the model folder travels alone."""
    for model in document["models"].values():
        for set_name, described in model["feature_sets"].items():
            record = described["config"].get("checkpoint")
            if record is None:
                continue
            source = inside(cache_dir, record["path"])
            if source is None:
                raise CacheError(
                    f"feature set {set_name!r} names the checkpoint {record['path']!r}, outside {str(cache_dir)!r},"
                    " the folder of its cache; a checkpoint is read from there alone:"
                    " rerun `mvemo extract` to write it again"
                )
            target = Path(CHECKPOINTS) / f"{set_name.split('/')[1]}.pt"
            (out / CHECKPOINTS).mkdir(exist_ok=True)
            shutil.copyfile(source, out / target)
            described["checkpoint"] = {"path": str(target), "sha256": record["sha256"]}


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


@dataclass
class SavedFusionModel:
    """A loaded fusion model: ``predict_proba(name, inputs)`` with inputs keyed like the model's."""

    folder: Path
    document: dict[str, Any]
    fitted: dict[str, Fitted]

    @property
    def classes(self) -> list[str]:
        return list(self.document.get("classes", ()))

    @property
    def target(self) -> str:
        """What the model predicts: ``label``, ``tags`` or value names joined by commas (``valence,arousal``)."""
        return str(self.document.get("target", "label"))

    @property
    def outputs(self) -> list[str]:
        """The names of ``predict_proba``'s columns: the classes, the tags, or the value names."""
        key = {"label": "classes", "tags": "tags"}.get(self.target, "values")
        return list(self.document[key])

    @property
    def plane(self) -> dict[str, tuple[float, float]] | None:
        """Each class's quadrant of Russell's plane as the signs of its valence and arousal, where the model's four
        classes are the plane's quadrants (``with_plane``): a clip's valence and arousal are then read from its class
        probabilities."""
        plane = self.document.get("plane")
        return {c: (float(v), float(a)) for c, (v, a) in plane.items()} if plane else None

    @property
    def scale(self) -> tuple[float, float] | None:
        """The values' scale (its middle divides the quadrants), for a value model."""
        scale = self.document.get("scale")
        return (float(scale[0]), float(scale[1])) if scale else None

    def thresholds(self, name: str) -> list[float]:
        """Model ``name``'s threshold per tag, at and above which the tag is called (a tag model)."""
        fitted = self.fitted[name]
        if not isinstance(fitted, FittedTags):
            raise ConfigError(f"model {name!r} predicts {self.target}, not tags: it has no thresholds")
        return list(fitted.thresholds)

    @property
    def models(self) -> list[str]:
        """The names of the models saved, in the report's order."""
        return list(self.document["models"])

    @property
    def default_model(self) -> str:
        """The model ``predict`` uses unless told otherwise (the integrated model where one was saved)."""
        return str(self.document["default_model"])

    def inputs(self, name: str) -> list[str]:
        """The inputs model ``name`` reads (net names, ``lldstats``, vector sets), in the order of its sets."""
        return list(self.document["models"][name]["inputs"])

    def feature_sets(self, name: str) -> dict[str, dict[str, Any]]:
        """The cached sets model ``name`` read, one per input, by set name: each one's config and fingerprint, and
        for a net's embedding its input configs, weights and checkpoint."""
        return dict(self.document["models"][name]["feature_sets"])

    def pooling(self, name: str) -> dict[str, Any] | None:
        """How the sets model ``name`` reads were pooled over windows (``length_s``, ``hop_s``, ``pooling``), or
        None for a model of one window per clip."""
        for described in self.document["models"][name]["feature_sets"].values():
            if POOLED_KEY in described["config"]:
                return dict(described["config"][POOLED_KEY])
        return None

    def provenance(self, name: str) -> dict[str, Any]:
        """Where model ``name``'s figures come from: the mvemo that saved it, and per input set its extractor and
        the sha256 of its pretrained weights (empty for none)."""
        return {
            "model": name,
            "saved_with": str(self.document.get("version", "unknown")),
            "sets": {
                set_name: {"extractor": d["extractor"], "weights_sha256": d["weights_sha256"]}
                for set_name, d in self.feature_sets(name).items()
            },
        }

    def predict_proba(self, name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities over all classes, shape (n, n_classes) (a tag model: each tag's, (n, n_tags); a value
        model: the values, (n, n_values)); ``inputs`` maps each input name to (n, d)."""
        blocks = {key: np.asarray(X, dtype=np.float64).reshape(len(X), -1) for key, X in inputs.items()}
        return self.fitted[name].proba(blocks)


def with_plane(folder: Path, plane: Mapping[str, tuple[float, float]]) -> None:
    """Say in the model saved in ``folder`` which quadrant of Russell's plane each of its four classes is (the signs of
    its valence and arousal, ``fuse.saved.check.QUADRANT_CORNERS``)."""
    document = json.loads((folder / MODEL_JSON).read_text())
    if (
        document.get("target") != "label"
        or set(plane) != set(document["classes"])
        or set(plane.values()) != set(QUADRANT_CORNERS)
    ):
        raise ConfigError(
            f"{folder}: Russell's plane {dict(plane)} does not put the model's classes {document['classes']}"
            " one in each quadrant"
        )
    document["plane"] = {c: list(plane[c]) for c in document["classes"]}
    (folder / MODEL_JSON).write_text(json.dumps(document, indent=2))


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


def load_fusion_model(folder: str | os.PathLike[str]) -> SavedFusionModel:
    """Read ``folder/model.json`` and ``folder/heads.h5`` (plain arrays: nothing is unpickled), checked whole
    (``fuse.saved.check``) before anything is built from them.

    Raises
    ------
    CacheError
        When the folder holds no saved model.
    ConfigError
        Naming ``model.json`` and its first problem: another format, broken JSON or HDF5, or models, inputs,
        classes, feature sets and heads that do not agree.
    """
    folder = Path(folder)
    if not (folder / MODEL_JSON).is_file() or not (folder / HEADS_H5).is_file():
        raise CacheError(
            f"{str(folder)!r} holds no saved fusion model ({MODEL_JSON} + {HEADS_H5});"
            " make one with `mvemo fuse CACHE --out DIR`"
        )
    where = folder / MODEL_JSON
    try:
        document = json.loads(where.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: not JSON ({err}); {RESAVE}") from None
    if isinstance(document, dict) and document.get("format") == 2:  # its late records map one to one onto format 3's
        document = from_format_2(document)
    if not isinstance(document, dict) or document.get("format") not in READ_FORMATS:
        found = document.get("format", 1) if isinstance(document, dict) else "unknown"
        reads = " and ".join(map(str, READ_FORMATS))
        raise ConfigError(
            f"{where}: saved by another version of mvemo (model format {found}, this one reads {reads}); {RESAVE}"
        )
    try:
        with open_h5(folder / HEADS_H5, "r") as f:
            arrays = {name: read_head_group(group) for name, group in f.items() if isinstance(group, h5py.Group)}
    except DamagedFile as err:
        raise ConfigError(f"{err.path}: {err.problem}; {RESAVE}") from None
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"{folder / HEADS_H5}: not a readable HDF5 file ({err}); {RESAVE}") from None
    except Invalid as problem:
        raise ConfigError(f"{folder / HEADS_H5}: {problem}; {RESAVE}") from None
    try:
        check_saved_model(document, arrays, folder)
    except Invalid as problem:
        raise ConfigError(f"{where}: {problem}; {RESAVE}") from None
    heads: dict[str, SavedHead] = {  # a group no model names was not checked: it is left out
        name: saved_head(group) for name, group in arrays.items() if any(set(k) <= set(group) for k in HEAD_KINDS)
    }
    n_classes = len(document.get("classes", ()))
    fitted = {name: from_record(m["model"], heads, n_classes) for name, m in document["models"].items()}
    return SavedFusionModel(folder, document, fitted)
