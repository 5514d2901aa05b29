"""``mvemo predict --timeline``: a whole music video read as overlapping windows, an emotion timeline and one label.

A saved model was trained on one window per clip (30 s by default); a file is read as a sequence
of windows of that length, every ``hop_s`` seconds, laid out as stage one lays them
(``extract.windows.plan.plan_windows``) on the file's presentation timeline: the audio samples and
the video frames of a window come from the same seconds (each stream cut to where it starts, as
stage one does). Each window gets the model's probabilities; the clip's label comes from the
model's inputs pooled over the windows, not from a vote: averaged, or as stage one pooled them for
a model trained on pooled windows (``[clip] windows = true``), which then reads each window as a
clip of one window.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.layout import modality
from mvemo.extract.faces.sets import FER_CLASSES, clip_columns
from mvemo.extract.windows.plan import Window, plan_windows, stream_ends
from mvemo.fuse.saved.check import QUADRANT_CORNERS, cv_score
from mvemo.fuse.saved.model import SavedFusionModel
from mvemo.manifests.errors import ConfigError, MediaError
from mvemo.manifests.schema import Clip
from mvemo.manifests.targets import on_unit_scale
from mvemo.pipeline.predict.clip_sets import check_fingerprints, fingerprints_of, model_configs
from mvemo.pipeline.predict.failures import clip_result, clip_results
from mvemo.pipeline.predict.inputs import pool_inputs, window_inputs, window_length
from mvemo.pipeline.predict.plane import values_over
from mvemo.pipeline.predict.predictor import (
    Predictor,
    categories_of,
    in_training,
    label_of,
    label_scores,
    windows_text,
)

# Streams whose lengths differ by more than this are reported (AAC priming and rounding stay below it).
LENGTH_TOLERANCE_S = 0.5
# A model that reads the faces: its timeline's expression track, per window
FACE_TRACK = ("face_share", *(f"face_{e}" for e in FER_CLASSES))


@dataclass
class Timeline:
    """One file's windows with the model's scores for each (class or tag probabilities, or values: ``kind``), and
    the label of the whole (``predictor.label_scores``)."""

    file: str
    is_video: bool  # else an audio file
    model: str
    classes: list[str]  # the scores' names: the classes, the tags, or the value names
    windows: list[Window]
    scores: np.ndarray  # (n_windows, outputs): a probability per class or tag, or the values
    overall: np.ndarray  # (n_classes,), from the pooled inputs
    provenance: dict[str, Any]  # SavedFusionModel.provenance
    notes: list[str] = field(default_factory=list)
    faces: np.ndarray | None = None  # (n_windows, 8): FACE_TRACK per window, where the model reads ``faces``
    kind: str = "label"  # SavedFusionModel.target
    thresholds: list[float] | None = None  # a tag model's, per tag
    scale: tuple[float, float] | None = None  # a value model's
    plane: dict[str, tuple[float, float]] | None = None  # a model of quadrant classes: each one's place on the plane
    # beside such a model, the values model's reading of each window and of the file (``predict.plane.values_over``)
    plane_values: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """The whole file's label (``predictor.label_of``): its class, its tags called, or its quadrant."""
        return label_of(self.kind, self.classes, self.overall, thresholds=self.thresholds, scale=self.scale)

    def top(self, row: np.ndarray) -> str:
        """A window's ``argmax`` column: its most probable class or tag, or the quadrant of its values."""
        if self.kind in ("label", "tags"):
            return self.classes[int(np.argmax(row))]
        return label_of(self.kind, self.classes, row, scale=self.scale)

    @property
    def face_columns(self) -> tuple[str, ...]:
        """The CSV's expression track: the share of frames with a face and each expression's mean probability."""
        return () if self.faces is None else FACE_TRACK

    def seconds(self) -> tuple[np.ndarray, np.ndarray]:
        """The windows' starts and ends."""
        return np.array([w.start_s for w in self.windows]), np.array([w.end_s for w in self.windows])

    @property
    def categories(self) -> list[str]:
        """What a window is named by (``predictor.categories_of``): a class, a tag, or a quadrant."""
        return categories_of(self.kind, self.classes)

    def page_data(self) -> dict[str, Any]:
        """What the timeline page draws, as JSON: the file's name, model, label, the kind of model and its scores'
        names (``classes``), the pooled scores, each window's start, end, edges (``fuse.report.plots.window_edges``),
        scores and top category (an index into ``categories``: ``top``), the notes and the model's provenance; a tag
        model's thresholds, a value model's scale."""
        from mvemo.fuse.report.plots import window_edges

        starts, ends = self.seconds()
        categories = self.categories
        data = {
            "file": Path(self.file).name,
            "model": self.model,
            "label": self.label,
            "kind": self.kind,
            "classes": self.classes,
            "categories": categories,
            "overall": [round(float(p), 4) for p in self.overall],
            "starts": starts.tolist(),
            "ends": ends.tolist(),
            "edges": window_edges(starts, ends).round(3).tolist(),
            "scores": np.round(self.scores, 4).tolist(),
            "top": [categories.index(self.top(row)) for row in self.scores],
            "notes": self.notes,
            "provenance": self.provenance,
        }
        if self.thresholds is not None:
            data["thresholds"] = [round(float(t), 4) for t in self.thresholds]
            data["called"] = [np.flatnonzero(row >= np.asarray(self.thresholds)).tolist() for row in self.scores]
        if self.scale is not None:
            data["scale"] = [float(v) for v in self.scale]
        if self.plane is not None:
            data["plane"] = self.plane_data()
        return data

    def plane_data(self) -> dict[str, Any]:
        """Each window's valence and arousal on -1..1 (clipped), the whole file's, the classes in the plane's
        quadrants (upper right, upper left, lower left, lower right) and where the points come from (``source``): the
        values model's reading of each window where it ran (``plane_values``), else the window's class probabilities
        (each class at its place on Russell's plane, weighed by its probability)."""
        assert self.plane is not None
        quadrants = [next(c for c, place in self.plane.items() if place == corner) for corner in QUADRANT_CORNERS]
        if self.plane_values is not None:
            scale = self.plane_values["scale"]
            read, overall = (on_unit_scale(self.plane_values[key], scale) for key in ("values", "overall"))
            source = self.plane_values["model"]
        else:
            places = np.array([self.plane[c] for c in self.classes])  # (classes, 2)
            read, overall, source = self.scores @ places, self.overall @ places, "probabilities"
        return {
            "valence": np.round(read[:, 0], 4).tolist(),
            "arousal": np.round(read[:, 1], 4).tolist(),
            "overall": np.round(overall, 4).tolist(),
            "quadrants": quadrants,
            "source": source,
        }

    def write(self, out: Path, stem: str, media_source: str) -> tuple[Path, Path, Path]:
        """``<stem>.timeline.csv`` (start_s, end_s, a probability per class, argmax), ``<stem>.timeline.png`` and
        ``<stem>.timeline.html``, the page that plays the file (at ``media_source``, ``page.media_source``) beside
        its timeline."""
        from mvemo.fuse.report.plots import tags_timeline_png, timeline_png, values_timeline_png
        from mvemo.pipeline.predict.page import timeline_page

        out.mkdir(parents=True, exist_ok=True)
        table = out / f"{stem}.timeline.csv"
        with table.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            columns = self.classes if self.kind not in ("label", "tags") else [f"p_{c}" for c in self.classes]
            called = ["called"] if self.thresholds is not None else []
            writer.writerow(["start_s", "end_s", *columns, "argmax", *called, *self.face_columns])
            for k, (window, row) in enumerate(zip(self.windows, self.scores)):
                faces = [] if self.faces is None else [f"{v:.6f}" for v in self.faces[k]]
                tags = (
                    [";".join(t for t, p, at in zip(self.classes, row, self.thresholds or []) if p >= at)]
                    if called
                    else []
                )
                cells = [f"{window.start_s:.3f}", f"{window.end_s:.3f}", *(f"{p:.6f}" for p in row), self.top(row)]
                writer.writerow([*cells, *tags, *faces])
        starts, ends = self.seconds()
        title = f"{stem}: {self.label or 'no tag'} ({self.model}, {windows_text(len(self.windows))})"
        track = None if self.faces is None else dict(zip(FACE_TRACK, self.faces.T))
        png = out / f"{stem}.timeline.png"
        html_path = out / f"{stem}.timeline.html"
        if self.kind == "label":
            picture = timeline_png(starts, ends, self.scores, self.classes, title, png, faces=track)
        elif self.kind == "tags":
            picture = tags_timeline_png(starts, ends, self.scores, self.classes, self.thresholds or [], title, png)
        else:
            picture = values_timeline_png(
                starts,
                ends,
                self.scores,
                self.classes,
                self.scale,  # type: ignore[arg-type]
                title,
                png,
            )
        return table, picture, timeline_page(self.page_data(), media_source, self.is_video, html_path)


def clip_timeline(
    saved: SavedFusionModel,
    name: str,
    clip: Clip,
    hop_s: float,
    weights_dir: str | None = None,
    values_model: Path | None = None,
) -> Timeline:
    """The timeline of one file: the model ``name`` over its windows, or, where the file lacks a modality the
    model reads, the best saved model (by its CV accuracy) that reads only what the file has, with a note.

    Raises
    ------
    MediaError
        When the file cannot be read, or no saved model reads only the modalities it has.
    """
    ends, problem = stream_ends(clip)
    if problem:
        raise MediaError(problem)
    notes = []
    name, note = _model_for(saved, name, set(ends), clip.clip_id)
    if note:
        notes.append(note)
    configs, fingerprints = model_configs(saved, name)
    check_fingerprints(fingerprints_of(configs, weights_dir=weights_dir), fingerprints, configs)
    read = {modality(set_name) for set_name in configs}
    duration_s = min(ends[m] for m in read)
    if len(read) == 2 and abs(ends["audio"] - ends["video"]) > LENGTH_TOLERANCE_S:
        notes.append(
            f"audio {ends['audio']:.1f} s, video {ends['video']:.1f} s: the timeline covers the first"
            f" {duration_s:.1f} s, where both are"
        )
    length_s = window_length(configs)
    windows = plan_windows(duration_s, length_s, hop_s)
    if duration_s < length_s:
        notes.append(
            f"{duration_s:.1f} s is shorter than one {length_s:g}-s window: one window, padded as stage one pads"
        )
    pooled = saved.pooling(name)
    pooling = "mean" if pooled is None else pooled["pooling"]
    if pooled is not None and pooled["hop_s"] != hop_s:
        notes.append(
            f"the model pooled windows every {pooled['hop_s']:g} s in training; with --hop {hop_s:g} the label of the"
            " whole may differ from `mvemo predict`'s"
        )
    if pooling == "mean+std":
        notes.append("the model pools mean+std: each window's own row reads it as a clip of one window (std 0)")
    per_window = window_inputs(saved, name, clip, windows, weights_dir)
    scores = np.concatenate([saved.predict(name, pool_inputs([inputs], pooling)) for inputs in per_window])
    overall = saved.predict(name, pool_inputs(per_window, pooling))[0]
    shown = [Window(w.start_s, min(w.end_s, round(duration_s, 3))) for w in windows]  # a short file's padding unshown
    file, is_video = str(clip.video or clip.audio), "video" in ends
    provenance = saved.provenance(name)
    faces = _expression_track(saved, name, per_window)
    thresholds = saved.thresholds(name) if saved.target == "tags" else None
    plane_values = None
    if saved.plane is not None and values_model is not None:
        plane_values, why = values_over(values_model, clip, windows, duration_s, weights_dir)
        notes += [why] if why else []
    return Timeline(
        file,
        is_video,
        name,
        saved.outputs,
        shown,
        scores,
        overall,
        provenance,
        notes,
        faces,
        saved.target,
        thresholds,
        saved.scale,
        saved.plane,
        plane_values,
    )


def _expression_track(saved: SavedFusionModel, name: str, per_window: list[dict[str, np.ndarray]]) -> np.ndarray | None:
    """Per window, the share of frames with a face and each expression's mean probability, where the model reads
    the ``faces`` input (None where it does not)."""
    if "faces" not in saved.inputs(name):
        return None
    columns = clip_columns(saved.feature_sets(name)["faces"]["config"]["expression_net"])
    picked = [columns.index(c) for c in ("face_share", *(f"expr_mean_{e}" for e in FER_CLASSES))]
    return np.concatenate([inputs["faces"] for inputs in per_window])[:, picked]


def _model_for(saved: SavedFusionModel, name: str, present: set[str], clip_id: str) -> tuple[str, str]:
    """``name`` when the file has every modality it reads; else the saved model with the best cross-validated score
    (``fuse.saved.check.cv_score``: accuracy, ROC-AUC or CCC) among those reading only ``present``, and a note saying
    so."""

    def reads(model: str) -> set[str]:
        return {modality(set_name) for set_name in model_configs(saved, model)[0]}

    if reads(name) <= present:
        return name, ""
    score = cv_score(saved.document)
    fitting = sorted((m for m in saved.models if reads(m) <= present), key=lambda m: -score["models"].get(m, -np.inf))
    absent = ", ".join(sorted(reads(name) - present))
    if not fitting:
        raise MediaError(f"clip {clip_id!r} has no {absent} and every saved model reads it; give a file with {absent}")
    kind = " and ".join(sorted(present))
    best = fitting[0]
    return (
        best,
        f"the file has no {absent}: the timeline reads its {kind} alone, with {best!r}, the saved model reading {kind}"
        f" only of the best cross-validated {score['metric']}",
    )


def timelines(
    predictor: Predictor,
    clips: list[Clip],
    hop_s: float | None,
    out: str,
    executor: Any = None,
    *,
    embed_media: bool = False,
    values_model: Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Each clip's emotion timeline written into ``out``, one result per clip as ``Predictor.predict`` gives them:
    its label of the whole, the model, its windows, length, CSV, PNG, page and notes, or its error.

    ``hop_s`` None: the hop the model's windows were pooled with in stage one, else half its window.
    ``values_model``: a saved values model whose reading of each window a model of quadrants draws on the plane.

    Raises
    ------
    ConfigError
        Before any work, for a hop longer than the model's window (seconds between windows would go unread).
    """
    length_s = window_length(model_configs(predictor.saved, predictor.model)[0])
    if hop_s is None:
        pooled = predictor.saved.pooling(predictor.model)
        hop_s = length_s / 2 if pooled is None else float(pooled["hop_s"])
    if hop_s > length_s:
        raise ConfigError(
            f"--hop {hop_s:g}: longer than the model's {length_s:g}-s window, it would leave the seconds between"
            f" windows unread; give --hop {length_s:g} or less"
        )
    stems = dict(zip((c.clip_id for c in clips), output_stems([c.video or c.audio for c in clips])))
    saved, model, weights_dir = predictor.saved, predictor.model, predictor.weights_dir
    n = len(clips)
    if executor is None:
        results: Iterable[Any] = (
            timeline_job(saved, model, hop_s, out, clip, stems, weights_dir, embed_media, values_model)
            for clip in clips
        )
    else:
        jobs = (
            [saved] * n,
            [model] * n,
            [hop_s] * n,
            [out] * n,
            clips,
            [stems] * n,
            [weights_dir] * n,
            [embed_media] * n,
            [values_model] * n,
        )
        results = executor.map(timeline_job, *jobs)
    return clip_results(results, clips)


def output_stems(files: list[Path | None]) -> list[str]:
    """Each file's name in the output folder: its file name or, where files of one name lie in several folders, as
    many of its last folders as tell it apart, joined by ``__`` (``live/song.mp4`` -> ``live__song.mp4``)."""
    parts = [Path(f or "").absolute().parts[1:] for f in files]
    distinct = set(parts)
    stems = []
    for mine in parts:
        others = distinct - {mine}
        depth = next(k for k in range(1, len(mine) + 1) if k == len(mine) or all(o[-k:] != mine[-k:] for o in others))
        stems.append("__".join(mine[-depth:]))
    return stems


def timeline_job(
    saved: SavedFusionModel,
    name: str,
    hop_s: float,
    out: str,
    clip: Clip,
    stems: dict[str, str],
    weights_dir: str | None = None,
    embed_media: bool = False,
    values_model: Path | None = None,
) -> dict[str, Any]:
    """Write one file's timeline CSV, PNG and page into ``out`` (a job that runs on any executor's worker)."""

    def write() -> dict[str, Any]:
        from mvemo.pipeline.predict.page import media_source

        timeline = clip_timeline(saved, name, clip, hop_s, weights_dir, values_model)
        source, note = media_source(Path(timeline.file), Path(out), embed_media)
        timeline.notes += [note] if note else []
        table, picture, page = timeline.write(Path(out), stems[clip.clip_id], source)
        return {
            "clip_id": clip.clip_id,
            "file": timeline.file,
            "model": timeline.model,
            **label_scores(saved, timeline.model, timeline.overall),
            "windows": len(timeline.windows),
            "csv": os.fspath(table),
            "png": os.fspath(picture),
            "html": os.fspath(page),
            "notes": timeline.notes,
            "in_training": in_training(saved, name, clip),
        }

    return clip_result(clip, write)
