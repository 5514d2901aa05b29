"""The HDF5 files under a cache: how they are opened and written whole, and the clip table.

Every file is written under a temporary name, flushed to disk and renamed into place, so a
file a reader or writer finds is complete. Its datasets are allocated whole when created,
so a later row write changes raw bytes only, never HDF5 metadata (``cache.store`` explains
why that makes the writer crash-safe).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.fingerprint import SCHEMA_VERSION, canonical_json
from mvemo.cache.layout import CLIPS_FILE, HASH_DTYPE
from mvemo.manifests.errors import CacheError
from mvemo.manifests.schema import Clip, Manifest


def mvemo_version() -> str:
    """The installed mvemo's version, stamped into each cache and report."""
    try:
        return version("mvemo")
    except PackageNotFoundError:
        return "unknown"


# Every file keeps a user block ahead of its HDF5 bytes: a sealed file's sha256 lies there (``write_whole``).
USERBLOCK = 512
SEAL = b"mvemo-sha256:"
# What a file mvemo wrote but cannot read any more needs: said wherever one is found.
DAMAGED = (
    "the file was cut short, overwritten or edited; restore it, or remove it and run `mvemo extract` again to compute"
    " it anew (`mvemo cache verify CACHE` lists every such file)"
)


class DamagedFile(CacheError):
    """A file mvemo wrote that it cannot read any more: ``path``, the ``problem`` found, and what to do
    (``DAMAGED``)."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{os.fsdecode(path)}: {problem}; {DAMAGED}")


def open_h5(path: str | os.PathLike[str], mode: str = "r") -> h5py.File:
    """Open (``r``, ``r+``) or create (``w``) a cache file without HDF5's caches and file locking.

    No data sieve and no chunk cache: a write of a 512-byte row through HDF5's 64 KiB
    sieve wrote the whole 64 KiB (128 times the row; ``add_set_bytes_ratio`` of
    ``mvemo bench cache``), and bulk reads go straight into the caller's array. No file
    locking: row writes change no metadata, so reading during a write is safe, and
    writers exclude each other with ``CacheLock``.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_sieve_buf_size(0)
    fapl.set_cache(0, 0, 0, 0.75)
    fapl.set_file_locking(False, True)
    # The oldest format that holds the layout: superblock v3 (libver "latest") keeps a
    # "file open for write" flag that a killed writer leaves set, and h5py cannot clear it.
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    name = os.fsencode(path)
    if mode == "w":
        fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        fcpl.set_userblock(USERBLOCK)
        fid = h5py.h5f.create(name, h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl)
    else:
        check_seal(Path(os.fsdecode(path)))
        try:
            fid = h5py.h5f.open(name, {"r": h5py.h5f.ACC_RDONLY, "r+": h5py.h5f.ACC_RDWR}[mode], fapl=fapl)
        except OSError as err:
            if err.errno is not None:  # the system's error (missing, no permission, I/O): not the file's content
                raise
            raise DamagedFile(path, f"not a readable HDF5 file ({_reason(err)})") from None
    return h5py.File(fid)


def checked(f: h5py.File, key: str, dtype: Any = None, length: int | None = None) -> h5py.Dataset:
    """``f[key]``, checked to be the array mvemo wrote there: a dataset of ``dtype`` (any number or boolean dtype
    where None) and of ``length`` rows where given.

    Raises
    ------
    CacheError
        Naming the file, the key and what it holds instead (a file damaged or edited by hand).
    """
    where = f"{f.filename}: {key!r}"
    try:
        item = f.get(key)
    except (KeyError, OSError, ValueError) as err:
        raise CacheError(f"{where} cannot be read ({_reason(err)}); {DAMAGED}") from None
    if not isinstance(item, h5py.Dataset):
        raise CacheError(f"{where} is {'missing' if item is None else 'a group'} where an array belongs; {DAMAGED}")
    wanted = "a number or boolean" if dtype is None else str(np.dtype(dtype))
    if (item.dtype.kind not in "biuf") if dtype is None else (item.dtype != np.dtype(dtype)):
        raise CacheError(f"{where} holds {item.dtype} where {wanted} belongs; {DAMAGED}")
    if length is not None and (not item.shape or item.shape[0] != length):
        raise CacheError(f"{where} holds {item.shape} rows where {length} belong; {DAMAGED}")
    return item


def _reason(err: BaseException) -> str:
    """h5py's message without its wrapper: "truncated file: eof = ...", "message type not found"."""
    text = str(err)
    return text[text.index("(") + 1 : text.rindex(")")] if "(" in text and text.endswith(")") else text


def row_checksum(row: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(row).view(np.uint8).data)


def fit_row(
    values: np.ndarray, row_shape: tuple[int, ...], dtype: np.dtype, name: str, variable: bool
) -> tuple[np.ndarray, int]:
    if variable and values.shape[1:] == row_shape[1:]:
        length = min(values.shape[0], row_shape[0])
        padded = np.zeros(row_shape, dtype=dtype)
        padded[:length] = values[:length]
        return padded, length
    if values.shape != row_shape:
        raise CacheError(f"feature set {name!r}: a row of shape {values.shape} for a set of rows {row_shape}")
    return values.astype(dtype, copy=False), row_shape[0] if row_shape else 1


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place; a writer removes those a kill left."""
    return path.with_name(f".{path.name}.tmp")


def write_whole(path: Path, fill: Callable[[h5py.File], None], *, sealed: bool = False) -> None:
    """Create the HDF5 file ``path`` by ``fill``, flushed to disk before it takes its name: never half there.

    ``sealed``, for a file never written again (the clip table, the targets): the sha256 of its HDF5 bytes goes
    into its user block (the bytes HDF5 leaves to its user, ahead of the file), and every open checks it before
    HDF5 reads the file (``check_seal``)."""
    tmp = temporary_name(path)
    tmp.unlink(missing_ok=True)
    with open_h5(tmp, "w") as f:
        fill(f)
    if sealed:
        seal(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def seal(path: Path) -> None:
    """Write the sha256 of a file's HDF5 bytes into its user block (``check_seal`` reads it)."""
    with open(path, "r+b") as handle:
        handle.seek(USERBLOCK)
        digest = hashlib.sha256(handle.read()).hexdigest().encode()
        handle.seek(0)
        handle.write(SEAL + digest)


def check_seal(path: Path) -> None:
    """A sealed file's bytes against the sha256 written into it (``write_whole``); an unsealed one passes.

    A damaged file must be found before HDF5 reads it: a zeroed block of its heap can make the library loop."""
    with open(path, "rb") as handle:
        if handle.read(len(SEAL)) != SEAL:
            return
        stored = handle.read(64)
        handle.seek(USERBLOCK)
        if hashlib.sha256(handle.read()).hexdigest().encode() != stored:
            raise DamagedFile(path, "its bytes do not match the sha256 written with it")


def allocated(f: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any, fill: Any = None) -> h5py.Dataset:
    """A contiguous dataset allocated now, so later row writes change no metadata; ``fill`` its first values."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    if not _is_text(np.dtype(dtype)):  # variable-length strings need a fill value
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dset = f.create_dataset(name, shape=shape, dtype=dtype, dcpl=dcpl)
    if fill is not None and dset.size:
        dset[...] = np.asarray(fill, dtype=dtype) if np.ndim(fill) else np.full(shape, fill, dtype=dtype)
    return dset


CLIP_COLUMNS = {
    "clip_id": h5py.string_dtype(),
    "group": h5py.string_dtype(),
    "video": h5py.string_dtype(),
    "audio": h5py.string_dtype(),
    "label": np.int32,
    "fold": np.int32,
    "media_hash": HASH_DTYPE,
    "media_stat": HASH_DTYPE,
    "removed": np.uint8,  # 1: the manifest no longer lists the clip; its rows stay, unseen, until it returns
}


def clip_columns(clips: list[Clip], manifest: Manifest) -> dict[str, np.ndarray]:
    """The clip-table columns of ``clips``, whose media are not hashed yet."""
    index = {name: i for i, name in enumerate(manifest.classes)}
    values: dict[str, list[Any]] = {
        "clip_id": [c.clip_id for c in clips],
        "group": [c.group for c in clips],
        "video": [str(c.video or "") for c in clips],
        "audio": [str(c.audio or "") for c in clips],
        "label": [index.get(c.label, -1) for c in clips],
        "fold": [-1 if c.fold is None else c.fold for c in clips],
        "media_hash": [b""] * len(clips),
        "media_stat": [b""] * len(clips),
        "removed": [0] * len(clips),
    }
    return {name: np.array(values[name], dtype=dtype) for name, dtype in CLIP_COLUMNS.items()}


def write_clip_table(root: Path, columns: Mapping[str, np.ndarray], classes: tuple[str, ...]) -> None:
    """Write ``root/clips.h5`` whole: the small file that changes when clips are added."""

    def fill(f: h5py.File) -> None:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["mvemo_version"] = mvemo_version()
        f.attrs["classes"] = canonical_json(list(classes))
        for name, dtype in CLIP_COLUMNS.items():
            allocated(f, name, (len(columns[name]),), dtype, fill=columns[name])

    write_whole(root / CLIPS_FILE, fill, sealed=True)


def read_clip_table(f: h5py.File) -> dict[str, np.ndarray]:
    """Every column of an open ``clips.h5``, one array each, in row order (text columns as str), each checked to be
    the array it was written as (``checked``)."""
    n = len(checked(f, "clip_id", CLIP_COLUMNS["clip_id"]))
    columns = {name: checked(f, name, dtype, n) for name, dtype in CLIP_COLUMNS.items()}
    return {name: column.asstr()[:] if _is_text(column.dtype) else column[:] for name, column in columns.items()}


def _is_text(dtype: np.dtype) -> bool:
    info = h5py.check_string_dtype(dtype)
    return info is not None and info.length is None
