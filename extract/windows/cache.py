"""Stage one over whole files: the window cache's times, and each clip's vectors pooled from its windows.

The window cache (``extract.windows.plan``) is computed by stage one's own passes, its rows being
windows; this module adds what only windows have: ``window_times`` (each row's start and end
in seconds) and, in the cache itself, every vector set of the window cache (embeddings,
descriptors, ...) pooled over each clip's windows under the set's own name, its config that of
the window set plus a ``windows`` block (length, hop, pooling, the window set's fingerprint and,
for an embedding, the configs of its inputs, which live in the window cache). A clip with a
window that failed fails with that window's reason: a clip-level vector is never pooled from
part of a clip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mvemo.cache.handle import CacheHandle
from mvemo.cache.layout import ABSENT, FAILED, IMPORTED, POOLED_KEY, FeatureSpec, single_file_error
from mvemo.cache.read import Cache
from mvemo.extract.windows.plan import TIMES_SET, WindowConfig, WindowPlan, pool, pooled_width
from mvemo.manifests.errors import ConfigError


def times_spec(length_s: float, hop_s: float) -> FeatureSpec:
    """``window_times``: a window row's start and end in seconds on its file's timeline."""
    config = {"length_s": length_s, "hop_s": hop_s}
    return FeatureSpec(TIMES_SET, (2,), "float64", extractor="windows", extractor_version="1", config=config)


def write_times(plan: WindowPlan, windows_cache: CacheHandle, *, length_s: float, hop_s: float) -> None:
    """Write every window row's times into the window cache (opened for ``plan.manifest``)."""
    writer = windows_cache.writer
    writer.prepare([times_spec(length_s, hop_s)], recompute=[TIMES_SET])  # 16 bytes a window: written whole
    rows = writer.todo(TIMES_SET)
    if rows.size:
        times = [np.array([w.start_s, w.end_s]) for w in (plan.windows[writer.clip_ids[r]] for r in rows)]
        writer.write(TIMES_SET, rows.tolist(), times)


def pooled_sets(cache: Cache) -> list[str]:
    """The window cache's sets pooled into clip-level vectors: the embeddings, and the vectors of named columns
    (descriptors, ...: what stage two reads as they are)."""
    return [
        name
        for name in cache.feature_sets()
        if name.startswith("emb/") or (cache.columns(name) and len(cache.row_shape(name)) == 1)
    ]


def is_pooled(config: dict[str, Any]) -> bool:
    return POOLED_KEY in config


@dataclass
class PoolSummary:
    """Per pooled set: clips done, and clip id -> reason for those that failed."""

    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)


def pool_windows(
    plan: WindowPlan, source: Cache, cache: CacheHandle, windows: WindowConfig, *, length_s: float
) -> PoolSummary:
    """Pool each clip's windows of every vector set of the window cache (``source``, read after its last write)
    into the cache.

    Pooled sets are written whole on every run (cheap: one vector per clip), so they always follow their window
    sets. A clip is pooled once every window of it is done; it fails with the reason of a window that failed, or
    of its file when its length could not be read; it stays to do while a window is (a set this run did not
    compute, whose file has changed since).
    """
    summary = PoolSummary()
    writer = cache.writer
    names = pooled_sets(source)
    specs = [_pooled_spec(source, name, windows, length_s) for name in names]
    writer.prepare(specs, recompute=[name for name in names if name in writer.feature_sets()])
    rows_of = plan.rows_of(writer.clip_ids, source.clip_ids)
    for name in names:
        status, errors = source.status(name), source.errors(name)
        values, done = source.read_rows(name)
        rows, vectors, failed = [], [], {}
        for row, clip_id in enumerate(writer.clip_ids):
            of_clip = rows_of[clip_id]
            failure = plan.problems.get(clip_id) or _window_failure(clip_id, of_clip, status, errors, source.clip_ids)
            if failure:
                failed[clip_id] = failure
                writer.fail(name, row, failure)
            elif of_clip and done[of_clip].all():
                rows.append(row)
                vectors.append(pool(values[of_clip], windows.pooling))
            elif of_clip and (status[of_clip] == ABSENT).all():
                writer.fail(name, row, "", status=ABSENT)
        refused = writer.write(name, rows, vectors) if rows else []
        summary.done[name] = len(rows) - len(refused)
        summary.failed[name] = failed | {writer.clip_ids[r]: "the pooled vector holds NaN or inf" for r in refused}
    return summary


def _window_failure(clip_id: str, rows: list[int], status: np.ndarray, errors: dict[int, str], ids: list[str]) -> str:
    """Why the first failed window of a clip failed ("" when none did)."""
    bad = [row for row in rows if status[row] == FAILED]
    return f"clip {clip_id!r}: its window {ids[bad[0]]!r} failed: {errors.get(bad[0], '')}" if bad else ""


def check_windowing(cache: CacheHandle, *, windowed: bool) -> None:
    """Refuse, before any work, a run that would mix in one cache the sets of a clip's first window and those pooled
    over its windows: stage two would fuse them and predict could not compute both.

    Raises
    ------
    CacheError
        For a single-file cache of an earlier version, naming ``mvemo cache migrate``.
    ConfigError
        When the cache holds sets of the other kind, naming them and what to do.
    """
    if cache.path.is_file():
        raise single_file_error(cache.path)
    if not cache.exists:
        return
    path, reader = cache.path, cache.reader
    computed = [name for name in reader.feature_sets() if IMPORTED not in reader.config(name)]  # imports: either kind
    pooled = [name for name in computed if is_pooled(reader.config(name))]
    other = sorted(set(computed) - set(pooled))
    if windowed and other:
        raise ConfigError(
            f"cache {str(path)!r} holds sets of each clip's first window ({', '.join(other)}); [clip] windows = true"
            f" pools whole files, and one cache must not mix the two: give --cache a new folder, or remove those sets"
            f" (`mvemo cache gc {path} --features ... --nets ...`)"
        )
    if not windowed and pooled:
        raise ConfigError(
            f"cache {str(path)!r} holds sets pooled over windows ({', '.join(pooled)}): run with the same [clip]"
            " windows = true table (--config), or give --cache another folder"
        )


def _pooled_spec(source: Cache, name: str, windows: WindowConfig, length_s: float) -> FeatureSpec:
    attrs = source.set_attrs(name)
    record = json.loads(attrs["record"])
    config = source.config(name)
    if "checkpoint" in config:  # a fine-tuned net's: its path from the folder holding the cache, not the window cache
        checkpoint = config["checkpoint"]
        config["checkpoint"] = {**checkpoint, "path": os.path.join(source.path.parent.name, checkpoint["path"])}
    block = {"length_s": length_s, "hop_s": windows.hop_s, "pooling": windows.pooling, "of": source.fingerprint(name)}
    if "inputs" in config:  # an embedding: the configs of the sets it read, to compute them again at predict time
        block["input_configs"] = {kind: source.config(kind) for kind in config["inputs"]}
    window_set = FeatureSpec(
        name,
        source.row_shape(name),
        "float32",
        extractor=record["extractor"],
        extractor_version=record["extractor_version"],
        weights_sha256=source.weights_sha256(name),
        weights_file=source.weights_file(name),
        columns=tuple(source.columns(name)),
    )
    return pooled_spec(window_set, {**config, POOLED_KEY: block})


def pooled_spec(window_set: FeatureSpec, config: dict[str, Any]) -> FeatureSpec:
    """The spec of a vector set pooled over windows, from its window set's (``window_set``; its config aside) and
    its own ``config``, whose ``POOLED_KEY`` block names the pooling: the width and column names pooling gives."""
    pooling = config[POOLED_KEY]["pooling"]
    columns = window_set.columns
    if columns and pooling == "mean+std":
        columns = tuple(f"mean_{c}" for c in columns) + tuple(f"std_{c}" for c in columns)
    return replace(
        window_set,
        row_shape=(pooled_width(window_set.row_shape[0], pooling),),
        dtype="float32",
        config=config,
        columns=columns,
    )
