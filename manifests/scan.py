"""Build a manifest from a class-per-folder tree: ``ROOT/<class>/**/<file>``."""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from mvemo.manifests.errors import ManifestError
from mvemo.manifests.schema import Clip, Manifest

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
    try:
        marker = re.compile(group_regex)
    except re.error as err:
        raise ManifestError(f"--group-regex {group_regex!r} does not compile ({err}); fix the regular expression") from None
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
