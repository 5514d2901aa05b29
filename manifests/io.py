"""The manifest on disk: reading and writing it as CSV or JSONL, its header lines or object holding the classes, the
tag vocabulary and the scale (``manifests.schema`` describes the rows)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mvemo.manifests.errors import ManifestError, utf8_text
from mvemo.manifests.schema import COLUMNS, FOLDS_FIX, HEADERS, MEDIA_COLUMNS, Clip, Manifest
from mvemo.manifests.targets import (
    ANNOTATIONS_COLUMN,
    TARGET_COLUMNS,
    parse_header_list,
    parse_scale,
    parse_tags,
    parse_value,
    parse_vocabulary,
)


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
        raise ManifestError(
            f"manifest {str(path)!r} does not exist; build one with `mvemo manifest scan ROOT -o {path}`"
        )
    text = utf8_text(path, f"manifest {str(path)!r}")
    reader = _read_jsonl if path.suffix.lower() in (".jsonl", ".json") else _read_csv
    headers, rows = reader(text, path, not unlabelled)
    root = path.parent.absolute()
    clips = [_clip_from_row(row, n, root) for n, row in enumerate(rows, start=1)]
    if not clips:
        raise ManifestError(f"manifest {str(path)!r} has no clips; add rows or build it with `mvemo manifest scan`")
    where = f"manifest {str(path)!r}"
    classes = headers.get("classes") or sorted({c.label for c in clips} - {""})
    tags = (
        parse_vocabulary(headers["tags"], where=where)
        if "tags" in headers
        else sorted({t for c in clips for t in c.tags})
    )
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
            f"{path}: the classes header {classes!r} is not a JSON list of class names;"
            ' write it as ["Exciting", "Fear", ...]'
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
            f"{path}: no target column (columns are {header});"
            " add 'label' (one class per clip), 'tags' or 'valence'/'arousal'"
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
