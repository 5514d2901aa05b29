"""Reading a cache: the clip table, feature matrices and what each feature set holds.

Readers need h5py and numpy only and never unpickle anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.h5file import feature_set_names, open_h5
from mvemo.cache.layout import CLIPS, DONE, FAILED, feature_path
from mvemo.manifests.errors import CacheError
from mvemo.manifests.schema import group_id


class Cache:
    """A read-only view of a cache file; use as a context manager.

    Attributes
    ----------
    classes : tuple of str
    clip_ids : list of str
        One per row, in row order (the manifest's order; appended clips last).
    y : ndarray, shape (n_clips,), int64
        Class index of every row.
    folds : ndarray, shape (n_clips,), int64
        Fold of every row, -1 where the manifest had no folds.
    groups : list of str
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheError(f"cache {str(self.path)!r} does not exist; build it with `mvemo extract MANIFEST --cache {path}`")
        try:
            self.file = open_h5(self.path, "r")
        except OSError as err:
            raise CacheError(
                f"cache {str(self.path)!r} is not a readable HDF5 file ({err}); rebuild it with `mvemo extract`"
            ) from None
        if CLIPS not in self.file:
            self.file.close()
            raise CacheError(f"{str(self.path)!r} is an HDF5 file but not an mvemo cache (no clip table)")
        clips = self.file[CLIPS]
        self.classes = tuple(json.loads(self.file.attrs["classes"]))
        self.clip_ids = [s.decode() for s in clips["clip_id"][:]]
        # each clip's group as folds and inner splits use it: a clip without one is a group of its own
        self.groups = [group_id(g.decode(), c) for g, c in zip(clips["group"][:], self.clip_ids)]
        self.y = clips["label"][:].astype(np.int64)
        self.folds = clips["fold"][:].astype(np.int64)
        self.media_hash = clips["media_hash"][:]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.file.attrs)

    def feature_sets(self) -> list[str]:
        return feature_set_names(self.file)

    def _group(self, name: str) -> h5py.Group:
        path = feature_path(name)
        if path not in self.file or "fingerprint" not in self.file[path].attrs:
            raise CacheError(
                f"cache {str(self.path)!r} has no feature set {name!r} (it has {self.feature_sets()});"
                f" compute it with `mvemo extract MANIFEST --cache {self.path}`"
            )
        return self.file[path]

    def status(self, name: str) -> np.ndarray:
        """Per-row status of a feature set: 0 to do, 1 done, 2 failed."""
        return self._group(name)["status"][:]

    def done(self, name: str) -> np.ndarray:
        """Boolean mask of the rows whose values are computed and current."""
        group = self._group(name)
        return (group["status"][:] == DONE) & (group["media_hash"][:] == self.media_hash)

    def valid_lengths(self, name: str) -> np.ndarray:
        """Valid length of each row's first axis (the full length for fixed-size sets)."""
        return self._group(name)["valid_length"][:].astype(np.int64)

    def row_shape(self, name: str) -> tuple[int, ...]:
        """The shape of one clip's array in feature set ``name``."""
        return tuple(int(n) for n in self._group(name)["data"].shape[1:])

    def columns(self, name: str) -> list[str]:
        return json.loads(self._group(name).attrs["columns"])

    def config(self, name: str) -> dict[str, Any]:
        return json.loads(self._group(name).attrs["config"])

    def fingerprint(self, name: str) -> str:
        return str(self._group(name).attrs["fingerprint"])

    def weights_sha256(self, name: str) -> str:
        """The sha256 of the pretrained weights a set was computed with ("" for none: random init, or no net)."""
        return str(self._group(name).attrs["weights_sha256"])

    def weights_file(self, name: str) -> str:
        """The name of that weights file ("" for none, or a cache written before mvemo recorded it)."""
        return str(self._group(name).attrs.get("weights_file", ""))

    def error(self, name: str, row: int) -> str:
        """Why row ``row`` of a set failed ("" where it did not)."""
        return bytes(self._group(name)["error"][row]).decode("utf-8", "replace")

    def combined_fingerprint(self) -> str:
        """sha256 over every feature set's name and fingerprint: what a report was computed from."""
        parts = [f"{name}={self.fingerprint(name)}" for name in self.feature_sets()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def failures(self) -> list[dict[str, str]]:
        """The failures table: every (feature set, clip) that could not be computed, with its reason."""
        table = []
        for name in self.feature_sets():
            group = self._group(name)
            for row in np.flatnonzero(group["status"][:] == FAILED):
                table.append({"feature_set": name, "clip_id": self.clip_ids[row], "reason": self.error(name, int(row))})
        return table

    def read_matrix(self, name: str, rows: np.ndarray | list[int] | None = None) -> np.ndarray:
        """The values of a feature set, all rows or the given ones, in the order given.

        Reads with ``read_direct`` into one preallocated array, a contiguous run of
        rows at a time (fancy indexing measured 30x slower). Rows not done hold
        whatever was allocated: select them with ``done``.

        Returns
        -------
        ndarray, shape (n_rows, *row_shape)
        """
        dset = self._group(name)["data"]
        if rows is None:
            out = np.empty(dset.shape, dtype=dset.dtype)
            if out.size:
                dset.read_direct(out)
            return out
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= dset.shape[0]):
            raise CacheError(f"feature set {name!r}: rows must lie in 0..{dset.shape[0] - 1}")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        out = np.empty((rows.size, *dset.shape[1:]), dtype=dset.dtype)
        starts = np.flatnonzero(np.diff(sorted_rows, prepend=-2) != 1)
        for begin, end in zip(starts, [*starts[1:], rows.size]):
            first = sorted_rows[begin]
            dset.read_direct(out, np.s_[first : first + end - begin], np.s_[begin:end])
        if np.array_equal(order, np.arange(rows.size)):
            return out
        unsorted = np.empty_like(out)
        unsorted[order] = out
        return unsorted

    def info(self) -> dict[str, Any]:
        """The ``mvemo cache info --json`` document."""
        sets = {}
        for name in self.feature_sets():
            group = self._group(name)
            data = group["data"]
            sets[name] = {
                "shape": list(data.shape),
                "dtype": str(data.dtype),
                "done": int(self.done(name).sum()),
                "failed": int((group["status"][:] == FAILED).sum()),
                "fingerprint": str(group.attrs["fingerprint"]),
                "config": json.loads(group.attrs["config"]),
                "extractor": str(group.attrs["extractor"]),
                "extractor_version": str(group.attrs["extractor_version"]),
                "bytes_per_clip": int(np.prod(data.shape[1:]) * data.dtype.itemsize),
            }
        return {
            "clips": len(self),
            "classes": list(self.classes),
            "schema_version": int(self.file.attrs["schema_version"]),
            "mvemo_version": str(self.file.attrs["mvemo_version"]),
            "folds": int(self.folds.max() + 1) if len(self) and self.folds.min() >= 0 else 0,
            "feature_sets": sets,
        }


def read_matrix(path: str | os.PathLike[str], name: str, rows: np.ndarray | list[int] | None = None) -> np.ndarray:
    """Read one feature set of a cache file (see ``Cache.read_matrix``)."""
    with Cache(path) as cache:
        return cache.read_matrix(name, rows)
