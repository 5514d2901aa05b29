"""Build a manifest from a class-per-folder tree: ``ROOT/<class>/**/<file>``."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from mvemo.manifests.errors import ManifestError, utf8_text
from mvemo.manifests.io import read_csv_table
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.targets import (
    ANNOTATIONS_COLUMN,
    TARGET_COLUMNS,
    parse_scale,
    parse_tags,
    parse_value,
    parse_vocabulary,
)

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi"})
AUDIO_EXTENSIONS = frozenset({".mp3", ".m4a", ".wav", ".flac", ".ogg", ".opus"})
# A trailing segment marker such as "-7-of-10": datasets cut one video into several clips.
DEFAULT_GROUP_REGEX = r"[-_ ]\d+[-_ ]of[-_ ]\d+$"


def scan_tree(root: str | os.PathLike[str], *, group_regex: str = DEFAULT_GROUP_REGEX) -> Manifest:
    """A manifest of every media file under ``root/<class>/``, classes sorted by name.

    A video file gives both modalities and an audio file audio only; a video and
    an audio file with the same path stem make one clip. ``clip_id`` is the path
    under ``root`` (file names repeat across class folders); ``group`` is that
    path without its extension and with ``group_regex`` removed from its end, so
    segments of one video share a group and so a fold.

    Raises
    ------
    ManifestError
        When ``root`` is not a folder, holds no media, or ``group_regex`` does not compile.
    """
    root = Path(os.path.normpath(Path(root).absolute()))
    if not root.is_dir():
        raise ManifestError(f"scan root {str(root)!r} is not a folder; give the folder that holds one folder per class")
    marker = _compile(group_regex)
    clips: list[Clip] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        by_stem: dict[PurePosixPath, list[Path]] = defaultdict(list)
        for path in sorted(_media_files(class_dir)):
            by_stem[PurePosixPath(path.relative_to(root).as_posix()).with_suffix("")].append(path)
        for stem, paths in by_stem.items():
            group = marker.sub("", stem.as_posix())
            clips.extend(_clips_of_stem(class_dir.name, paths, root, group))
    stray = [p.name for p in root.iterdir() if p.is_file() and _kind(p)]
    if stray:
        log.warning("scan: %d media files directly under %s have no class folder and were left out", len(stray), root)
    if not clips:
        raise ManifestError(
            f"no media files under {str(root)!r}/<class>/ (extensions {sorted(VIDEO_EXTENSIONS | AUDIO_EXTENSIONS)});"
            " put each class's files in a folder named after the class"
        )
    classes = tuple(dict.fromkeys(c.label for c in clips))
    return Manifest(classes, tuple(clips))


def scan_labelled(
    root: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    key: str = "clip_id",
    group_regex: str = DEFAULT_GROUP_REGEX,
    scale: tuple[float, float] | None = None,
) -> Manifest:
    """A manifest of every media file under ``root`` (any layout), its targets taken from a side table.

    Files pair as in ``scan_tree`` (a video and an audio file of one stem make one clip). ``labels`` is a CSV
    whose column ``key`` holds each clip's id (the path under ``root``, as ``scan_tree`` writes it, or the file's
    stem where no other folder has that stem) and whose columns ``label``, ``tags``, ``valence``, ``arousal`` and
    ``annotations`` (a path relative to ``labels``' folder), those it has, hold the targets; a ``group`` column
    replaces the group drawn from the path, and any other column is kept as an extra (e.g. ``artist``, for
    ``mvemo manifest folds --group-by artist``). Its header lines may state the classes, the tag vocabulary and the
    scale as a manifest's do (``# tags: [...]``, ``# scale: [1, 9]``); ``scale`` overrides its ``# scale:`` line.

    Raises
    ------
    ManifestError
        Naming the clip: a media file without a row, two rows of one id, an unknown tag, a non-finite value, or a
        value column that some clips leave empty. Rows without a media file are left out with a warning.
    """
    root = Path(os.path.normpath(Path(root).absolute()))
    labels = Path(labels)
    if not root.is_dir():
        raise ManifestError(f"scan root {str(root)!r} is not a folder; give the folder that holds the media files")
    if not labels.is_file():
        raise ManifestError(f"--labels {str(labels)!r} does not exist; give the CSV of each clip's targets")
    headers, columns, rows = read_csv_table(utf8_text(labels, f"--labels {str(labels)!r}"), labels)
    if key not in columns:
        raise ManifestError(
            f"--labels {str(labels)!r} has no column {key!r} (columns are {columns}); name the id column with --key"
        )
    marker = _compile(group_regex)
    by_id: dict[str, tuple[int, dict[str, Any]]] = {}
    for n, row in enumerate(rows, start=1):
        value = _text(row[key])
        if value in by_id:
            raise ManifestError(
                f"--labels {str(labels)!r} rows {by_id[value][0]} and {n} both have {key} {value!r};"
                " give each clip one row"
            )
        by_id[value] = (n, row)
    by_stem: dict[PurePosixPath, list[Path]] = defaultdict(list)
    for path in sorted(_media_files(root)):
        by_stem[PurePosixPath(path.relative_to(root).as_posix()).with_suffix("")].append(path)
    stems = Counter(stem.name for stem in by_stem)  # a stem that names files in two folders identifies neither
    clips, matched = [], set()
    for stem, paths in by_stem.items():
        for clip in _clips_of_stem("", paths, root, marker.sub("", stem.as_posix())):
            n, row = by_id.get(clip.clip_id) or (by_id.get(stem.name) if stems[stem.name] == 1 else None) or (0, {})
            if not n:
                twice = (
                    f" (its stem {stem.name!r} names files in {stems[stem.name]} folders)"
                    if stems[stem.name] > 1
                    else ""
                )
                raise ManifestError(
                    f"clip {clip.clip_id!r}: no row of --labels {str(labels)!r} has {key} {clip.clip_id!r} or"
                    f" {stem.name!r}{twice}; add its row, or move the file out of the scanned folder"
                )
            matched.add(n)
            clips.append(
                _labelled(
                    clip,
                    row,
                    where=f"--labels {str(labels)!r} row {n} (clip {clip.clip_id!r})",
                    key=key,
                    folder=labels.parent,
                )
            )
    unused = len(rows) - len(matched)
    if unused:
        log.warning("scan: %d rows of %s match no media file under %s and were left out", unused, labels, root)
    if not clips:
        raise ManifestError(
            f"no media files under {str(root)!r} (extensions {sorted(VIDEO_EXTENSIONS | AUDIO_EXTENSIONS)})"
        )
    where = f"--labels {str(labels)!r}"
    classes = headers.get("classes") or sorted({c.label for c in clips} - {""})
    tags = (
        parse_vocabulary(headers["tags"], where=where)
        if "tags" in headers
        else sorted({t for c in clips for t in c.tags})
    )
    if scale is None and "scale" in headers:
        scale = parse_scale(headers["scale"], where=where)
    return Manifest(tuple(classes), tuple(clips), tags=tuple(tags), scale=scale)


def _labelled(clip: Clip, row: dict[str, Any], *, where: str, key: str, folder: Path) -> Clip:
    """``clip`` with the targets of its row of a side table (annotation paths relative to the table's ``folder``),
    its ``group`` where the row gives one, and the row's other columns as extras."""
    notes = _text(row.get(ANNOTATIONS_COLUMN))
    return replace(
        clip,
        label=_text(row.get("label")),
        group=_text(row.get("group")) or clip.group,
        tags=parse_tags(row.get("tags")),
        valence=parse_value(row.get("valence"), column="valence", where=where),
        arousal=parse_value(row.get("arousal"), column="arousal", where=where),
        annotations=Path(os.path.normpath(folder.absolute() / notes)) if notes else None,
        extra={k: v for k, v in row.items() if k not in (key, "label", "group", *TARGET_COLUMNS, ANNOTATIONS_COLUMN)},
    )


def _compile(group_regex: str) -> re.Pattern[str]:
    try:
        return re.compile(group_regex)
    except re.error as err:
        raise ManifestError(
            f"--group-regex {group_regex!r} does not compile ({err}); fix the regular expression"
        ) from None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _media_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files.extend(Path(dirpath, f) for f in filenames if not f.startswith(".") and _kind(Path(f)))
    return files


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    return None


def _clips_of_stem(label: str, paths: list[Path], root: Path, group: str) -> list[Clip]:
    videos = [p for p in paths if _kind(p) == "video"]
    audios = [p for p in paths if _kind(p) == "audio"]
    if len(videos) == 1 and len(audios) == 1:
        pairs: list[tuple[Path, Path | None, Path]] = [(videos[0], videos[0], audios[0])]
    else:
        pairs = [(p, p if p in videos else None, p) for p in paths]
    return [
        Clip(clip_id=key.relative_to(root).as_posix(), label=label, video=video, audio=audio, group=group)
        for key, video, audio in pairs
    ]
