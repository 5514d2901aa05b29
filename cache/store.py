"""The single writer of a cache folder: resumable, fingerprinted, safe against ``kill -9``, and never copying.

Crash safety rests on two rules, chosen by killing writers at random moments
(tests/cache/test_crash.py):

1. **Row writes never touch HDF5 metadata.** Every dataset is allocated whole
   when its file is created (early allocation, no fill), so writing a row only
   overwrites raw bytes in place. A row's data is flushed before its ``done``
   status is written and flushed: a kill leaves either a done row with correct
   data or a row still to do.
2. **New files appear whole.** A new set, the segment of a set for clips added
   since, and the clip table when clips are added are each written under a
   temporary name and renamed into place (``cache.h5file.write_whole``): a kill
   leaves the files before, and a temporary file the next writer removes. Nothing
   else is ever rewritten, so adding a set writes that set's bytes and no other's
   (``mvemo bench cache``: ``add_set_bytes_ratio``).

HDF5's SWMR mode was the alternative: it cannot create objects while writing and
leaves a killed writer's file flagged until ``h5clear`` runs, which h5py lacks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.fingerprint import canonical_json, media_hash, media_stat_key, record_diff
from mvemo.cache.h5file import (
    CLIP_COLUMNS,
    clip_columns,
    fit_row,
    open_h5,
    read_clip_table,
    row_checksum,
    write_clip_table,
)
from mvemo.cache.layout import (
    CLIPS_FILE,
    DONE,
    FAILED,
    TEMPORARY,
    TODO,
    FeatureSpec,
    media_keys,
    require_cache_folder,
    single_file_error,
)
from mvemo.cache.lock import CacheLock
from mvemo.cache.sets import OpenSet, append_error, chain, create_segment, remove_set, segment_attrs, set_names
from mvemo.cache.targets import manifest_targets, read_targets, write_targets
from mvemo.manifests.errors import CacheError
from mvemo.manifests.schema import Manifest
from mvemo.manifests.steps import step

VERIFY_SAMPLE = 8


def _disk_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an I/O failure (full disk, file size limit) into a ``CacheError`` that says how to resume."""

    @functools.wraps(method)
    def guarded(self: CacheWriter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OSError, RuntimeError) as err:  # h5py reports a failed flush as RuntimeError
            remove_temporary_files(self.path)
            raise CacheError(
                f"writing cache {str(self.path)!r} failed ({err}); free disk space (or raise the file size limit)"
                " and run again: rows already done are kept"
            ) from None

    return guarded


def _finite(row: np.ndarray) -> bool:
    return row.dtype.kind != "f" or bool(np.isfinite(row).all())


def remove_temporary_files(root: Path) -> list[Path]:
    """Delete the temporary files a killed or failed writer left under ``root``; returns them."""
    found = [p for p in root.rglob(".*.tmp") if p.is_file() and TEMPORARY.match(p.name)]
    for path in found:
        path.unlink(missing_ok=True)
    return found


class CacheWriter:
    """The one process that writes a cache folder; workers send it arrays.

    Rows are numbered as ``Cache`` numbers them: the clips the manifest lists, in the
    clip table's order.

    Parameters
    ----------
    path : path-like
        The cache folder, created when absent.
    manifest : Manifest or None
        The clip table. Clips new to the cache are appended; clips the manifest no longer lists are hidden, their
        rows kept; a changed label or fold of a listed clip raises ``CacheError`` once embeddings exist. None: the
        cache's clips as they stand, the clip table and targets left untouched (``cache.imported``).
    lock : CacheLock, optional
        A lock already held (``extract`` takes it before heavy imports);
        otherwise the writer takes its own.

    Raises
    ------
    CacheError
        When another process writes the cache, or the manifest contradicts it.
    """

    def __init__(
        self, path: str | os.PathLike[str], manifest: Manifest | None, *, lock: CacheLock | None = None
    ) -> None:
        self.path = Path(path)
        if self.path.is_file():
            raise single_file_error(self.path)
        require_cache_folder(self.path)
        self._own_lock = lock is None
        self.lock = CacheLock(self.path).acquire() if lock is None else lock
        self._sets: dict[str, OpenSet] = {}
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            remove_temporary_files(self.path)
            if manifest is None:
                self._adopt_clips()
            else:
                self._sync_clips(manifest)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self.close_sets()
        if self._own_lock:
            self.lock.release()

    def close_sets(self) -> None:
        """Close the sets' open files, keeping the lock: a reader opened after sees every row written."""
        for opened in self._sets.values():
            with contextlib.suppress(
                OSError, RuntimeError
            ):  # a full disk: what is flushed is consistent, the rest is redone
                opened.close()
        self._sets = {}

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clips -------------------------------------------------------------------------

    @_disk_errors
    def _sync_clips(self, manifest: Manifest) -> None:
        table_path = self.path / CLIPS_FILE
        if not table_path.exists():
            write_clip_table(self.path, clip_columns(list(manifest.clips), manifest), manifest.classes)
        with open_h5(table_path, "r") as f:
            classes = f.attrs["classes"]
            table = read_clip_table(f)
        if classes != canonical_json(list(manifest.classes)):
            raise CacheError(
                f"cache {str(self.path)!r} has classes {classes}, the manifest {list(manifest.classes)};"
                " write to a new cache folder"
            )
        known = set(table["clip_id"].tolist())
        new = [c for c in manifest.clips if c.clip_id not in known]
        if new:
            added = clip_columns(new, manifest)
            table = {key: np.concatenate([table[key], added[key]]) for key in CLIP_COLUMNS}
            write_clip_table(self.path, table, manifest.classes)
        self._ids = table["clip_id"].tolist()
        listed = set(manifest.clip_ids)
        removed = np.array([clip_id not in listed for clip_id in self._ids], dtype=np.uint8)
        self._listed = np.flatnonzero(removed == 0)
        self.clip_ids = [self._ids[stored] for stored in self._listed]  # the manifest's clips, in row order
        self._row_of = {clip_id: row for row, clip_id in enumerate(self.clip_ids)}
        changes = {"removed": removed, **self._clip_columns(table, manifest), **self._media_columns(table, manifest)}
        changed = {key: values for key, values in changes.items() if not np.array_equal(values, table[key])}
        if changed:  # written whole, as every sealed file: a kill leaves the old table or the new one
            write_clip_table(self.path, table | changed, manifest.classes)
        self._media_keys = media_keys(changes["media_hash"])
        targets = manifest_targets(manifest, self._listed[self._rows_of(manifest.clip_ids)], len(self._ids))
        try:
            same = targets.same(read_targets(self.path, len(self._ids)))
        except CacheError:  # the clip table has grown since (or the file is damaged): the manifest's are written
            same = False
        if not same:
            write_targets(self.path, targets)

    def _adopt_clips(self) -> None:
        """The clips the clip table lists, as the last manifest left them: nothing written."""
        table_path = self.path / CLIPS_FILE
        if not table_path.exists():
            raise CacheError(
                f"cache {str(self.path)!r} does not exist; build it with `mvemo extract MANIFEST --cache {self.path}`"
            )
        with open_h5(table_path, "r") as f:
            table = read_clip_table(f)
        self._ids = table["clip_id"].tolist()
        self._listed = np.flatnonzero(table["removed"] == 0)
        self.clip_ids = [self._ids[stored] for stored in self._listed]
        self._row_of = {clip_id: row for row, clip_id in enumerate(self.clip_ids)}
        self._media_keys = media_keys(table["media_hash"])

    def _clip_columns(self, table: dict[str, np.ndarray], manifest: Manifest) -> dict[str, np.ndarray]:
        """Labels, folds and groups of the listed clips from the manifest (a changed label or fold is refused once
        embeddings hang on them; groups follow the manifest, and stage two refuses folds that split one)."""
        order = self._listed[self._rows_of(manifest.clip_ids)]
        labels, folds, groups = table["label"].copy(), table["fold"].copy(), table["group"].copy()
        labels[order] = manifest.y
        folds[order] = manifest.folds if manifest.has_folds else -1
        groups[order] = [c.group for c in manifest.clips]
        changed = np.flatnonzero(
            (table["label"][self._listed] != labels[self._listed])
            | (table["fold"][self._listed] != folds[self._listed])
        )
        if changed.size and any(name.startswith("emb/") for name in self.feature_sets()):
            clip_id = self.clip_ids[changed[0]]
            raise CacheError(
                f"clip {clip_id!r}: its label or fold in the manifest differs from the cache's, whose embeddings"
                f" were trained on the old ones ({changed.size} clips differ);"
                " restore the manifest or write to a new cache"
            )
        return {"label": labels, "fold": folds, "group": groups}

    def _media_columns(self, table: dict[str, np.ndarray], manifest: Manifest) -> dict[str, np.ndarray]:
        """Each listed clip's media hash, read again only where its files' size or time changed."""
        hashes, stats = table["media_hash"].copy(), table["media_stat"].copy()
        for row, clip in zip(self._listed[self._rows_of(manifest.clip_ids)], manifest.clips):
            paths = [p if p is not None and p.exists() else None for p in (clip.video, clip.audio)]
            key = media_stat_key(paths).encode()
            if key != stats[row]:
                stats[row], hashes[row] = key, media_hash(paths).encode()
        return {"media_hash": hashes, "media_stat": stats}

    def _rows_of(self, clip_ids: Sequence[str]) -> np.ndarray:
        return np.array([self._row_of[c] for c in clip_ids], dtype=np.int64)

    def row_of(self, clip_id: str) -> int:
        return self._row_of[clip_id]

    # -- feature sets ------------------------------------------------------------------

    def feature_sets(self) -> list[str]:
        return set_names(self.path)

    def _set(self, name: str) -> OpenSet:
        if name not in self._sets:
            self._sets[name] = OpenSet(self.path, name)
        return self._sets[name]

    def _forget(self, name: str) -> None:
        opened = self._sets.pop(name, None)
        if opened is not None:
            opened.close()

    @_disk_errors
    def prepare(self, specs: Iterable[FeatureSpec], *, recompute: Iterable[str] = ()) -> None:
        """Make sure every spec's feature set exists with its fingerprint and holds a row for every clip.

        A set that exists with the same fingerprint is kept (a sample of its done
        rows is read back and checked) and gets a new segment for clips added since;
        a set in ``recompute`` starts over; a new set is created. Either way only the
        new files are written.

        Raises
        ------
        CacheError
            When a set exists with another fingerprint, naming both fingerprints,
            the config keys that differ and ``--recompute NAME``; or when a sampled
            done row no longer matches its checksum.
        """
        recompute = set(recompute)
        existing = set(self.feature_sets())
        for spec in specs:
            if spec.name in existing and spec.name not in recompute:
                self._check_fingerprint(spec)
                self._verify_sample(spec.name)
            else:
                self._forget(spec.name)
                remove_set(self.path, spec.name)
            self._extend(spec)

    def _extend(self, spec: FeatureSpec) -> None:
        """Give the set a segment for the clip-table rows it lacks, after removing files off its chain."""
        linked, stray = chain(self.path, spec.name)
        for segment in stray:
            segment.path.unlink()
        start, stop = (linked[-1].stop if linked else 0), len(self._ids)
        if start < stop:
            self._forget(spec.name)
            create_segment(self.path, spec.name, segment_attrs(spec), spec.row_shape, spec.dtype, start, stop)

    def _check_fingerprint(self, spec: FeatureSpec) -> None:
        attrs = self._set(spec.name).attrs
        if attrs["fingerprint"] == spec.fingerprint:
            return
        diff = record_diff(json.loads(attrs["record"]), spec.record)
        raise CacheError(
            f"feature set {spec.name!r} in {str(self.path)!r} was computed with another config"
            f" (cached fingerprint {attrs['fingerprint'][:12]}, now {spec.fingerprint[:12]};"
            f" differing: {', '.join(diff)});"
            f" run with --recompute {spec.name} to start it over, or use another cache folder"
        )

    def _verify_sample(self, name: str) -> None:
        opened = self._set(name)
        n = len(self._ids)
        done = np.flatnonzero(
            (opened.column("status", n) == DONE) & (opened.column("media_key", n) == self._media_keys)
        )
        if not done.size:
            return
        sample = np.random.default_rng(len(done)).choice(done, size=min(VERIFY_SAMPLE, done.size), replace=False)
        checksums = opened.column("checksum", n)
        for stored in sample:
            index, local = opened.locate(int(stored))
            if row_checksum(opened.files[index]["data"][local]) != checksums[stored]:
                raise CacheError(
                    f"feature set {name!r}, clip {self._ids[stored]!r}: stored row does not match its checksum;"
                    f" run `mvemo cache verify {self.path}` and --recompute {name}"
                )

    def todo(self, name: str) -> np.ndarray:
        """Rows still to compute: not done and not failed, or computed from media that has changed since."""
        opened = self._set(name)
        n = len(self._ids)
        status = opened.column("status", n)[self._listed]
        stale = opened.column("media_key", n)[self._listed] != self._media_keys[self._listed]
        return np.flatnonzero((status == TODO) | ((status != TODO) & stale))

    @_disk_errors
    def write(self, name: str, rows: Sequence[int], data: np.ndarray | Sequence[np.ndarray]) -> list[int]:
        """Write rows of a feature set and mark them done once their data is flushed.

        Parameters
        ----------
        name : str
            Feature-set name.
        rows : sequence of int
            Cache rows, one per array.
        data : ndarray or sequence of ndarray
            One array per row, of the set's ``row_shape`` (for a variable-length
            set, up to ``row_shape[0]`` long on the first axis; longer is cut).

        Returns
        -------
        list of int
            Rows refused because they hold NaN or inf: they are marked failed with
            that reason, so nothing non-finite ever reaches the cache.
        """
        opened = self._set(name)
        accepted: dict[int, tuple[np.ndarray, int]] = {}  # stored row -> (values, valid length)
        refused = []
        for row, values in zip(rows, data):
            padded, length = self._fit(opened, name, values)
            if not _finite(padded):
                refused.append(int(row))
            else:
                accepted[int(self._listed[row])] = (padded, length)
        stored = np.array(sorted(accepted), dtype=np.int64)
        if stored.size and int(stored[-1]) >= opened.stop:
            raise CacheError(
                f"feature set {name!r} holds no row for clip {self._ids[int(stored[-1])]!r}; prepare the set first"
            )
        runs = list(opened.runs(stored))
        self._mark_todo(opened, runs, stored)
        for position, index, first, count in runs:  # consecutive rows in one write
            block = np.ascontiguousarray(np.stack([accepted[int(r)][0] for r in stored[position : position + count]]))
            opened.writable(index)["data"].write_direct(block, dest_sel=np.s_[first : first + count])
        for index in {index for _, index, _, _ in runs}:
            opened.files[index].flush()
        for position, index, first, count in runs:
            span = stored[position : position + count]
            with step("checksums"):
                checksums = [row_checksum(accepted[int(r)][0]) for r in span]
            opened.set_rows(
                index,
                list(range(first, first + count)),
                checksum=checksums,
                valid_length=[accepted[int(r)][1] for r in span],
                media_key=self._media_keys[span],
                status=DONE,
            )
        for index in {index for _, index, _, _ in runs}:
            opened.files[index].flush()
        for row in refused:
            self.fail(name, row, "the extractor produced NaN or inf values")
        return refused

    def as_stored(self, name: str, values: np.ndarray) -> np.ndarray | None:
        """``values`` as a row of set ``name`` holds them once written (cut or zero-padded to its length, in its
        dtype), or None where ``write`` would refuse them (NaN or inf)."""
        padded, _ = self._fit(self._set(name), name, values)
        return padded if _finite(padded) else None

    @staticmethod
    def _fit(opened: OpenSet, name: str, values: np.ndarray) -> tuple[np.ndarray, int]:
        variable = bool(opened.attrs["variable_length"])
        return fit_row(np.asarray(values), opened.row_shape, opened.dtype, name, variable)

    def _mark_todo(self, opened: OpenSet, runs: list[tuple[int, int, int, int]], stored: np.ndarray) -> None:
        """Mark to do, and flush, the rows about to be overwritten that hold a status (a stale row being computed
        again): a kill while their new bytes land then leaves rows to do, never a done row with other bytes."""
        status = opened.column("status", len(self._ids))
        for position, index, first, count in runs:
            held = np.flatnonzero(status[stored[position : position + count]] != TODO)
            if held.size:
                opened.set_rows(index, (first + held).tolist(), status=TODO)
                opened.files[index].flush()

    @_disk_errors
    def fail(self, name: str, row: int, reason: str, *, status: int = FAILED) -> None:
        """Record that a clip could not be computed for a feature set, with the reason.

        ``status=ABSENT`` records instead that the clip has no such modality (not a failure).
        """
        opened = self._set(name)
        stored = int(self._listed[row])
        if stored >= opened.stop:
            raise CacheError(f"feature set {name!r} holds no row for clip {self._ids[stored]!r}; prepare the set first")
        if status == FAILED:  # an absent modality needs no reason: the manifest gives it
            append_error(self.path, name, self._ids[stored], reason)
        index, local = opened.locate(stored)
        opened.set_rows(index, [local], media_key=self._media_keys[stored], status=status)
        opened.files[index].flush()
