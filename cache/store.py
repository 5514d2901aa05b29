"""The single writer of a cache file: resumable, fingerprinted and safe against ``kill -9``.

Crash safety rests on two rules, chosen by killing writers at random moments
(tests/cache/test_crash.py):

1. **Row writes never touch HDF5 metadata.** Every dataset is allocated whole
   when it is created (early allocation, no fill), so writing a row only
   overwrites raw bytes in place. A row's data is flushed before its ``done``
   status is written and flushed: a kill leaves either a done row with correct
   data or a row still to do.
2. **Structural changes are copy-on-write.** Creating feature sets, appending
   clips or starting a set over happen on a copy of the file that replaces the
   original by an atomic rename, so a kill mid-change leaves the old file whole.
   This costs one file copy per run that adds sets (seconds per GB), never per row.

HDF5's SWMR mode was the alternative: it cannot create objects while writing and
leaves a killed writer's file flagged until ``h5clear`` runs, which h5py lacks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mvemo.cache.fingerprint import canonical_json, media_hash, media_stat_key, record_diff
from mvemo.cache.h5file import (
    append_clips,
    create_clip_table,
    create_feature_set,
    feature_set_names,
    fit_row,
    fsync_dir,
    open_h5,
    row_checksum,
    set_rows,
)
from mvemo.cache.layout import (
    CLIPS,
    DONE,
    ERROR_BYTES,
    FAILED,
    TODO,
    FeatureSpec,
    feature_path,
)
from mvemo.cache.lock import CacheLock
from mvemo.manifests.errors import CacheError
from mvemo.manifests.schema import Manifest

VERIFY_SAMPLE = 8


def _disk_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an I/O failure (full disk, file size limit) into a ``CacheError`` that says how to resume."""

    @functools.wraps(method)
    def guarded(self: CacheWriter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OSError, RuntimeError) as err:  # h5py reports a failed flush as RuntimeError
            self._tmp.unlink(missing_ok=True)
            raise CacheError(
                f"writing cache {str(self.path)!r} failed ({err}); free disk space (or raise the file size limit)"
                " and run again: rows already done are kept"
            ) from None

    return guarded


class CacheWriter:
    """The one process that writes a cache file; workers send it arrays.

    Parameters
    ----------
    path : path-like
        The cache file, created when absent.
    manifest : Manifest
        The clip table. Clips new to the cache are appended; a clip of the cache
        that the manifest lacks, or (once embeddings exist) a changed label or
        fold, raises ``CacheError``.
    lock : CacheLock, optional
        A lock already held (``extract`` takes it before heavy imports);
        otherwise the writer takes its own.

    Raises
    ------
    CacheError
        When another process writes the cache, or the manifest contradicts it.
    """

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest, *, lock: CacheLock | None = None) -> None:
        self.path = Path(path)
        self._own_lock = lock is None
        self.lock = CacheLock(self.path).acquire() if lock is None else lock
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._tmp.unlink(missing_ok=True)
        self._file: h5py.File | None = None
        try:
            if not self.path.exists():
                self._restructure(lambda f: create_clip_table(f, manifest))
            self._file = self._open()
            self._sync_clips(manifest)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------

    def _open(self) -> h5py.File:
        try:
            return open_h5(self.path, "r+")
        except OSError as err:
            raise CacheError(
                f"cache {str(self.path)!r} cannot be opened for writing ({err}); move it away and run again"
            ) from None

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError, RuntimeError):  # a full disk: what is flushed is consistent, the rest is redone
                self._file.close()
            self._file = None
        if self._own_lock:
            self.lock.release()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            raise CacheError(f"cache {str(self.path)!r} is closed")
        return self._file

    @_disk_errors
    def _restructure(self, change: Callable[[h5py.File], None]) -> None:
        """Apply a structural change on a copy of the file and rename it over the original."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path.exists():
            shutil.copyfile(self.path, self._tmp)
        with open_h5(self._tmp, "r+" if self.path.exists() else "w") as f:
            change(f)
        with open(self._tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        self._file = self._open()

    # -- clips -------------------------------------------------------------------------

    @property
    def clip_ids(self) -> list[str]:
        return [s.decode() for s in self.file[f"{CLIPS}/clip_id"][:]]

    def _sync_clips(self, manifest: Manifest) -> None:
        cached = self.clip_ids
        row_of = {clip_id: row for row, clip_id in enumerate(cached)}
        missing = [c for c in cached if c not in set(manifest.clip_ids)]
        if missing:
            raise CacheError(
                f"cache {str(self.path)!r} holds {len(missing)} clips the manifest lacks (first: {missing[0]!r});"
                " use the manifest the cache was built from, or write to a new cache file"
            )
        classes = self.file.attrs["classes"]
        if classes != canonical_json(list(manifest.classes)):
            raise CacheError(
                f"cache {str(self.path)!r} has classes {classes}, the manifest {list(manifest.classes)};"
                " write to a new cache file"
            )
        new = [c for c in manifest.clips if c.clip_id not in row_of]
        if new:
            self._restructure(lambda f: append_clips(f, new, manifest))
        self._update_clip_columns(manifest)
        self._update_media_hashes(manifest)

    def _update_clip_columns(self, manifest: Manifest) -> None:
        clips = self.file[CLIPS]
        order = self._rows_of(manifest.clip_ids)
        labels = np.empty(len(order), dtype=np.int32)
        labels[order] = manifest.y
        folds = np.full(len(order), -1, dtype=np.int32)
        if manifest.has_folds:
            folds[order] = manifest.folds
        changed = np.flatnonzero((clips["label"][:] != labels) | (clips["fold"][:] != folds))
        if changed.size and any(name.startswith("emb/") for name in self.feature_sets()):
            clip_id = self.clip_ids[changed[0]]
            raise CacheError(
                f"clip {clip_id!r}: its label or fold in the manifest differs from the cache's, whose embeddings"
                f" were trained on the old ones ({changed.size} clips differ); restore the manifest or write to a new cache"
            )
        if changed.size:
            clips["label"][:] = labels
            clips["fold"][:] = folds
            self.file.flush()

    def _update_media_hashes(self, manifest: Manifest) -> None:
        clips = self.file[CLIPS]
        rows = self._rows_of(manifest.clip_ids)
        stats = clips["media_stat"][:]
        hashes = clips["media_hash"][:]
        for row, clip in zip(rows, manifest.clips):
            paths = [p if p is not None and p.exists() else None for p in (clip.video, clip.audio)]
            key = media_stat_key(paths).encode()
            if key != stats[row]:
                stats[row], hashes[row] = key, media_hash(paths).encode()
        if not np.array_equal(stats, clips["media_stat"][:]):
            clips["media_hash"][:] = hashes
            clips["media_stat"][:] = stats
            self.file.flush()
        self._media_hash = hashes

    def _rows_of(self, clip_ids: Sequence[str]) -> np.ndarray:
        row_of = {clip_id: row for row, clip_id in enumerate(self.clip_ids)}
        return np.array([row_of[c] for c in clip_ids], dtype=np.int64)

    def row_of(self, clip_id: str) -> int:
        return int(self._rows_of([clip_id])[0])

    # -- feature sets ------------------------------------------------------------------

    def feature_sets(self) -> list[str]:
        return feature_set_names(self.file)

    def prepare(self, specs: Iterable[FeatureSpec], *, recompute: Iterable[str] = ()) -> None:
        """Make sure every spec's feature set exists with its fingerprint.

        A set that exists with the same fingerprint is kept (a sample of its done
        rows is read back and checked); a set in ``recompute`` starts over; new
        sets are created in one structural change.

        Raises
        ------
        CacheError
            When a set exists with another fingerprint, naming both fingerprints,
            the config keys that differ and ``--recompute NAME``; or when a sampled
            done row no longer matches its checksum.
        """
        specs = list(specs)
        recompute = set(recompute)
        existing = set(self.feature_sets())
        create = []
        for spec in specs:
            if spec.name in existing and spec.name not in recompute:
                self._check_fingerprint(spec)
                self._verify_sample(spec.name)
            else:
                create.append(spec)
        if create:
            n = len(self.clip_ids)

            def create_all(f: h5py.File) -> None:
                for spec in create:
                    create_feature_set(f, spec, n, replace=spec.name in existing)

            self._restructure(create_all)

    def _check_fingerprint(self, spec: FeatureSpec) -> None:
        attrs = self.file[feature_path(spec.name)].attrs
        if attrs["fingerprint"] == spec.fingerprint:
            return
        diff = record_diff(json.loads(attrs["record"]), spec.record)
        raise CacheError(
            f"feature set {spec.name!r} in {str(self.path)!r} was computed with another config"
            f" (cached fingerprint {attrs['fingerprint'][:12]}, now {spec.fingerprint[:12]}; differing: {', '.join(diff)});"
            f" run with --recompute {spec.name} to start it over, or use another cache file"
        )

    def _verify_sample(self, name: str) -> None:
        group = self.file[feature_path(name)]
        done = np.flatnonzero(group["status"][:] == DONE)
        if not done.size:
            return
        sample = np.random.default_rng(len(done)).choice(done, size=min(VERIFY_SAMPLE, done.size), replace=False)
        checksums = group["checksum"][:]
        for row in sample:
            if row_checksum(group["data"][row]) != checksums[row]:
                raise CacheError(
                    f"feature set {name!r}, clip {self.clip_ids[row]!r}: stored row does not match its checksum;"
                    f" run `mvemo cache verify {self.path}` and --recompute {name}"
                )

    def todo(self, name: str) -> np.ndarray:
        """Rows still to compute: not done and not failed, or computed from media that has changed since."""
        group = self.file[feature_path(name)]
        status = group["status"][:]
        stale = group["media_hash"][:] != self._media_hash
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
        group = self.file[feature_path(name)]
        dset = group["data"]
        row_shape = dset.shape[1:]
        written, refused, checksums, lengths = [], [], [], []
        for row, values in zip(rows, data):
            padded, length = fit_row(np.asarray(values), row_shape, dset.dtype, name, group.attrs["variable_length"])
            if padded.dtype.kind == "f" and not np.isfinite(padded).all():
                refused.append(int(row))
                continue
            padded = np.ascontiguousarray(padded)
            dset.write_direct(padded[None], dest_sel=np.s_[int(row) : int(row) + 1])
            written.append(int(row))
            checksums.append(row_checksum(padded))
            lengths.append(length)
        self.file.flush()
        if written:
            media = self._media_hash[written]
            set_rows(group, written, checksum=checksums, valid_length=lengths, media_hash=media, error=b"", status=DONE)
            self.file.flush()
        for row in refused:
            self.fail(name, row, "the extractor produced NaN or inf values")
        return refused

    @_disk_errors
    def fail(self, name: str, row: int, reason: str, *, status: int = FAILED) -> None:
        """Record that a clip could not be computed for a feature set, with the reason.

        ``status=ABSENT`` records instead that the clip has no such modality (not a failure).
        """
        group = self.file[feature_path(name)]
        error = reason.encode("utf-8")[:ERROR_BYTES]
        set_rows(group, [row], error=error, media_hash=self._media_hash[row], status=status)
        self.file.flush()
