"""``mvemo predict``: label new files with a saved fusion model, computing exactly the features it was trained on.

Each clip is one job on the executor (serial, local processes or a Dask cluster),
so a catalogue of new videos fans out like stage one; results stream into one CSV.
A one-command ``predict`` on the serial executor computes the clips' feature sets in a
process of their own, ahead of the nets (``pipeline.predict.ahead``).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.fingerprint import combined_digest, file_sha256, media_hash
from mvemo.fuse.saved.model import SavedFusionModel, load_fusion_model
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.scan import AUDIO_EXTENSIONS
from mvemo.manifests.schema import Clip
from mvemo.manifests.targets import HALVES, quadrants, value_categories
from mvemo.pipeline.predict.ahead import Part, SetsAhead
from mvemo.pipeline.predict.failures import clip_result, clip_results, file_of
from mvemo.pipeline.predict.given import GivenFeatures, imported_sets
from mvemo.pipeline.predict.inputs import (
    check_computable,
    given_inputs,
    model_inputs,
    net_inputs,
    require_weight_files,
    saved_nets,
    set_inputs,
)


def choose_model(saved: SavedFusionModel, name: str | None) -> str:
    """``name``, or the saved model's default: its integrated model where it was saved, else the first model
    listed (``fuse.stage.fuse_cache``)."""
    if name is not None:
        if name not in saved.models:
            raise ConfigError(f"--model {name!r}: the saved model holds {sorted(saved.models)}")
        return name
    return saved.default_model


def file_clip(file: str) -> Clip:
    """A file named on the command line: one clip, its path for id, whose audio is that file and whose video is too
    unless it is an audio file (by its extension, as ``manifest scan`` tells them)."""
    path = Path(file).absolute()  # as a manifest's paths: a worker may run in another folder
    return Clip(file, "", video=None if path.suffix.lower() in AUDIO_EXTENSIONS else path, audio=path)


class Predictor:
    """A saved fusion model and the one of its models that labels new clips."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        model: str | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        features: Iterable[str | os.PathLike[str]] = (),
        *,
        timeline: bool = False,
        sets_ahead: SetsAhead | None = None,
    ) -> None:
        """``features``: CSV or .npz files of the columns of the sets the model imported (``mvemo cache import``) for
        the new clips (``GivenFeatures``); ``timeline``: the clips are to be read window by window, which a model
        over an imported set (a row per clip) cannot; ``sets_ahead``: the process started for ``model_dir`` that
        checks its feature sets and, where the model reads one row of them a clip, computes them for ``predict``
        (which then runs on no executor)."""
        self.saved = load_fusion_model(Path(model_dir).absolute())
        self.weights_dir = None if weights_dir is None else str(Path(weights_dir).absolute())  # workers run elsewhere
        self.model = choose_model(self.saved, model)
        require_weight_files(self.saved, self.model, self.weights_dir)  # all its nets' missing files in one message
        check_computable(self.saved, self.model, self.weights_dir, None if sets_ahead is None else sets_ahead.check)
        self.sets_ahead = sets_ahead if sets_ahead and self.saved.pooling(self.model) is None else None
        if timeline and (imported := imported_sets(self.saved, self.model)):
            raise ConfigError(
                f"--timeline: model {self.model!r} reads {next(iter(imported))}, imported once per clip, not per"
                " window; choose a --model of computed inputs"
            )
        self.given = GivenFeatures(self.saved, self.model, features)

    @property
    def classes(self) -> list[str]:
        return self.saved.classes

    @property
    def outputs(self) -> list[str]:
        """What each result scores: the classes, the tags, or the value names (``SavedFusionModel.outputs``)."""
        return self.saved.outputs

    def predict(self, clips: Iterable[Clip], executor: Any = None) -> Iterator[dict[str, Any]]:
        """One result per clip, in order: ``{"clip_id", "file", "model", "label", "probabilities"}`` or
        ``{"clip_id", "file", "error"}``. A bad clip, even one that kills its worker, never stops the rest;
        a ``ConfigError`` (the saved model does not fit this version) stops the run."""
        clips = list(clips)
        n = len(clips)
        given = self.given.of(clips)
        if self.sets_ahead is not None:
            return clip_results(self._predict_ahead(clips, given), clips)
        if executor is None:
            results: Iterable[Any] = map(
                predict_clip, [self.saved] * n, [self.model] * n, clips, [self.weights_dir] * n, given
            )
        else:
            results = executor.map(
                predict_clip, [self.saved] * n, [self.model] * n, clips, [self.weights_dir] * n, given
            )
        return clip_results(results, clips)

    def _predict_ahead(self, clips: list[Clip], given: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        """Each clip's result from the sets the process ahead computes: the nets embed the part of a clip's sets they
        read while the process computes the others."""
        assert self.sets_ahead is not None
        parts = self.sets_ahead.parts(self.model, clips)
        with contextlib.suppress(Exception):  # an error is met again, and reported, by each clip
            saved_nets(self.saved, self.model, self.weights_dir)  # while the process computes the first clip's sets
        for clip, rows in zip(clips, given):
            read_by_nets = next(parts)
            try:  # as ``model_inputs`` reads them: the imported rows first, a missing one the clip's failure
                inputs: Part = given_inputs(self.saved, self.model, rows) | net_inputs(
                    self.saved, self.model, _sets(read_by_nets), self.weights_dir
                )
            except Exception as error:  # the clip's failure, raised once its other part is taken from the process
                inputs = error
            others = next(parts)
            yield clip_result(clip, functools.partial(self._labelled, clip, inputs, read_by_nets, others))

    def _labelled(self, clip: Clip, inputs: Part, read_by_nets: Part, others: Part) -> dict[str, Any]:
        """A clip's result from its imported rows and nets' embeddings (``inputs``) and its two parts of sets; the
        first of them that failed raised, in that order."""
        computed = _sets(inputs)
        sets = _sets(read_by_nets) | _sets(others)
        return labelled(self.saved, self.model, clip, computed | set_inputs(self.saved, self.model, sets))


def _sets(part: Part) -> dict[str, np.ndarray]:
    """A part of a clip's sets (or its inputs), or what computing it raised, raised."""
    if isinstance(part, Exception):
        raise part
    return part


def in_training(saved: SavedFusionModel, name: str, clip: Clip) -> bool | None:
    """A result's ``in_training``: whether model ``name`` trained on the clip's media, or None for a model of
    imported sets alone, which reads no media and cannot tell a training clip by them."""
    reads_media = len(imported_sets(saved, name)) < len(saved.feature_sets(name))
    return seen_in_training(saved, clip) if reads_media else None


def seen_in_training(saved: SavedFusionModel, clip: Clip) -> bool:
    """Whether the clip's media are those of a clip the model trained on: its probabilities then test nothing.

    A file given alone (its video and audio the same file) may have been a training clip's video and audio,
    its audio alone or its video alone."""
    known = set(saved.document.get("training_media_sha256", ()))
    if not known:
        return False
    if clip.video is None or clip.video != clip.audio:
        return media_hash([clip.video, clip.audio]) in known
    digest = file_sha256(clip.video)  # read once for every way a training clip may have used the file
    uses: list[list[str | None]] = [[digest, digest], [None, digest], [digest, None]]
    return any(combined_digest(pair) in known for pair in uses)


def predict_clip(
    saved: SavedFusionModel, name: str, clip: Clip, weights_dir: str | None = None, given: Mapping[str, Any] = {}
) -> dict[str, Any]:
    """The model's prediction for one clip (a job that runs on any executor's worker): ``label_scores``; ``given``:
    the rows of its imported sets (``GivenFeatures.of``)."""

    return clip_result(clip, lambda: labelled(saved, name, clip, model_inputs(saved, name, clip, weights_dir, given)))


def labelled(saved: SavedFusionModel, name: str, clip: Clip, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The result of model ``name`` for a clip from its ``inputs``: ``label_scores`` and whether it trained on it."""
    scores = saved.predict(name, inputs)[0]
    return (
        {"clip_id": clip.clip_id, "file": file_of(clip), "model": name}
        | label_scores(saved, name, scores)
        | {"in_training": in_training(saved, name, clip)}
    )


def label_scores(saved: SavedFusionModel, name: str, scores: np.ndarray) -> dict[str, Any]:
    """One clip's ``label`` and scores by the model's kind: the most probable class and each class's
    ``probabilities``; the tags called (at or above their thresholds, ``;``-joined) and each tag's
    ``probabilities``; or the quadrant (Q1..Q4, or high/low with one value) and the ``values``."""
    thresholds = saved.thresholds(name) if saved.target == "tags" else None
    label = label_of(saved.target, saved.outputs, scores, thresholds=thresholds, scale=saved.scale)
    key = "probabilities" if saved.target in ("label", "tags") else "values"
    return {"label": label, key: dict(zip(saved.outputs, map(float, scores)))}


def label_of(
    target: str,
    outputs: list[str],
    scores: np.ndarray,
    *,
    thresholds: list[float] | None = None,
    scale: tuple[float, float] | None = None,
) -> str:
    """The label of one row of scores (n_outputs,): the most probable class, the tags at or above their
    ``thresholds`` (``;``-joined), or the quadrant of the values on ``scale``."""
    if target == "label":
        return outputs[int(np.argmax(scores))]
    if target == "tags":
        return ";".join(tag for tag, p, at in zip(outputs, scores, thresholds or []) if p >= at)
    return categories_of(target, outputs)[int(quadrants(scores[None, :], scale)[0])]  # type: ignore[arg-type]


def categories_of(target: str, outputs: list[str]) -> list[str]:
    """What a model of ``target`` names a clip or window by: its classes, its tags, or the quadrants (Q1..Q4, or
    high and low with one value)."""
    if target in ("label", "tags"):
        return list(outputs)
    return list(value_categories(len(outputs)))


def category_noun(target: str, outputs: list[str]) -> str:
    """What one of ``categories_of`` is called: a class, a tag, a quadrant, or a half of one value's scale."""
    if target in ("label", "tags"):
        return "class" if target == "label" else "tag"
    return "half" if categories_of(target, outputs) == list(HALVES) else "quadrant"


def windows_text(count: int) -> str:
    """``1 window``, ``2 windows``: a timeline's length in words."""
    return f"{count} window{'' if count == 1 else 's'}"


def scores_of(result: dict[str, Any]) -> dict[str, float]:
    """A result's probabilities (of classes or tags) or values."""
    return dict(result.get("probabilities") or result["values"])
