"""Build a manifest from a class-per-folder tree: ``ROOT/<class>/**/<file>``."""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from mvemo.manifests.errors import ManifestError
from mvemo.manifests.schema import Clip, Manifest, read_csv_table
from mvemo.manifests.targets import parse_scale, parse_tags, parse_value, parse_vocabulary

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi"})
AUDIO_EXTENSIONS = frozenset({".mp3", ".m4a", ".wav", ".flac", ".ogg"})
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

    ``labels`` is a CSV whose column ``key`` holds each clip's id (the path under ``root``, as ``scan_tree``
    writes it, or the file's stem) and whose columns ``label``, ``tags``, ``valence`` and ``arousal``, those it
    has, hold the targets. Its header lines may state the classes, the tag vocabulary and the scale as a
    manifest's do (``# tags: [...]``, ``# scale: [1, 9]``); ``scale`` overrides its ``# scale:`` line.

    Raises
    ------
    ManifestError
        Naming the clip: a media file without a row, an unknown tag, a non-finite value, or a value column that
        some clips leave empty. Rows without a media file are left out with a warning.
    """
    root = Path(os.path.normpath(Path(root).absolute()))
    labels = Path(labels)
    if not root.is_dir():
        raise ManifestError(f"scan root {str(root)!r} is not a folder; give the folder that holds the media files")
    if not labels.is_file():
        raise ManifestError(f"--labels {str(labels)!r} does not exist; give the CSV of each clip's targets")
    headers, columns, rows = read_csv_table(labels.read_text(encoding="utf-8-sig"), labels)
    if key not in columns:
        raise ManifestError(
            f"--labels {str(labels)!r} has no column {key!r} (columns are {columns}); name the id column with --key"
        )
    marker = _compile(group_regex)
    by_id = {_text(row[key]): (n, row) for n, row in enumerate(rows, start=1)}
    clips, matched = [], set()
    for path in sorted(_media_files(root)):
        clip_id = path.relative_to(root).as_posix()
        stem = PurePosixPath(clip_id).with_suffix("")
        n, row = by_id.get(clip_id) or by_id.get(stem.name) or (0, None)
        if row is None:
            raise ManifestError(
                f"clip {clip_id!r}: no row of --labels {str(labels)!r} has {key} {clip_id!r} or {stem.name!r};"
                " add its row, or move the file out of the scanned folder"
            )
        matched.add(n)
        where = f"--labels {str(labels)!r} row {n} (clip {clip_id!r})"
        clips.append(
            Clip(
                clip_id,
                _text(row.get("label")),
                path if _kind(path) == "video" else None,
                path,
                marker.sub("", stem.as_posix()),
                tags=parse_tags(row.get("tags")),
                valence=parse_value(row.get("valence"), column="valence", where=where),
                arousal=parse_value(row.get("arousal"), column="arousal", where=where),
            )
        )
    unused = len(rows) - len(matched)
    if unused:
        log.warning("scan: %d rows of %s match no media file under %s and were left out", unused, labels, root)
    if not clips:
        raise ManifestError(f"no media files under {str(root)!r} (extensions {sorted(VIDEO_EXTENSIONS | AUDIO_EXTENSIONS)})")
    where = f"--labels {str(labels)!r}"
    classes = headers.get("classes") or sorted({c.label for c in clips} - {""})
    tags = parse_vocabulary(headers["tags"], where=where) if "tags" in headers else sorted({t for c in clips for t in c.tags})
    if scale is None and "scale" in headers:
        scale = parse_scale(headers["scale"], where=where)
    return Manifest(tuple(classes), tuple(clips), tags=tuple(tags), scale=scale)


def _compile(group_regex: str) -> re.Pattern[str]:
    try:
        return re.compile(group_regex)
    except re.error as err:
        raise ManifestError(f"--group-regex {group_regex!r} does not compile ({err}); fix the regular expression") from None


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
