"""Upkeep of a cache folder: converting a single-file cache of earlier versions, and removing sets no longer used."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.h5file import CLIP_COLUMNS, fsync_dir, open_h5, write_clip_table
from mvemo.cache.layout import CLIPS_FILE, DONE, ERRORS_FILE, TODO, media_keys, set_dir, single_file_error
from mvemo.cache.lock import CacheLock
from mvemo.cache.sets import chain, create_segment, remove_set, set_names
from mvemo.cache.store import remove_temporary_files
from mvemo.manifests.errors import CacheError

BACKUP_SUFFIX = ".single-file.h5"
COPY_BLOCK_BYTES = 256 * 2**20
# The attributes of a set in the single-file layout that a segment keeps as they were (so its fingerprint holds).
SET_ATTRS = (
    "fingerprint",
    "record",
    "config",
    "extractor",
    "extractor_version",
    "weights_sha256",
    "weights_file",
    "schema_version",
    "columns",
    "variable_length",
)


def migrate(path: str | os.PathLike[str]) -> Path:
    """Convert the single-file cache ``path`` into a cache folder of the same name; returns where the old file went.

    The folder is built beside it (``.NAME.migrating``) and takes the name only when
    complete; the old file is kept as ``NAME.single-file.h5``, to delete once the new
    cache is checked. A rerun after a kill starts the conversion over.

    Raises
    ------
    CacheError
        When ``path`` is no single-file mvemo cache (already a folder, or not a cache).
    """
    path = Path(path)
    if (path / CLIPS_FILE).is_file():
        raise CacheError(f"{str(path)!r} is a cache folder already: nothing to migrate")
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    source = path if path.is_file() else backup
    if not source.is_file():
        raise CacheError(f"{str(path)!r} is not a single-file cache: nothing to migrate")
    work = path.with_name(f".{path.name}.migrating")
    with CacheLock(path):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        with open_h5(source, "r") as old:
            if "clips" not in old:
                raise CacheError(f"{str(source)!r} is an HDF5 file but not an mvemo cache (no clip table)")
            _copy_clip_table(old, work)
            for name in _old_set_names(old):
                _copy_set(old[f"features/{name}"], work, name, old["clips/clip_id"].asstr()[:].tolist())
        if path.is_file():
            os.replace(path, backup)
        os.replace(work, path)
        fsync_dir(path.parent)
    return backup


def _old_set_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    if "features" in f:
        f["features"].visititems(lambda name, obj: names.append(name) if "fingerprint" in obj.attrs else None)
    return sorted(names)


def _copy_clip_table(old: h5py.File, root: Path) -> None:
    clips = old["clips"]
    n = clips["clip_id"].shape[0]
    columns = {key: np.zeros(n, dtype=np.uint8) if key == "removed" else clips[key][:] for key in CLIP_COLUMNS}
    for key in ("clip_id", "group", "video", "audio"):
        columns[key] = clips[key].asstr()[:]
    write_clip_table(root, columns, tuple(json.loads(old.attrs["classes"])))


def _copy_set(group: h5py.Group, root: Path, name: str, clip_ids: list[str]) -> None:
    """One segment holding every row of an old set, its values, checksums and reasons copied."""
    data = group["data"]
    n = data.shape[0]
    attrs = {key: group.attrs[key] for key in SET_ATTRS if key in group.attrs}
    segment = create_segment(root, name, attrs, data.shape[1:], data.dtype, 0, n)
    status = group["status"][:]
    with open_h5(segment.path, "r+") as f:
        step = max(1, COPY_BLOCK_BYTES // max(1, data.dtype.itemsize * int(np.prod(data.shape[1:]))))
        for start in range(0, n, step):
            block = data[start : start + step]
            f["data"].write_direct(np.ascontiguousarray(block), dest_sel=np.s_[start : start + len(block)])
        f["checksum"][:] = group["checksum"][:]
        f["valid_length"][:] = group["valid_length"][:]
        f["media_key"][:] = media_keys(group["media_hash"][:])
        f["status"][:] = status
    errors = group["error"][:]
    lines = [
        json.dumps({"clip_id": clip_ids[row], "reason": bytes(errors[row]).decode("utf-8", "replace")})
        for row in np.flatnonzero((status != TODO) & (status != DONE))
    ]
    if lines:
        (set_dir(root, name) / ERRORS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def collect_garbage(
    path: str | os.PathLike[str], wanted: Callable[[str], bool], *, dry_run: bool = False, lock: CacheLock | None = None
) -> dict[str, Any]:
    """Remove the sets ``wanted`` refuses, and the files killed writers left; report them and the bytes freed.

    Takes the writer lock unless ``lock`` (held by the caller) is given.

    Returns
    -------
    dict
        ``removed``: {set name: bytes}; ``leftovers``: {file: bytes}; ``freed_bytes``: their sum
        (what was or, with ``dry_run``, would be freed).
    """
    root = Path(path)
    if root.is_file():
        raise single_file_error(root)
    if not root.is_dir():
        raise CacheError(f"cache {str(root)!r} is not a cache folder; give the folder `mvemo extract --cache` wrote")
    with contextlib.nullcontext() if lock else CacheLock(root):
        unwanted = [name for name in set_names(root) if not wanted(name)]
        removed = {name: _set_bytes(root, name) for name in unwanted}
        strays = [
            s.path for name in set_names(root, with_strays=True) if name not in removed for s in chain(root, name)[1]
        ]
        leftovers = {str(p): p.stat().st_size for p in [*strays, *root.rglob(".*.tmp")]}
        if not dry_run:
            for name in unwanted:
                remove_set(root, name)
            for stray in strays:
                stray.unlink()
            remove_temporary_files(root)
            _remove_empty_folders(root / "sets")
    return {"removed": removed, "leftovers": leftovers, "freed_bytes": sum(removed.values()) + sum(leftovers.values())}


def _set_bytes(root: Path, name: str) -> int:
    linked, stray = chain(root, name)
    errors = set_dir(root, name) / ERRORS_FILE
    return sum(s.path.stat().st_size for s in [*linked, *stray]) + (errors.stat().st_size if errors.exists() else 0)


def _remove_empty_folders(base: Path) -> None:
    for folder in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
