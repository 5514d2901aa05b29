"""The clip table: ``Clip`` rows and the ``Manifest`` that holds them (``manifests.io`` reads and writes them).

A manifest is one row per clip: ``clip_id, label, video, audio, group, fold``,
the other targets ``tags, valence, arousal`` where it has them (``manifests.targets``;
``label`` may be absent where another target is given), plus any extra columns a user
keeps (they survive a round trip). Paths in a
file are relative to the manifest's folder, or absolute; in memory they are
absolute, and writing makes them relative to the folder written to, so a
manifest can be saved anywhere. The class names and their order are stored
with the rows: in a CSV as a first comment line ``# classes: [...]`` (JSON),
in JSONL as a first header object ``{"classes": [...]}``. A file without them
takes the sorted set of its labels. The tag vocabulary and the valence/arousal
scale are stored the same way (``# tags: [...]``, ``# scale: [low, high]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.manifests.errors import ManifestError
from mvemo.manifests.targets import (
    ANNOTATIONS_COLUMN,
    TARGET_COLUMNS,
    VALUE_COLUMNS,
    check_targets,
    quadrants,
    rarest_tag,
    tag_matrix,
)

COLUMNS = ("clip_id", "label", "video", "audio", "group", "fold")
MEDIA_COLUMNS = ("video", "audio")
FOLDS_FIX = "run `mvemo manifest folds MANIFEST --k K` to assign them"
HEADERS = ("classes", "tags", "scale")  # the CSV's ``# name: [...]`` lines, the JSONL header object's keys


@dataclass(frozen=True)
class Clip:
    """One row of the clip table.

    Parameters
    ----------
    clip_id : str
        Unique key of the clip (``scan`` uses the path under its root).
    label : str
        Class name; one of the manifest's ``classes`` (empty in a manifest without labels).
    video, audio : Path or None
        Absolute paths of the media giving each modality (one file may give both).
    group : str
        Clips sharing a group (one song, one source video) always share a fold;
        empty means the clip stands alone.
    fold : int or None
        Cross-validation fold, 0..k-1, or None before ``mvemo manifest folds``.
    tags : tuple of str
        Emotion tags, each one of the manifest's ``tags``.
    valence, arousal : float or None
        Values on the manifest's ``scale``, None where the manifest has none.
    annotations : Path or None
        Absolute path of a CSV of the clip's values over time (``manifests.targets.read_annotations``).
    extra : dict
        Unknown columns, kept as read.
    """

    clip_id: str
    label: str
    video: Path | None = None
    audio: Path | None = None
    group: str = ""
    fold: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    valence: float | None = None
    arousal: float | None = None
    annotations: Path | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this clip promises, in ``("video", "audio")`` order."""
        return tuple(m for m in MEDIA_COLUMNS if getattr(self, m) is not None)

    @property
    def media_columns(self) -> dict[Path, tuple[str, ...]]:
        """Each media file of the clip and the columns that name it, in ``modalities`` order: a video that gives
        the sound too is one file of two columns."""
        columns: dict[Path, tuple[str, ...]] = {}
        for modality in self.modalities:
            path = getattr(self, modality)
            columns[path] = (*columns.get(path, ()), modality)
        return columns

    @property
    def sound_file(self) -> Path:
        """The file the clip's sound is read from: its audio, else its video (a clip has one or both)."""
        file = self.audio or self.video
        if file is None:
            raise ManifestError(f"clip {self.clip_id!r} has neither an audio nor a video file")
        return file


@dataclass(frozen=True)
class Manifest:
    """An ordered clip table with its class names, tag vocabulary and value scale; validated on construction.

    Raises
    ------
    ManifestError
        On a duplicate ``clip_id``, an unknown label or tag, a clip with neither video nor
        audio, fold values that are partly missing or not exactly ``0..k-1``, or values
        that are partly missing or off the scale (``manifests.targets.check_targets``).
    """

    classes: tuple[str, ...]
    clips: tuple[Clip, ...]
    # Clips without a fold beside clips with one: only ``mvemo manifest folds`` reads such a manifest, to fold them in.
    partial_folds: bool = field(default=False, compare=False, repr=False)
    tags: tuple[str, ...] = ()
    scale: tuple[float, float] | None = None
    # Clips without a target: only ``mvemo predict --manifest`` reads such a manifest, to label new files.
    unlabelled: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "clips", tuple(self.clips))
        object.__setattr__(self, "tags", tuple(self.tags))
        if len(set(self.classes)) != len(self.classes):
            raise ManifestError(f"class names repeat in {list(self.classes)}; give each class once")
        known = set(self.classes)
        seen: dict[str, int] = {}
        for row, clip in enumerate(self.clips, start=1):
            where = f"row {row} (clip {clip.clip_id!r})"
            if not clip.clip_id:
                raise ManifestError(f"row {row}: column 'clip_id' is empty; give every clip a unique id")
            if clip.clip_id in seen:
                raise ManifestError(
                    f"{where}: column 'clip_id' value {clip.clip_id!r} repeats row {seen[clip.clip_id]};"
                    " clip ids must be unique (scan uses the path under its root)"
                )
            seen[clip.clip_id] = row
            if clip.label and clip.label not in known:
                raise ManifestError(
                    f"{where}: column 'label' value {clip.label!r} is not a class of this manifest"
                    f" {list(self.classes)}; fix the label or add the class to the '# classes:' line"
                )
            if not clip.label and self.classes and not self.unlabelled:
                raise ManifestError(
                    f"{where}: no label (column 'label' empty or absent) in a manifest of the classes"
                    f" {list(self.classes)}; label every clip with one of them"
                )
            if not clip.modalities:
                raise ManifestError(
                    f"{where}: columns 'video' and 'audio' are both empty; give the clip a media file or drop the row"
                )
        check_targets(self.clips, classes=self.classes, tags=self.tags, scale=self.scale, required=not self.unlabelled)
        self._check_folds()

    def _check_folds(self) -> None:
        folds = [c.fold for c in self.clips]
        given = [f for f in folds if f is not None]
        if not given:
            return
        if self.partial_folds:
            return  # ``assign_folds`` checks the folds it keeps
        if len(given) != len(folds):
            row = folds.index(None) + 1
            raise ManifestError(
                f"row {row} (clip {self.clips[row - 1].clip_id!r}): column 'fold' is empty while other rows have folds;"
                " run `mvemo manifest folds MANIFEST`: it gives the clips without one a fold and moves no other"
            )
        k = max(given) + 1
        missing = sorted(set(range(k)) - set(given))
        if missing or k < 2:
            raise ManifestError(
                f"column 'fold' holds {sorted(set(given))}, expected every fold of 0..{max(k - 1, 1)}"
                f" (missing {missing or [1]}); {FOLDS_FIX} again"
            )

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def clip_ids(self) -> list[str]:
        return [c.clip_id for c in self.clips]

    @property
    def y(self) -> np.ndarray:
        """Class index of every clip, shape (n_clips,), int64, in ``classes`` order (-1 in a manifest without
        labels)."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index.get(c.label, -1) for c in self.clips], dtype=np.int64)

    @property
    def tag_matrix(self) -> np.ndarray:
        """Which clip carries which tag: shape (n_clips, n_tags), uint8, in ``tags`` order."""
        return tag_matrix([c.tags for c in self.clips], self.tags)

    @property
    def value_names(self) -> tuple[str, ...]:
        """The value columns the clips have: ``("valence", "arousal")``, one of them, or none."""
        return tuple(v for v in VALUE_COLUMNS if self.clips and getattr(self.clips[0], v) is not None)

    @property
    def values(self) -> np.ndarray:
        """Each clip's values of ``value_names``: shape (n_clips, n_values), float64."""
        return np.array([[getattr(c, v) for v in self.value_names] for c in self.clips], dtype=float).reshape(
            len(self.clips), len(self.value_names)
        )

    @property
    def strata(self) -> np.ndarray:
        """What stratified folds balance, shape (n_clips,), int64: the class; without labels the clip's rarest tag
        (``manifests.targets.rarest_tag``); without tags the quadrant of its values."""
        if self.classes:
            return self.y
        if self.tags:
            return rarest_tag(self.tag_matrix)
        return (
            quadrants(self.values, self.scale) if self.scale is not None else np.zeros(len(self.clips), dtype=np.int64)
        )

    @property
    def strata_names(self) -> list[str]:
        """The name of each stratum of ``strata``: the classes, the tags (and "no tag"), or the quadrants."""
        if self.classes:
            return list(self.classes)
        if self.tags:
            return [*self.tags, "no tag"]
        return ["Q1", "Q2", "Q3", "Q4"] if len(self.value_names) == 2 else ["high", "low"]

    @property
    def groups(self) -> list[str]:
        """The group of every clip (``group_id``)."""
        return [group_id(c.group, c.clip_id) for c in self.clips]

    @property
    def has_folds(self) -> bool:
        return bool(self.clips) and all(c.fold is not None for c in self.clips)

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1 if self.has_folds else 0

    @property
    def folds(self) -> np.ndarray:
        """Fold of every clip, shape (n_clips,), int64.

        Raises
        ------
        ManifestError
            When the manifest has no folds yet.
        """
        if not self.has_folds:
            raise ManifestError(f"the manifest has no folds; {FOLDS_FIX}")
        return np.array([c.fold for c in self.clips], dtype=np.int64)

    def with_folds(self, folds: Sequence[int]) -> Manifest:
        """A copy with ``folds[i]`` written into clip i's ``fold`` column."""
        if len(folds) != len(self.clips):
            raise ManifestError(f"{len(folds)} fold values for {len(self.clips)} clips")
        return replace(
            self, clips=tuple(replace(c, fold=int(f)) for c, f in zip(self.clips, folds)), partial_folds=False
        )

    def with_groups(self, groups: Sequence[str]) -> Manifest:
        """A copy with ``groups[i]`` written into clip i's ``group`` column (folds kept as they are)."""
        if len(groups) != len(self.clips):
            raise ManifestError(f"{len(groups)} group values for {len(self.clips)} clips")
        return replace(self, clips=tuple(replace(c, group=str(g)) for c, g in zip(self.clips, groups)))

    def column(self, name: str) -> list[Any]:
        """Values of one column (a standard one or an extra), one per clip.

        Raises
        ------
        ManifestError
            When no clip has that column.
        """
        if name in COLUMNS + TARGET_COLUMNS:
            return [getattr(c, name) for c in self.clips]
        if not any(name in c.extra for c in self.clips):
            known = list(COLUMNS + TARGET_COLUMNS) + self.extra_columns
            raise ManifestError(f"no column {name!r} in the manifest; choose one of {known}")
        return [c.extra.get(name, "") for c in self.clips]

    @property
    def extra_columns(self) -> list[str]:
        """Names of the extra columns, in order of first appearance."""
        names: dict[str, None] = {}
        for clip in self.clips:
            names.update(dict.fromkeys(clip.extra))
        return list(names)

    def missing_files(self) -> list[str]:
        """One message per media or annotation path that does not exist, naming row, column, path and fix."""
        problems = []
        for row, clip in enumerate(self.clips, start=1):
            notes = {clip.annotations: (ANNOTATIONS_COLUMN,)} if clip.annotations else {}
            for path, columns in (clip.media_columns | notes).items():
                if not path.is_file():
                    named = " and ".join(repr(c) for c in columns)
                    fix = "drop the row" if len(columns) > 1 else "clear the column"
                    problems.append(
                        f"row {row} (clip {clip.clip_id!r}): column{'s' if len(columns) > 1 else ''} {named} file"
                        f" {str(path)!r} does not exist; fix the path (relative to the manifest's folder) or {fix}"
                    )
        return problems

    def require_files(self) -> None:
        """Raise ``ManifestError`` naming the first missing media file (and how many more)."""
        problems = self.missing_files()
        if problems:
            more = f" (and {len(problems) - 1} more missing files)" if len(problems) > 1 else ""
            raise ManifestError(problems[0] + more)


def group_id(group: str, clip_id: str) -> str:
    """The group a clip belongs to: its ``group``, or its own id when it has none (a group of one)."""
    return group or clip_id
