"""``mvemo cache verify``: find what is wrong in a cache, row by row."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvemo.cache.fingerprint import fingerprint, media_hash, media_stat_key
from mvemo.cache.h5file import row_checksum
from mvemo.cache.imported import reimport_command
from mvemo.cache.layout import ABSENT, DONE, FAILED, TODO, media_keys
from mvemo.cache.lock import lock_state
from mvemo.cache.read import Cache
from mvemo.cache.sets import OpenSet, chain
from mvemo.manifests.errors import CacheError


@dataclass
class VerifyReport:
    """Problems found (corruption, staleness) and facts (failures, lock state, files a killed writer left)."""

    problems: list[str] = field(default_factory=list)
    stale: dict[str, list[str]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    lock: str = "free"
    rows_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cache(path: str | os.PathLike[str]) -> VerifyReport:
    """Check every done row of every feature set: finite values, stored checksum, shape.

    Also recomputes each segment's fingerprint from its stored record, lists rows
    computed from media that has changed since (stale: ``extract`` recomputes them),
    files a killed writer left (the next writer removes them), and the lock state.
    Clips recorded as failed are listed, not problems.
    """
    report = VerifyReport(lock=lock_state(path))
    with Cache(path) as cache:
        current = _current_media_hashes(cache)
        report.leftovers = [str(p) for p in Path(path).rglob(".*.tmp")]
        for name in cache.feature_sets():
            try:
                _check_set(cache, name, current, report)
            except (CacheError, KeyError, ValueError, OSError) as err:  # a file of the set is damaged: say which
                report.problems.append(
                    str(err) if isinstance(err, CacheError) else f"feature set {name!r}: unreadable ({err})"
                )
    if report.lock != "free":
        report.problems.append(f"the cache is {report.lock}: a write is in progress")
    return report


def _check_set(cache: Cache, name: str, current: np.ndarray, report: VerifyReport) -> None:
    """One set's segments, done rows (finite, checksums), stale rows and status values (``verify_cache``)."""
    _check_segments(cache, name, report)
    report.failures += cache.failures([name])
    status = cache.status(name)
    checksums = cache.per_row(name, "checksum")
    for row in np.flatnonzero(cache.done(name)).tolist():  # stale rows are listed below
        values = cache.read_matrix(name, [row])[0]
        report.rows_checked += 1
        clip = cache.clip_ids[row]
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            report.problems.append(f"{name}, clip {clip!r}: non-finite values in a done row")
        elif row_checksum(values) != checksums[row]:
            report.problems.append(f"{name}, clip {clip!r}: row bytes do not match their checksum (corrupt)")
    stale = np.flatnonzero((status != TODO) & (cache.per_row(name, "media_key") != current))
    if stale.size:
        report.stale[name] = [cache.clip_ids[r] for r in stale]
        remedy = reimport_command(cache, name, stale=True) or "rerun `mvemo extract` to recompute them"
        report.problems.append(
            f"{name}: {stale.size} rows computed from media that has changed since"
            f" (first: {cache.clip_ids[stale[0]]!r}); {remedy}"
        )
    bad_status = np.flatnonzero(~np.isin(status, (TODO, DONE, FAILED, ABSENT)))
    if bad_status.size:
        report.problems.append(f"{name}: {bad_status.size} rows with an unknown status value")


def _check_segments(cache: Cache, name: str, report: VerifyReport) -> None:
    """Each segment's fingerprint against its record, and against the set's; its row shape against the record."""
    opened = OpenSet(cache.path, name)
    try:
        first = opened.attrs["fingerprint"]
        for segment, f in zip(opened.segments, opened.files):
            record = json.loads(f.attrs["record"])
            where = f"{name} ({segment.path.name})"
            if fingerprint(record) != f.attrs["fingerprint"]:
                report.problems.append(f"{where}: the stored fingerprint does not match its stored config record")
            elif f.attrs["fingerprint"] != first:
                report.problems.append(f"{where}: computed with another config than the set's first segment")
            if list(f["data"].shape[1:]) != record["layout"]["row_shape"]:
                report.problems.append(
                    f"{where}: rows of shape {f['data'].shape[1:]}, config says {record['layout']['row_shape']}"
                )
    finally:
        opened.close()
    _, stray = chain(cache.path, name)
    report.leftovers += [str(s.path) for s in stray]


def _current_media_hashes(cache: Cache) -> np.ndarray:
    """Each clip's media key now, where its files are reachable; the recorded one elsewhere."""
    hashes = cache.media_hash.copy()
    for row, (video, audio) in enumerate(zip(cache.media["video"], cache.media["audio"])):
        paths = [Path(p) if p else None for p in (video, audio)]
        if any(p is not None and not p.exists() for p in paths):
            continue
        if media_stat_key(paths).encode() != cache.media_stat[row]:
            hashes[row] = media_hash(paths).encode()
    return media_keys(hashes)
