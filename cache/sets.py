"""A feature set on disk: a folder of segment files, each holding a run of clip-table rows.

A set is born with one segment, rows 0..n-1 of the clip table of its day; clips appended
later get a segment of their own (rows n..m-1), so adding a set or a clip writes only the
new bytes. Each segment is written whole under a temporary name and renamed into place,
with the set's attributes (fingerprint, config, ...) on its root. The set's rows are the
chain of segments from row 0, each starting where the one before stopped; a file off the
chain (left by a kill while a set was being started over) is not part of the set.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.fingerprint import SCHEMA_VERSION, canonical_json
from mvemo.cache.h5file import allocated, checked, open_h5, write_whole
from mvemo.cache.layout import ERROR_CHARS, ERRORS_FILE, SETS, TODO, FeatureSpec, set_dir
from mvemo.manifests.errors import CacheError

# Each segment's per-row columns beside its data: dtype, and the value a new row starts with.
PER_ROW: dict[str, tuple[Any, Any]] = {
    "status": (np.uint8, TODO),
    "media_key": (np.uint64, 0),
    "checksum": (np.uint32, 0),
    "valid_length": (np.int32, 0),
}
_SEGMENT = re.compile(r"^rows-(\d{9})-(\d{9})\.h5$")


@dataclass(frozen=True)
class Segment:
    """The file of rows ``start``..``stop``-1 of a set."""

    path: Path
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def segment_path(root: Path, name: str, start: int, stop: int) -> Path:
    return set_dir(root, name) / f"rows-{start:09d}-{stop:09d}.h5"


def _segment_files(folder: Path) -> list[Segment]:
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _SEGMENT.match(entry.name)
            if match and entry.is_file():
                found.append(Segment(Path(entry.path), int(match[1]), int(match[2])))
    return sorted(found, key=lambda s: (s.start, s.stop))


def chain(root: Path, name: str) -> tuple[list[Segment], list[Segment]]:
    """The set's segments from row 0 on, and the segment files off that chain."""
    folder = set_dir(root, name)
    if not folder.is_dir():
        return [], []
    linked: list[Segment] = []
    stray = []
    for segment in _segment_files(folder):
        if segment.start == (linked[-1].stop if linked else 0):
            linked.append(segment)
        else:
            stray.append(segment)
    return linked, stray


def set_names(root: Path, *, with_strays: bool = False) -> list[str]:
    """Every set of a cache (a folder holding a segment from row 0), sorted; ``with_strays``: also folders
    holding segment files only off a chain (a set a kill left half removed)."""
    base = root / SETS
    names = []
    for folder, _, files in os.walk(base):
        segments = [f for f in files if _SEGMENT.match(f)]
        if any(f.startswith("rows-000000000-") for f in segments) or (with_strays and segments):
            names.append(Path(folder).relative_to(base).as_posix())
    return sorted(names)


def _check_segment(f: h5py.File, n: int, first: h5py.File) -> None:
    """A segment's arrays as ``create_segment`` wrote them: the per-row columns of ``n`` rows, and its data of the
    first segment's row shape and dtype (``h5file.checked``)."""
    for key, (dtype, _) in PER_ROW.items():
        checked(f, key, dtype, n)
    data, like = checked(f, "data", None, n), checked(first, "data", None)
    if (data.shape[1:], data.dtype) != (like.shape[1:], like.dtype):
        raise CacheError(
            f"{f.filename}: rows of {data.shape[1:]} {data.dtype}, the set's are {like.shape[1:]} {like.dtype}"
        )


def segment_attrs(spec: FeatureSpec) -> dict[str, Any]:
    """What each segment of a set records of it."""
    return {
        "fingerprint": spec.fingerprint,
        "record": canonical_json(spec.record),
        "config": canonical_json(dict(spec.config)),
        "extractor": spec.extractor,
        "extractor_version": spec.extractor_version,
        "weights_sha256": spec.weights_sha256,
        "weights_file": spec.weights_file,
        "schema_version": SCHEMA_VERSION,
        "columns": json.dumps(list(spec.columns)),
        "variable_length": spec.variable_length,
    }


def create_segment(
    root: Path, name: str, attrs: dict[str, Any], row_shape: tuple[int, ...], dtype: Any, start: int, stop: int
) -> Segment:
    """Write the segment of rows ``start``..``stop``-1 of set ``name``, allocated whole, every row to do."""
    path = segment_path(root, name, start, stop)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = stop - start

    def fill(f: h5py.File) -> None:
        for key, (column_dtype, value) in PER_ROW.items():
            allocated(f, key, (n,), column_dtype, fill=value)
        allocated(f, "data", (n, *row_shape), dtype)
        f.attrs.update(attrs)

    write_whole(path, fill)
    return Segment(path, start, stop)


def remove_set(root: Path, name: str) -> int:
    """Delete a set's files, first segment first (a kill midway leaves no set, only strays); bytes freed."""
    linked, stray = chain(root, name)
    freed = 0
    for segment in [*linked, *stray]:
        freed += segment.path.stat().st_size
        segment.path.unlink()
    errors = set_dir(root, name) / ERRORS_FILE
    if errors.exists():
        freed += errors.stat().st_size
        errors.unlink()
    return freed


class StartedOver(CacheError):
    """A set whose files a writer removed since they were listed: ``mvemo extract`` is computing it anew."""

    def __init__(self, root: Path, name: str) -> None:
        super().__init__(
            f"cache {str(root)!r} changed while it was read: feature set {name!r} is being started over by `mvemo"
            " extract`; run again once it has finished"
        )


class OpenSet:
    """A set's segments, opened read-only; rows are the clip table's (physical) rows.

    ``writable(index)`` reopens one segment for writing: a segment no row is written
    to is never opened for writing (HDF5 touches a file it closes after writing).
    """

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.segments, _ = chain(root, name)
        self.files: list[h5py.File] = []
        try:
            for segment in self.segments:
                self.files.append(open_h5(segment.path, "r"))
                _check_segment(self.files[-1], len(segment), self.files[0])
        except FileNotFoundError:
            self.close()
            self.segments = []  # removed since it was listed: a writer is starting the set over
        except CacheError as err:
            self.close()
            raise CacheError(f"feature set {name!r}: {err}") from None
        if not self.segments:
            raise StartedOver(root, name)

    def writable(self, index: int) -> h5py.File:
        if self.files[index].mode != "r+":
            self.files[index].close()
            self.files[index] = open_h5(self.segments[index].path, "r+")
        return self.files[index]

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []

    @property
    def attrs(self) -> h5py.AttributeManager:
        return self.files[0].attrs

    @property
    def stop(self) -> int:
        """The first row no segment holds."""
        return self.segments[-1].stop if self.segments else 0

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.files[0]["data"].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.files[0]["data"].dtype

    def column(self, key: str, n_rows: int) -> np.ndarray:
        """A per-row column over rows 0..n_rows-1; rows no segment holds get the column's start value."""
        dtype, value = PER_ROW[key]
        out = np.full(n_rows, value, dtype=dtype)
        for segment, f in zip(self.segments, self.files):
            stop = min(segment.stop, n_rows)
            if stop > segment.start:
                f[key].read_direct(out, np.s_[: stop - segment.start], np.s_[segment.start : stop])
        return out

    def runs(self, rows: np.ndarray) -> Iterator[tuple[int, int, int, int]]:
        """Split ascending ``rows`` into runs of consecutive rows in one segment: (position in rows, segment index,
        first local row, count). Rows no segment holds are left out."""
        starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
        firsts = np.array([segment.start for segment in self.segments])
        for begin, end in zip(starts, [*starts[1:], rows.size]):
            position, first, count = int(begin), int(rows[begin]), int(end - begin)
            index = int(np.searchsorted(firsts, first, side="right")) - 1
            while count and 0 <= index < len(self.segments) and first < self.segments[index].stop:
                take = min(count, self.segments[index].stop - first)
                yield position, index, first - self.segments[index].start, take
                position, first, count, index = position + take, first + take, count - take, index + 1

    def locate(self, row: int) -> tuple[int, int]:
        """Which segment holds ``row``, and the row's place in it."""
        for _, index, local, _ in self.runs(np.array([row])):
            return index, local
        raise IndexError(f"feature set {self.name!r} holds no row {row}")

    def set_rows(self, index: int, rows: list[int], **columns: Any) -> None:
        """Set per-row columns of segment ``index``'s ``rows`` with one read and one write of the span they cover."""
        f = self.writable(index)
        lo, hi = min(rows), max(rows) + 1
        local = np.asarray(rows) - lo
        for key, values in columns.items():
            span = f[key][lo:hi]
            span[local] = values
            f[key][lo:hi] = span

    def modified_ns(self) -> int:
        """The latest modification time of its files: a key for what was read from it."""
        try:
            return max(os.stat(s.path).st_mtime_ns for s in self.segments)
        except FileNotFoundError:
            raise StartedOver(self.root, self.name) from None


def append_error(root: Path, name: str, clip_id: str, reason: str) -> None:
    """Record why a clip failed for a set: one JSON line (a line cut by a kill is skipped on reading)."""
    line = json.dumps({"clip_id": clip_id, "reason": reason[:ERROR_CHARS]}) + "\n"
    with open(set_dir(root, name) / ERRORS_FILE, "a", encoding="utf-8") as f:
        f.write(line)


def read_errors(root: Path, name: str) -> dict[str, str]:
    """The last recorded reason per clip id of a set."""
    path = set_dir(root, name) / ERRORS_FILE
    reasons: dict[str, str] = {}
    if not path.exists():
        return reasons
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "clip_id" in record:
            reasons[str(record["clip_id"])] = str(record.get("reason", ""))
    return reasons
