"""The matrix each input reads from a cache: a net's embedding for a test fold, a vector set, or ``lldstats``
summarized from the LLDs; and why a row is missing."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from mvemo.cache.imported import reimport_command
from mvemo.cache.layout import DONE, FAILED
from mvemo.cache.read import Cache, PinnedCache
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.models import LLDSTATS, vector_sets
from mvemo.manifests.errors import CacheError, ConfigError


def input_set(cache: Cache, net: str, fold: int | None) -> str:
    """The feature set one net contributes for test fold ``fold`` (None: the final model, all clips).

    A fold reads ``emb/<net>/fold<k>``; it reads ``emb/<net>/all`` only where the net
    was never fine-tuned: a fine-tuned ``all`` has trained on the test fold, and a
    net with some fold sets but not this one is a fine-tuning that did not finish.
    """
    sets = set(cache.feature_sets())
    fold_set, all_set = f"emb/{net}/fold{fold}", f"emb/{net}/all"
    where = f"cache {str(cache.path)!r}"
    command = f"`mvemo extract MANIFEST --cache {cache.path} --nets {net}"
    if fold is None:
        if all_set in sets:
            return all_set
        raise CacheError(f"{where} lacks {all_set}; compute it with {command}`")
    if fold_set in sets:
        return fold_set
    if any(name.startswith(f"emb/{net}/fold") for name in sets):
        raise CacheError(
            f"{where} lacks {fold_set} while other folds of {net} are fine-tuned: the fine-tuning did not finish;"
            f" rerun it with {command} --finetune last|full` (it resumes where it stopped)"
        )
    if all_set not in sets:
        raise CacheError(f"{where} lacks {fold_set}; compute it with {command}`")
    if cache.config(all_set).get("finetune", "none") != "none":
        raise CacheError(
            f"{where} lacks {fold_set}, and {all_set} was fine-tuned on every clip, fold {fold}'s included:"
            f" testing on it would leak; fine-tune per fold with {command} --finetune last|full`"
        )
    return all_set


def input_set_name(cache: Cache, name: str, fold: int | None) -> str:
    """The cached set an input reads for test fold ``fold`` (None: the final model): ``lld`` for ``lldstats``, a
    vector set itself."""
    if name == LLDSTATS:
        return "lld"
    return name if name in vector_sets(cache) else input_set(cache, name, fold)


def in_sample_inputs(cache: Cache, sets: Mapping[str, str]) -> frozenset[str]:
    """The inputs (of ``sets``: input -> the set it reads) computed by a net fine-tuned on the clips it is read for:
    per fold, every training row trained it; for the final model, every row. Inner out-of-fold probabilities over
    them are in-sample."""
    return frozenset(
        name for name, set_name in sets.items() if cache.config(set_name).get("finetune", "none") != "none"
    )


def patch_count(cache: Cache, set_name: str) -> int | None:
    """How many 3-s patches per clip a set keeps, patch after patch (a music encoder's ``pool = "patches"``
    variant); None for a set of one vector per clip."""
    config = cache.config(set_name)
    return int(config["patches"]) if config.get("pool") == "patches" else None


# a music encoder's activations below layers that stage two fine-tunes (fuse.heads.upper;
# extract.nets.musicnn_patches.UPPER_CUTS)
CUT_LAYERS = ("pooled", "cnn2_cut", "cnn1_cut", "pool4")


def is_cut(cache: Cache, set_name: str) -> bool:
    """Whether a set holds per-patch activations at a cut, for ``fuse.heads.upper`` to fine-tune the layers above."""
    config = cache.config(set_name)
    return config.get("layer") in CUT_LAYERS and config.get("pool") == "patches"


def layers_above(cache: Cache, sets: Mapping[str, str], upper: Mapping[str, UpperLayers]) -> dict[str, UpperLayers]:
    """The published layers above the cut of each input (name -> its set) that holds activations at one, from
    ``upper``; an input without them is an error naming the fix."""
    out = {}
    for name, set_name in sets.items():
        if is_cut(cache, set_name):
            if name not in upper:
                raise ConfigError(
                    f"{name} holds a music encoder's activations at a cut: stage two fine-tunes the layers above it"
                    " from the published weights they came from; give --weights-dir DIR (the folder of the weights"
                    " stage one used)"
                )
            out[name] = upper[name]
    return out


def read_input(cache: Cache, set_name: str) -> tuple[Any, np.ndarray]:
    """The float32 matrix an input reads from ``set_name``, shape (n_clips, n_features), and the mask of rows done
    (float32 as cached: the heads' solver runs 3x faster than on float64, with the same accuracy). A cut's
    activations stay in the cache, read a batch at a time by the head that fine-tunes the layers above them
    (``CutRows``)."""
    if set_name == "lld":
        X, done = lld_statistics(cache)
    elif is_cut(cache, set_name):
        source = _SharedCache(cache.pinned or cache.pin([set_name]))
        return CutRows(source, set_name, np.arange(len(cache)), cache.row_shape(set_name)), cache.done(set_name)
    else:
        X, done = cache.read_rows(set_name)
    return np.asarray(X.reshape(len(cache), -1), dtype=np.float32), done


class _SharedCache:
    """A cache opened on first read and closed when no ``CutRows`` reads it any more: the run's own handle may be
    closed long before (a worker process opens the cache for each fold's inputs only). It must still hold the clip
    table the run read (``PinnedCache``)."""

    def __init__(self, pinned: PinnedCache) -> None:
        self.pinned = pinned
        self._cache: Cache | None = None

    def get(self) -> Cache:
        if self._cache is None:
            cache = Cache(self.pinned.path)
            try:
                self.pinned.require_same(cache)
            except CacheError:
                cache.close()
                raise
            self._cache = cache
            weakref.finalize(self, cache.close)
        return self._cache


class CutRows:
    """Rows of a set of activations at a cut (``is_cut``), left in the cache: a cut holds about 0.5 MB a clip
    (musicnn's ``cnn2_cut``), so 5,000 clips read whole took 2.7 GB, and every fold's training rows a copy more.

    It stands where an input's matrix does, shape (rows, columns) float32: indexing by rows gives the ``CutRows``
    of those rows, reading nothing; ``read(rows)`` reads them (``fuse.heads.upper_net.rows_of``), and ``np.asarray``
    all of them (a cut concatenated with another input, ``musicnn.upper+i3d``, is read whole)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, source: _SharedCache, set_name: str, rows: np.ndarray, row_shape: tuple[int, ...]) -> None:
        self.source, self.set_name, self.rows, self.row_shape = source, set_name, rows, row_shape

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), int(np.prod(self.row_shape))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: Any) -> CutRows:
        return CutRows(self.source, self.set_name, self.rows[rows], self.row_shape)

    def read(self, rows: Any = slice(None)) -> np.ndarray:
        """Rows ``rows`` of these, read; the set must be as the run pinned it and each row still done (a run of
        ``mvemo extract`` may redo a row)."""
        cache = self.source.get()
        self.source.pinned.require_set(cache, self.set_name)
        X, done = cache.read_rows(self.set_name, self.rows[rows])
        if not done.all():
            raise CacheError(
                f"cache {str(self.source.pinned.path)!r}: {np.count_nonzero(~done)} row(s) of {self.set_name}"
                " were started over while stage two read them; run stage two again once `mvemo extract` has finished"
            )
        return np.asarray(X.reshape(len(X), -1), dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.read() if dtype is None else self.read().astype(dtype)


def missing_reasons(cache: Cache, set_name: str) -> dict[int, str]:
    """Why each row a set does not hold is missing: its failure, a changed media file, or never computed."""
    status = cache.status(set_name)
    done = cache.done(set_name)
    errors = cache.errors(set_name)
    redo, redo_stale = reimport_command(cache, set_name), reimport_command(cache, set_name, stale=True)
    reasons = {}
    for row in np.flatnonzero(~done):
        if status[row] == FAILED:
            reasons[int(row)] = f"{set_name} failed: {errors[int(row)]}"
        elif status[row] == DONE:
            reasons[int(row)] = (
                f"{set_name} is stale: the media changed since it was computed; {redo_stale or 'rerun `mvemo extract`'}"
            )
        else:
            reasons[int(row)] = f"{set_name} not computed; {redo or 'run `mvemo extract` on the manifest'}"
    return reasons


# Clips whose LLDs are summarized at once: (64, 1292, 63) float64 and its temporaries stay near 150 MB, whatever the
# number of clips (the whole tensor of 100,000 clips was 33 GB as float32).
LLD_CHUNK_ROWS = 64


def lld_statistics(cache: Cache) -> tuple[np.ndarray, np.ndarray]:
    """``lldstats`` of every clip of the cache, read ``LLD_CHUNK_ROWS`` clips at a time, and the mask of clips with
    LLDs."""
    lengths = cache.valid_lengths("lld")
    columns = cache.row_shape("lld")[-1]
    stats = np.empty((len(cache), 2 * columns), dtype=np.float32)
    done = np.zeros(len(cache), dtype=bool)
    for start in range(0, len(cache), LLD_CHUNK_ROWS):
        rows = np.arange(start, min(start + LLD_CHUNK_ROWS, len(cache)))
        lld, done[rows] = cache.read_rows("lld", rows)
        stats[rows] = summarize_lld(lld, lengths[rows])
    return stats, done


def summarize_lld(lld: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over each clip's valid frames of every LLD column.

    ``lld`` (n_clips, n_frames, n_columns), ``lengths`` (n_clips,); returns (n_clips, 2 * n_columns).
    """
    lld = np.asarray(lld, dtype=np.float64)
    lengths = np.maximum(np.asarray(lengths), 1)
    valid = (np.arange(lld.shape[1])[None, :] < lengths[:, None])[..., None]
    mean = (lld * valid).sum(axis=1) / lengths[:, None]
    var = (((lld - mean[:, None, :]) * valid) ** 2).sum(axis=1) / lengths[:, None]
    return np.concatenate([mean, np.sqrt(var)], axis=1)
