"""Reading a cache folder: the clip table, feature matrices and what each feature set holds.

Readers need h5py and numpy only and never unpickle anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from mvemo.cache.h5file import open_h5, read_clip_table
from mvemo.cache.layout import CLIPS_FILE, DONE, FAILED, foreign_entries, media_keys, single_file_error
from mvemo.cache.sets import OpenSet, read_errors, set_names
from mvemo.cache.targets import read_targets
from mvemo.manifests.errors import CacheError
from mvemo.manifests.schema import group_id


class Cache:
    """A read-only view of a cache folder; use as a context manager.

    Rows are the clips the manifest listed at the last write, in the clip table's
    order (the manifest's order; appended clips last); clips removed from the manifest
    stay on disk, unseen, and come back with their rows if the manifest lists them again.

    Attributes
    ----------
    classes : tuple of str
    clip_ids : list of str
        One per row.
    y : ndarray, shape (n_clips,), int64
        Class index of every row.
    folds : ndarray, shape (n_clips,), int64
        Fold of every row, -1 where the manifest had no folds.
    groups : list of str
    targets : cache.targets.Targets
        The rows' tags and valence/arousal values, where the manifest gave them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_file():
            raise single_file_error(self.path)
        clips_file = self.path / CLIPS_FILE
        if not clips_file.is_file():
            if foreign_entries(self.path):
                raise CacheError(f"{str(self.path)!r} is a folder but not an mvemo cache (no {CLIPS_FILE})")
            raise CacheError(
                f"cache {str(self.path)!r} does not exist; build it with `mvemo extract MANIFEST --cache {path}`"
            )
        try:
            with open_h5(clips_file, "r") as f:
                self._attrs = dict(f.attrs)
                table = read_clip_table(f)
        except CacheError as err:
            raise CacheError(f"cache {str(self.path)!r}: {err}") from None
        except (OSError, KeyError) as err:
            raise CacheError(
                f"cache {str(self.path)!r}: {CLIPS_FILE} is not a readable clip table ({err});"
                " rebuild it with `mvemo extract`"
            ) from None
        self._n_stored = len(table["clip_id"])
        self.rows_stored = np.flatnonzero(table["removed"] == 0)  # the clip-table row of each visible row
        keep = self.rows_stored
        self.classes = tuple(json.loads(self._attrs["classes"]))
        self.clip_ids = table["clip_id"][keep].tolist()
        # each clip's group as folds and inner splits use it: a clip without one is a group of its own
        self.groups = [group_id(g, c) for g, c in zip(table["group"][keep], self.clip_ids)]
        self.y = table["label"][keep].astype(np.int64)
        self.folds = table["fold"][keep].astype(np.int64)
        self.media_hash = table["media_hash"][keep]
        self.media = {key: table[key][keep].tolist() for key in ("video", "audio")}
        self.media_stat = table["media_stat"][keep]
        self._media_keys = media_keys(self.media_hash)
        self.targets = read_targets(self.path, self._n_stored).rows(keep)
        self._names = set_names(self.path)
        self._open: dict[str, OpenSet] = {}
        self.pinned: PinnedCache | None = None  # the run's pin, where ``opened`` opened it from one

    def pin(self, sets: Iterable[str] = ()) -> PinnedCache:
        """This cache as the run that opened it reads it, to open again elsewhere (``opened``) with the same clips and
        the same contents of ``sets``, those the run reads (no other set is opened: one may be started over meanwhile
        by a writer the run has nothing to do with)."""
        stamps = tuple((name, self.modified_ns(name)) for name in sorted(set(sets)))
        return PinnedCache(self.path, tuple(self.clip_ids), self.table_sha256(), stamps)

    def table_sha256(self) -> str:
        """sha256 of the clip table as this handle reads it: each row's clip, stored row, label, group, fold and
        media."""
        digest = hashlib.sha256()
        for text in (self.clip_ids, self.groups):
            digest.update("\0".join(text).encode() + b"\1")
        for column in (self.rows_stored, self.y, self.folds, self.media_hash):
            digest.update(np.ascontiguousarray(column).tobytes())
        return digest.hexdigest()

    def close(self) -> None:
        for opened in self._open.values():
            opened.close()
        self._open = {}

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    def feature_sets(self) -> list[str]:
        return list(self._names)

    def _set(self, name: str) -> OpenSet:
        if name not in self._open:
            if name not in self._names:
                raise CacheError(
                    f"cache {str(self.path)!r} has no feature set {name!r} (it has {self._names});"
                    f" compute it with `mvemo extract MANIFEST --cache {self.path}`"
                )
            self._open[name] = OpenSet(self.path, name)
        return self._open[name]

    def per_row(self, name: str, key: str) -> np.ndarray:
        """A per-row column of a set (status, media_key, checksum, valid_length), one value per row."""
        return self._set(name).column(key, self._n_stored)[self.rows_stored]

    def status(self, name: str) -> np.ndarray:
        """Per-row status of a feature set: 0 to do, 1 done, 2 failed, 3 absent modality."""
        return self.per_row(name, "status")

    def done(self, name: str) -> np.ndarray:
        """Boolean mask of the rows whose values are computed and current."""
        return (self.status(name) == DONE) & (self.per_row(name, "media_key") == self._media_keys)

    def valid_lengths(self, name: str) -> np.ndarray:
        """Valid length of each row's first axis (the full length for fixed-size sets)."""
        return self.per_row(name, "valid_length").astype(np.int64)

    def row_shape(self, name: str) -> tuple[int, ...]:
        """The shape of one clip's array in feature set ``name``."""
        return self._set(name).row_shape

    def set_attrs(self, name: str) -> dict[str, Any]:
        """What a set records of itself: fingerprint, record, config, extractor, weights, columns."""
        return dict(self._set(name).attrs)

    def columns(self, name: str) -> list[str]:
        return json.loads(self._set(name).attrs["columns"])

    def config(self, name: str) -> dict[str, Any]:
        return json.loads(self._set(name).attrs["config"])

    def fingerprint(self, name: str) -> str:
        return str(self._set(name).attrs["fingerprint"])

    def weights_sha256(self, name: str) -> str:
        """The sha256 of the pretrained weights a set was computed with ("" for none: random init, or no net)."""
        return str(self._set(name).attrs["weights_sha256"])

    def weights_file(self, name: str) -> str:
        """The name of that weights file ("" for none, or a cache written before mvemo recorded it)."""
        return str(self._set(name).attrs.get("weights_file", ""))

    def modified_ns(self, name: str) -> int:
        """When a set's files (or the clip table) last changed: a key for what was read from it."""
        return max(self._set(name).modified_ns(), os.stat(self.path / CLIPS_FILE).st_mtime_ns)

    def errors(self, name: str) -> dict[int, str]:
        """Why each failed row of a set failed: {row: reason}."""
        failed = np.flatnonzero(self.status(name) == FAILED)
        reasons = read_errors(self.path, name) if failed.size else {}
        return {int(row): reasons.get(self.clip_ids[row], "") for row in failed}

    def combined_fingerprint(self, sets: Iterable[str] | None = None) -> str:
        """sha256 over the name and fingerprint of each of ``sets`` (default every feature set): what a report or a
        model was computed from."""
        parts = [f"{name}={self.fingerprint(name)}" for name in (self.feature_sets() if sets is None else sorted(sets))]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def failures(self, names: list[str] | None = None) -> list[dict[str, str]]:
        """The failures table: every (feature set, clip) that could not be computed, with its reason; of the sets
        ``names`` (default every set)."""
        return [
            {"feature_set": name, "clip_id": self.clip_ids[row], "reason": reason}
            for name in (self.feature_sets() if names is None else names)
            for row, reason in self.errors(name).items()
        ]

    def read_matrix(
        self, name: str, rows: np.ndarray | list[int] | None = None, *, partial: bool = False
    ) -> np.ndarray:
        """The values of a feature set, all rows or the given ones, in the order given; every one of them done.

        ``partial``: rows not done too, as a masked array (``numpy.ma``) whose mask covers them, their values NaN
        (0 in a set of integers), never the bytes allocated where they will be written.

        Returns
        -------
        ndarray, shape (n_rows, *row_shape)

        Raises
        ------
        CacheError
            Naming the set and how many rows are not done (to do, failed, or computed from media changed since), unless
            ``partial``: a script reading a set that ``extract`` is still writing gets no half-written rows.
        """
        values, done = self.read_rows(name, rows)
        if partial:
            mask = np.broadcast_to(~done.reshape(-1, *[1] * (values.ndim - 1)), values.shape)
            return np.ma.MaskedArray(values, mask=mask.copy())
        if not done.all():
            pending = np.flatnonzero(~done)
            first = self.clip_ids[int(pending[0] if rows is None else np.asarray(rows)[pending[0]])]
            raise CacheError(
                f"feature set {name!r}: {pending.size} of the {done.size} rows asked for are not done (first: clip"
                f" {first!r}: to do, failed, or computed from media changed since); read the rows `done({name!r})`"
                " marks, pass partial=True to get them masked, or finish the set with `mvemo extract`"
            )
        return values

    def read_rows(self, name: str, rows: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A feature set's rows (all, or the given ones in the order given) and which of them are done; a row not
        done holds NaN (0 in a set of integers).

        Reads with ``read_direct`` into one preallocated array, a contiguous run of
        rows at a time (fancy indexing measured 30x slower): a set of one segment with
        no clip removed is one read."""
        opened = self._set(name)
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise CacheError(f"feature set {name!r}: rows must lie in 0..{len(self) - 1}")
        done_before = self.done(name)[rows]  # a row a writer finishes while it is read is not done here
        order = np.argsort(rows, kind="stable")
        stored = self.rows_stored[rows[order]]
        out = np.zeros((rows.size, *opened.row_shape), dtype=opened.dtype)
        for position, index, first, count in opened.runs(stored):
            opened.files[index]["data"].read_direct(
                out, np.s_[first : first + count], np.s_[position : position + count]
            )
        if not np.array_equal(order, np.arange(rows.size)):
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        done = done_before & self.done(name)[rows]  # and one it starts over is not either
        out[~done] = np.nan if out.dtype.kind == "f" else 0
        return out, done

    def info(self) -> dict[str, Any]:
        """The ``mvemo cache info --json`` document."""
        sets = {}
        for name in self.feature_sets():
            opened = self._set(name)
            attrs = opened.attrs
            sets[name] = {
                "shape": [len(self), *opened.row_shape],
                "dtype": str(opened.dtype),
                "done": int(self.done(name).sum()),
                "failed": int((self.status(name) == FAILED).sum()),
                "fingerprint": str(attrs["fingerprint"]),
                "config": json.loads(attrs["config"]),
                "extractor": str(attrs["extractor"]),
                "extractor_version": str(attrs["extractor_version"]),
                "bytes_per_clip": int(np.prod(opened.row_shape) * opened.dtype.itemsize),
                "bytes_on_disk": sum(s.path.stat().st_size for s in opened.segments),
                "segments": len(opened.segments),
            }
        return {
            "clips": len(self),
            "classes": list(self.classes),
            "schema_version": int(self._attrs["schema_version"]),
            "mvemo_version": str(self._attrs["mvemo_version"]),
            "folds": int(self.folds.max() + 1) if len(self) and self.folds.min() >= 0 else 0,
            "feature_sets": sets,
        }


@dataclass(frozen=True)
class PinnedCache:
    """A cache folder and the clip table a run read from it (``Cache.pin``). Opened again, by a worker's job or a
    later step, the folder must still hold that table, or the run stops: a run never mixes two states of a cache
    (``mvemo extract`` may remove, rename or add clips while stage two reads it)."""

    path: Path
    clip_ids: tuple[str, ...]
    table_sha256: str
    stamps: tuple[tuple[str, int], ...] = ()  # each set's ``Cache.modified_ns`` when pinned

    def require_set(self, cache: Cache, name: str) -> None:
        """Raise ``CacheError`` unless set ``name`` is as it was when pinned (``extract`` rewrote it meanwhile). A set's
        stamp holds the clip table's time, and ``cache`` may be a handle opened before the clips changed: the table on
        disk is read first, so that a change of clips is named as one."""
        if dict(self.stamps).get(name, cache.modified_ns(name)) != cache.modified_ns(name):
            self.check()
            raise CacheError(
                f"cache {str(self.path)!r} changed while stage two read it: {name} was written again; run stage two"
                " again once `mvemo extract` has finished"
            )

    def require_same(self, cache: Cache) -> None:
        """Raise ``CacheError`` naming the cache and what changed, unless ``cache`` holds the pinned clip table."""
        if cache.table_sha256() == self.table_sha256:
            return
        now = set(cache.clip_ids)
        gone = [c for c in self.clip_ids if c not in now]
        before = set(self.clip_ids)
        new = [c for c in cache.clip_ids if c not in before]
        changes = [
            f"{len(ids)} clip(s) {what} (first: {ids[0]!r})" for what, ids in (("gone", gone), ("new", new)) if ids
        ]
        what = ", ".join(changes) or "its clips' rows, labels, groups, folds or media changed"
        raise CacheError(
            f"cache {str(self.path)!r} changed while stage two read it: {what}; run stage two again once"
            " `mvemo extract` has finished"
        )

    def check(self) -> None:
        """``require_same`` of the cache as it is on disk now."""
        with Cache(self.path) as cache:
            self.require_same(cache)


CacheLike: TypeAlias = "Cache | PinnedCache | str | os.PathLike[str]"  # an open cache, a pinned one, or its folder


@contextlib.contextmanager
def opened(cache: CacheLike) -> Iterator[Cache]:
    """``cache`` itself when it is an open ``Cache`` (the caller's handle, left open), else the cache at that path,
    opened for the block: a stage opens its cache once and hands the handle down. A ``PinnedCache`` must still hold
    the clip table it pinned (``PinnedCache.require_same``)."""
    if isinstance(cache, Cache):
        yield cache
        return
    with Cache(cache.path if isinstance(cache, PinnedCache) else cache) as handle:
        if isinstance(cache, PinnedCache):
            cache.require_same(handle)
            handle.pinned = cache
        yield handle


def read_matrix(
    path: str | os.PathLike[str], name: str, rows: np.ndarray | list[int] | None = None, *, partial: bool = False
) -> np.ndarray:
    """Read one feature set of a cache file (see ``Cache.read_matrix``)."""
    with Cache(path) as cache:
        return cache.read_matrix(name, rows, partial=partial)
