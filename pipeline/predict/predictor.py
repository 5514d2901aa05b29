"""``mvemo predict``: label new files with a saved fusion model, computing exactly the features it was trained on.

Each clip is one job on the executor (serial, local processes or a Dask cluster),
so a catalogue of new videos fans out like stage one; results stream into one CSV.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.fingerprint import combined_digest, file_sha256, media_hash
from mvemo.fuse.saved.model import SavedFusionModel, load_fusion_model
from mvemo.manifests.errors import ConfigError, MvemoError
from mvemo.manifests.scan import AUDIO_EXTENSIONS
from mvemo.manifests.schema import Clip
from mvemo.manifests.targets import HALVES, quadrants, value_categories
from mvemo.pipeline.predict.given import GivenFeatures, imported_sets
from mvemo.pipeline.predict.inputs import check_computable, model_inputs, require_weight_files


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
    ) -> None:
        """``features``: CSV or .npz files of the columns of the sets the model imported (``mvemo cache import``) for
        the new clips (``GivenFeatures``); ``timeline``: the clips are to be read window by window, which a model
        over an imported set (a row per clip) cannot."""
        self.saved = load_fusion_model(Path(model_dir).absolute())
        self.weights_dir = None if weights_dir is None else str(Path(weights_dir).absolute())  # workers run elsewhere
        self.model = choose_model(self.saved, model)
        require_weight_files(self.saved, self.model, self.weights_dir)  # all its nets' missing files in one message
        check_computable(self.saved, self.model, self.weights_dir)
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
        if executor is None:
            results: Iterable[Any] = map(
                predict_clip, [self.saved] * n, [self.model] * n, clips, [self.weights_dir] * n, given
            )
        else:
            results = executor.map(
                predict_clip, [self.saved] * n, [self.model] * n, clips, [self.weights_dir] * n, given
            )
        return clip_results(results, clips)


def clip_results(results: Iterable[Any], clips: list[Clip]) -> Iterator[dict[str, Any]]:
    """The results of the clips' jobs, in order: a ``ConfigError`` stops the run, a lost job is its clip's failure."""
    # results first: the executor's stream is read to its end, and ends with the clips
    for result, clip in zip(results, clips, strict=True):
        if isinstance(result, ConfigError):
            raise result
        if isinstance(result, BaseException):  # the executor lost the job (a worker died on this clip)
            result = failed_result(clip, f"clip {clip.clip_id!r}: its worker died ({type(result).__name__}: {result})")
        yield result


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

    def label() -> dict[str, Any]:
        scores = saved.predict(name, model_inputs(saved, name, clip, weights_dir, given))[0]
        return (
            {"clip_id": clip.clip_id, "file": _file_of(clip), "model": name}
            | label_scores(saved, name, scores)
            | {"in_training": in_training(saved, name, clip)}
        )

    return clip_result(clip, label)


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


def clip_result(clip: Clip, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, or the clip's failure: a bad clip never stops a run; a ``ConfigError`` (the saved model
    does not fit this version) does."""
    try:
        return compute()
    except ConfigError:
        raise
    except MvemoError as err:
        return failed_result(clip, str(err))
    except Exception as err:  # a decoder or library fault on one clip must not stop the run
        return failed_result(clip, f"clip {clip.clip_id!r}: {type(err).__name__}: {err}")


def _file_of(clip: Clip) -> str:
    return str(clip.video or clip.audio)


def failed_result(clip: Clip, reason: str) -> dict[str, Any]:
    return {"clip_id": clip.clip_id, "file": _file_of(clip), "error": reason}
