"""The clip table: ``Clip`` rows, the ``Manifest`` that holds them, and CSV/JSONL io.

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

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.manifests.errors import ManifestError, utf8_text
from mvemo.manifests.targets import (
    ANNOTATIONS_COLUMN,
    TARGET_COLUMNS,
    VALUE_COLUMNS,
    check_targets,
    parse_header_list,
    parse_scale,
    parse_tags,
    parse_value,
    parse_vocabulary,
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
            if clip.label not in known and (self.classes or clip.label):
                raise ManifestError(
                    f"{where}: column 'label' value {clip.label!r} is not a class of this manifest"
                    f" {list(self.classes)}; fix the label or add the class to the '# classes:' line"
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
                f"row {row} (clip {self.clips[row - 1].clip_id!r}): column 'fold' is empty while other rows"
                " have folds; run `mvemo manifest folds MANIFEST`: it gives the clips without one a fold and moves no other"
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
        """Class index of every clip, shape (n_clips,), int64, in ``classes`` order (-1 in a manifest without labels)."""
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
        return quadrants(self.values, self.scale) if self.scale is not None else np.zeros(len(self.clips), dtype=np.int64)

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
        return replace(self, clips=tuple(replace(c, fold=int(f)) for c, f in zip(self.clips, folds)), partial_folds=False)

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
            for column in (*clip.modalities, *([ANNOTATIONS_COLUMN] if clip.annotations else [])):
                path = getattr(clip, column)
                if not path.is_file():
                    problems.append(
                        f"row {row} (clip {clip.clip_id!r}): column {column!r} file {str(path)!r} does not exist;"
                        " fix the path (relative to the manifest's folder) or clear the column"
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


def read_manifest(
    path: str | os.PathLike[str], *, check_files: bool = True, partial_folds: bool = False, unlabelled: bool = False
) -> Manifest:
    """Read a manifest from CSV or JSONL (chosen by the ``.jsonl``/``.json`` suffix).

    Parameters
    ----------
    path : path-like
        The manifest file. Relative media paths are taken from its folder.
    check_files : bool
        Also require every media file to exist.
    partial_folds : bool
        Accept clips without a fold beside clips with one (new clips to fold in).
    unlabelled : bool
        Accept clips without any target (new files to label).

    Raises
    ------
    ManifestError
        On a missing or unreadable file, a missing column, a bad value, or any
        broken rule of ``Manifest`` (each naming the row, column, value and fix).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {str(path)!r} does not exist; build one with `mvemo manifest scan ROOT -o {path}`")
    text = utf8_text(path, f"manifest {str(path)!r}")
    reader = _read_jsonl if path.suffix.lower() in (".jsonl", ".json") else _read_csv
    headers, rows = reader(text, path, not unlabelled)
    root = path.parent.absolute()
    clips = [_clip_from_row(row, n, root) for n, row in enumerate(rows, start=1)]
    if not clips:
        raise ManifestError(f"manifest {str(path)!r} has no clips; add rows or build it with `mvemo manifest scan`")
    where = f"manifest {str(path)!r}"
    classes = headers.get("classes") or sorted({c.label for c in clips} - {""})
    tags = parse_vocabulary(headers["tags"], where=where) if "tags" in headers else sorted({t for c in clips for t in c.tags})
    scale = parse_scale(headers["scale"], where=where) if "scale" in headers else None
    manifest = Manifest(tuple(classes), tuple(clips), partial_folds, tuple(tags), scale, unlabelled)
    if check_files:
        manifest.require_files()
    return manifest


def write_manifest(manifest: Manifest, path: str | os.PathLike[str]) -> Path:
    """Write ``manifest`` as CSV or JSONL (by suffix), paths relative to the file's folder.

    The file is written to a temporary name and renamed, so a crash never leaves
    half a manifest; its folder is made where it does not exist.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.absolute()
    rows = [_row_from_clip(c, root) for c in manifest.clips]
    targets = (["tags"] if manifest.tags else []) + list(manifest.value_names)
    targets += [ANNOTATIONS_COLUMN] if any(c.annotations for c in manifest.clips) else []
    columns = [c for c in COLUMNS if c != "label" or manifest.classes] + targets + manifest.extra_columns
    given: dict[str, list[Any]] = {
        "classes": list(manifest.classes),
        "tags": list(manifest.tags),
        "scale": list(manifest.scale or ()),
    }
    headers = {name: value for name, value in given.items() if value}
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() in (".jsonl", ".json"):
            f.write(json.dumps(headers, ensure_ascii=False) + "\n")
            for row in rows:
                f.write(json.dumps({k: row.get(k) for k in columns if k in row}, ensure_ascii=False) + "\n")
        else:
            for name, value in headers.items():
                f.write(f"# {name}: {json.dumps(value, ensure_ascii=False)}\n")
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    os.replace(tmp, path)
    return path


def _read_csv(text: str, path: Path, target: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    headers, header, rows = read_csv_table(text, path)
    _require_columns(header, path, target)
    return headers, rows


def read_csv_table(text: str, path: Path) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """A CSV's header lines (``# classes:``, ``# tags:``, ``# scale:``), its column names and its rows."""
    lines = text.splitlines(keepends=True)
    headers: dict[str, Any] = {}
    while lines and (name := _header_name(lines[0])) is not None:
        headers[name] = parse_header_list(lines[0].split(":", 1)[1], name=name, where=str(path))
        lines = lines[1:]
    try:
        header, rows = _csv_rows(lines, path)
    except csv.Error as err:
        raise ManifestError(f"{path}: not a CSV table ({err}); save it as plain comma-separated text") from None
    return _checked_headers(headers, path), header, rows


def _csv_rows(lines: list[str], path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    reader = csv.DictReader(lines)
    header = list(reader.fieldnames or [])
    rows: list[dict[str, Any]] = []
    for n, row in enumerate(reader, start=1):
        if None in row:
            raise ManifestError(
                f"{path} row {n}: {len(header) + len(row[None])} values for {len(header)} columns;"
                " quote values that contain commas"
            )
        rows.append({k: v for k, v in row.items()})
    return header, rows


def _header_name(line: str) -> str | None:
    """``classes`` for a line ``# classes: [...]``, and so for each of ``HEADERS``; None for any other line."""
    name = line[1:].split(":", 1)[0].strip() if line.startswith("#") and ":" in line else None
    return name if name in HEADERS else None


def _read_jsonl(text: str, path: Path, target: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    headers: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path} line {n}: not JSON ({err.msg}); write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{path} line {n}: {line[:40]!r} is not a JSON object; write one object per line")
        if not rows and not headers and "clip_id" not in obj and set(obj) & set(HEADERS):
            headers = {name: obj[name] for name in HEADERS if name in obj}
            continue
        rows.append(obj)
    if rows:
        _require_columns(list(dict.fromkeys(k for r in rows for k in r)), path, target)
    return _checked_headers(headers, path), rows


def _checked_headers(headers: dict[str, Any], path: Path) -> dict[str, Any]:
    classes = headers.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes)
    ):
        raise ManifestError(
            f'{path}: the classes header {classes!r} is not a JSON list of class names; write it as ["Exciting", "Fear", ...]'
        )
    return headers


def _require_columns(header: Iterable[str], path: Path, target: bool = True) -> None:
    header = list(header)
    if "clip_id" not in header:
        raise ManifestError(
            f"{path}: column 'clip_id' is missing (columns are {header}); add it, the manifest needs {list(COLUMNS)}"
        )
    if target and not any(name in header for name in ("label", *TARGET_COLUMNS)):
        raise ManifestError(
            f"{path}: no target column (columns are {header}); add 'label' (one class per clip), 'tags' or 'valence'/'arousal'"
        )
    if not any(m in header for m in MEDIA_COLUMNS):
        raise ManifestError(f"{path}: neither a 'video' nor an 'audio' column (columns are {header}); add them")


def _clip_from_row(row: Mapping[str, Any], n: int, root: Path) -> Clip:
    clip_id = _text(row.get("clip_id"))
    where = f"row {n} (clip {clip_id!r})"
    video, audio = (_text(row.get(column)) for column in MEDIA_COLUMNS)
    return Clip(
        clip_id=clip_id,
        label=_text(row.get("label")),
        group=_text(row.get("group")),
        fold=_parse_fold(row.get("fold"), where),
        extra={k: v for k, v in row.items() if k not in (*COLUMNS, *TARGET_COLUMNS, ANNOTATIONS_COLUMN)},
        tags=parse_tags(row.get("tags")),
        video=Path(os.path.normpath(root / video)) if video else None,
        audio=Path(os.path.normpath(root / audio)) if audio else None,
        valence=parse_value(row.get("valence"), column="valence", where=where),
        arousal=parse_value(row.get("arousal"), column="arousal", where=where),
        annotations=Path(os.path.normpath(root / notes)) if (notes := _text(row.get(ANNOTATIONS_COLUMN))) else None,
    )


def _parse_fold(value: Any, where: str) -> int | None:
    text = _text(value)
    if not text:
        return None
    try:
        fold = int(text)
    except ValueError:
        fold = -1
    if fold < 0 or str(fold) != text:
        raise ManifestError(f"{where}: column 'fold' value {text!r} is not a fold number 0..k-1; {FOLDS_FIX}")
    return fold


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _row_from_clip(clip: Clip, root: Path) -> dict[str, Any]:
    row: dict[str, Any] = {
        "clip_id": clip.clip_id,
        "label": clip.label,
        "video": _relative(clip.video, root),
        "audio": _relative(clip.audio, root),
        "group": clip.group,
        "fold": clip.fold,
        "tags": ";".join(clip.tags),
        "valence": clip.valence,
        "arousal": clip.arousal,
        ANNOTATIONS_COLUMN: _relative(clip.annotations, root),
    }
    row.update(clip.extra)
    return row


def _relative(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return path.as_posix()
