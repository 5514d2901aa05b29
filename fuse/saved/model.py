"""The final fusion model (``fuse.saved.final``) saved as JSON + HDF5 (never pickle, ``fuse.saved.records``), and
loaded back.

``DIR/model/model.json`` names the classes, each model's tree (``fuse.compose``:
its heads, weights and what was chosen on inner folds of every clip), its inputs
and the cached feature sets (fingerprints, configs, net checkpoints and their
sha256) they were computed with, so ``predict`` can compute exactly the same
features for new files. ``DIR/model/heads.h5`` holds each head as a linear
softmax layer.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.h5file import DamagedFile, open_h5, write_whole
from mvemo.cache.layout import IMPORTED, POOLED_KEY, inside
from mvemo.cache.read import Cache
from mvemo.fuse.fitted import Fitted
from mvemo.fuse.inputs import input_set_name
from mvemo.fuse.models import FusionModel
from mvemo.fuse.saved.check import (
    QUADRANT_CORNERS,
    Invalid,
    check_saved_model,
)
from mvemo.fuse.saved.records import (
    HEAD_KINDS,
    SavedHead,
    from_record,
    head_arrays,
    read_head_group,
    saved_head,
    to_record,
)
from mvemo.fuse.saved.targets import (
    FittedGatedValues,
    FittedTags,
    FittedValueParts,
    KernelValues,
)
from mvemo.fuse.saved.upgrade import from_format_2
from mvemo.manifests.errors import CacheError, ConfigError

MODEL_JSON = "model.json"
# 2: each model a tree (features, late, stack, best) of linear heads; 3: a late fusion names its weights rule and, where
# trimmed, the members it dropped; 4: a model of values may hold kernel expansions, which a reader of format 3 would
# take for linear maps (a model without one is saved as format 3, which every reader since reads); 5: a model of values
# may be a gated mixture of two (``gated-values``), which no reader of format 4 knows
FORMAT = 3
KERNEL_VALUES_FORMAT = 4
GATED_VALUES_FORMAT = 5
READ_FORMATS = (FORMAT, KERNEL_VALUES_FORMAT, GATED_VALUES_FORMAT)
HEADS_H5 = "heads.h5"
CHECKPOINTS = "checkpoints"
RESAVE = "save the model again with `mvemo fuse CACHE --out DIR`"


def outputs_of(cache: Cache, target: str) -> dict[str, Any]:
    """What a saved model's outputs are, for ``model.json``: its target and the cache's classes, with its tags, or
    its value names and scale."""
    outputs: dict[str, Any] = {"target": target, "classes": list(cache.classes)}  # the nets' heads are sized by them
    if target == "tags":
        return outputs | {"tags": list(cache.targets.tags)}
    if target != "label":
        return outputs | {"values": target.split(","), "scale": list(cache.targets.scale or ())}
    return outputs


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
    also: Sequence[Cache] = (),
) -> Path:
    """Write ``out/model.json`` and ``out/heads.h5`` of the models of ``target`` (``train_final``'s); returns the
    folder. ``also``: the caches of the other sets the models learnt from (``fuse.plane_stage``), whose clips count
    among those the model trained on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    heads: dict[str, SavedHead] = {}
    document = {
        **header,
        "format": FORMAT,
        **outputs_of(cache, target),
        # the content hash of every clip the model trained on: predict warns when it meets one again
        "training_media_sha256": sorted({h.decode() for c in (cache, *also) for h in c.media_hash} - {""}),
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
    if any(isinstance(f, FittedGatedValues) for f in fitted.values()):
        document["format"] = GATED_VALUES_FORMAT
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


@dataclass
class SavedFusionModel:
    """A loaded fusion model: ``predict(name, inputs)`` with inputs keyed like the model's."""

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
        """The names of ``predict``'s columns: the classes, the tags, or the value names."""
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

    def predict(self, name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Model ``name``'s outputs (``outputs``) for rows ``inputs`` (each input name to (n, d)), shape (n, outputs):
        a probability per class (a class model) or per tag (a tag model), or the values (a value model)."""
        blocks = {key: np.asarray(X, dtype=np.float64).reshape(len(X), -1) for key, X in inputs.items()}
        fitted = self.fitted[name]
        if isinstance(fitted, FittedValueParts | FittedGatedValues):
            return fitted.values(blocks)
        return fitted.proba(blocks)


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
        reads = ", ".join(map(str, READ_FORMATS[:-1])) + f" and {READ_FORMATS[-1]}"
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
