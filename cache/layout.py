"""Where things live inside a cache directory, and how a feature set is described.

::

    CACHE/clips.h5                      attrs: schema_version, mvemo_version, classes (JSON)
                                        clip_id, label, group, fold, video, audio, media_hash, media_stat, removed
    CACHE/targets.h5                    tags and valence/arousal values by clip-table row (``cache.targets``)
    CACHE/sets/<name>/rows-<a>-<b>.h5   one segment of a set: rows a..b-1 of the clip table
                                        data (b-a, *row_shape), contiguous; status, media_key, checksum,
                                        valid_length per row; attrs: fingerprint, record, config, extractor, ...
    CACHE/sets/<name>/errors.jsonl      why rows failed: {"clip_id", "reason"} per line, the last one counts
    CACHE/windows/                      with ``[clip] windows``: the cache of every clip's windows

``<name>`` is e.g. ``mel``, ``lld``, ``frames224``, ``emb/i3d/fold0`` or ``emb/i3d/all``. A set
exists once its first segment (rows from 0) exists; clips appended later get a new segment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.fingerprint import fingerprint, fingerprint_record
from mvemo.manifests.errors import CacheError, ConfigError

CLIPS_FILE = "clips.h5"
TARGETS_FILE = "targets.h5"  # the clips' tags and valence/arousal values (``cache.targets``)
SETS = "sets"
# A cache of the windows of whole files (``[clip] windows``), a cache folder of its own inside the cache.
WINDOWS_FOLDER = "windows"
TEMPORARY = re.compile(r"^\..*\.tmp$")  # the names of files being written (``h5file.temporary_name``)
ERRORS_FILE = "errors.jsonl"
# The key of a set's config that marks it pooled over windows (``extract.windows.cache``): length, hop, pooling,
# the window set's fingerprint and, for an embedding, its inputs' configs.
POOLED_KEY = "windows"
# the config key of a set imported with `mvemo cache import` (``cache.imported``): its file, sha256 and key column
IMPORTED = "imported"
# The sets read from a clip's sampled frames: stage one's frames for the video nets, and the performers' faces. A clip
# without video has none of them (ABSENT); an input that reads one, or a net's embedding of one, is of the video
# modality.
VIDEO_FEATURES = ("frames224", "frames112")
FACE_FEATURES = ("faces", "face_frames")
VIDEO_SETS = (*VIDEO_FEATURES, *FACE_FEATURES)
# ABSENT: the manifest gives the clip no such modality (an audio-only clip's video frames).
TODO, DONE, FAILED, ABSENT = 0, 1, 2, 3
HASH_DTYPE = "S64"
ERROR_CHARS = 240
_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_+]+(\.[a-z0-9_]+)?)*$")  # emb/musicnn.taggram/all: a net variant, one dot


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature set holds and what decides its values.

    Parameters
    ----------
    name : str
        Feature-set name, e.g. ``mel`` or ``emb/i3d/fold0``.
    row_shape : tuple of int
        Shape of one clip's array. With ``variable_length`` the first axis is the
        maximum length and each row stores its valid length.
    dtype : str
        numpy dtype of the stored values.
    extractor, extractor_version : str
        Name and version of the code that computes the rows.
    config : mapping
        The extractor's full config (JSON-serializable).
    weights_sha256 : str
        sha256 of the weights file where a net is involved.
    weights_file : str
        That file's name, for reports ("" for none: a random initialisation, or no net); the sha256 alone
        goes into the fingerprint.
    columns : tuple of str
        Names of the last axis's columns, where they have names (LLDs).
    variable_length : bool
        Rows shorter than ``row_shape[0]`` are zero-padded and their valid length stored.
    """

    name: str
    row_shape: tuple[int, ...]
    dtype: str
    extractor: str
    extractor_version: str
    config: Mapping[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    columns: tuple[str, ...] = ()
    variable_length: bool = False
    weights_file: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"feature set name {self.name!r}: use lowercase words joined by '/', e.g. 'emb/i3d/fold0'"
            )
        object.__setattr__(self, "row_shape", tuple(int(n) for n in self.row_shape))
        if any(n < 1 for n in self.row_shape):
            raise ConfigError(f"feature set {self.name!r}: row_shape {self.row_shape} must be positive")
        np.dtype(self.dtype)
        if self.columns and len(self.columns) != self.row_shape[-1]:
            raise ConfigError(
                f"feature set {self.name!r}: {len(self.columns)} column names for a last axis of {self.row_shape[-1]}"
            )
        if self.variable_length and not self.row_shape:
            raise ConfigError(f"feature set {self.name!r}: a variable length needs a row axis")

    @property
    def record(self) -> dict[str, Any]:
        """What the fingerprint covers: the extractor's record plus the stored layout."""
        record = fingerprint_record(
            extractor=self.extractor,
            extractor_version=self.extractor_version,
            config=self.config,
            weights_sha256=self.weights_sha256,
        )
        record["layout"] = {
            "row_shape": list(self.row_shape),
            "dtype": np.dtype(self.dtype).str,
            "columns": list(self.columns),
            "variable_length": self.variable_length,
        }
        return record

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.record)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape)) * np.dtype(self.dtype).itemsize


def modality(set_name: str) -> str:
    """``video`` for a set read from a clip's frames (``VIDEO_SETS``), else ``audio``."""
    return "video" if set_name in VIDEO_SETS else "audio"


def set_dir(root: Path, name: str) -> Path:
    """The folder of a feature set's segments."""
    return root / SETS / name


def media_keys(hashes: np.ndarray) -> np.ndarray:
    """The first 64 bits of each media hash (hex bytes; b"" is 0): what a set's rows record of their media."""
    return np.array([int(h[:16] or b"0", 16) for h in hashes], dtype=np.uint64)


def single_file_error(root: Path) -> CacheError:
    """What to do with a cache path that names a file: the single-file layout of earlier versions."""
    return CacheError(
        f"cache {str(root)!r} is one HDF5 file, the layout of earlier mvemo versions"
        " (a cache is now a folder of files);"
        f" run `mvemo cache migrate {root}` once to convert it in place, or give --cache a new folder"
    )


def foreign_entries(path: Path) -> list[str]:
    """What a folder holds besides a cache's own entries (and files being written): a folder a cache must not go to."""
    if not path.is_dir():
        return []
    # the window cache keeps its lock and its nets' checkpoints beside it, as any cache does: inside this one
    own = {CLIPS_FILE, TARGETS_FILE, SETS, WINDOWS_FOLDER, f"{WINDOWS_FOLDER}.lock", f"{WINDOWS_FOLDER}.checkpoints"}
    return sorted(p.name for p in path.iterdir() if p.name not in own and not TEMPORARY.match(p.name))


def require_cache_folder(path: Path) -> None:
    """Refuse to write a cache into a folder that holds other things and no cache (a source folder, a data folder).

    Raises
    ------
    CacheError
        Naming the folder, a few of what it holds, and the fix.
    """
    if (path / CLIPS_FILE).is_file():
        return
    foreign = foreign_entries(path)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise CacheError(
            f"{str(path)!r} is a folder that holds other things ({shown}) and no mvemo cache; a cache is created only"
            f" in a new or empty folder: give --cache a new folder, e.g. {str(path.with_name(path.name + '-cache'))!r}"
        )


def inside(folder: str | os.PathLike[str], relative: str) -> Path | None:
    """``folder / relative`` resolved, or None where it leaves ``folder`` (an absolute path, ``..``, a link out):
    a path a cache or a saved model records is read only inside the folder that holds it."""
    base = Path(folder).resolve()
    path = (base / relative).resolve()
    return path if path.is_relative_to(base) else None
