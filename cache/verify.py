"""``mvemo cache verify``: find what is wrong in a cache, row by row."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mvemo.cache.fingerprint import fingerprint, media_hash, media_stat_key
from mvemo.cache.h5file import row_checksum
from mvemo.cache.layout import ABSENT, CLIPS, DONE, FAILED, TODO, feature_path
from mvemo.cache.lock import lock_state
from mvemo.cache.read import Cache


@dataclass
class VerifyReport:
    """Problems found (corruption, staleness) and facts (failures, lock state)."""

    problems: list[str] = field(default_factory=list)
    stale: dict[str, list[str]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    lock: str = "free"
    rows_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cache(path: str | os.PathLike[str]) -> VerifyReport:
    """Check every done row of every feature set: finite values, stored checksum, shape.

    Also recomputes the fingerprint from the stored record, lists rows computed
    from media that has changed since (stale: ``extract`` recomputes them), and
    reports the lock state. Clips recorded as failed are listed, not problems.
    """
    report = VerifyReport(lock=lock_state(path))
    with Cache(path) as cache:
        current = _current_media_hashes(cache)
        report.failures = cache.failures()
        for name in cache.feature_sets():
            group = cache.file[feature_path(name)]
            record = json.loads(group.attrs["record"])
            if fingerprint(record) != group.attrs["fingerprint"]:
                report.problems.append(f"{name}: the stored fingerprint does not match its stored config record")
            if list(group["data"].shape[1:]) != record["layout"]["row_shape"]:
                report.problems.append(
                    f"{name}: rows of shape {group['data'].shape[1:]}, config says {record['layout']['row_shape']}"
                )
            status = group["status"][:]
            checksums = group["checksum"][:]
            row_hashes = group["media_hash"][:]
            data = group["data"]
            for row in np.flatnonzero(status == DONE):
                values = data[row]
                report.rows_checked += 1
                clip = cache.clip_ids[row]
                if values.dtype.kind == "f" and not np.isfinite(values).all():
                    report.problems.append(f"{name}, clip {clip!r}: non-finite values in a done row")
                elif row_checksum(values) != checksums[row]:
                    report.problems.append(f"{name}, clip {clip!r}: row bytes do not match their checksum (corrupt)")
            stale = np.flatnonzero((status != TODO) & (row_hashes != current))
            if stale.size:
                report.stale[name] = [cache.clip_ids[r] for r in stale]
                report.problems.append(
                    f"{name}: {stale.size} rows computed from media that has changed since"
                    f" (first: {cache.clip_ids[stale[0]]!r}); rerun `mvemo extract` to recompute them"
                )
            bad_status = np.flatnonzero(~np.isin(status, (TODO, DONE, FAILED, ABSENT)))
            if bad_status.size:
                report.problems.append(f"{name}: {bad_status.size} rows with an unknown status value")
    if report.lock != "free":
        report.problems.append(f"the cache is {report.lock}: a write is in progress")
    return report


def _current_media_hashes(cache: Cache) -> np.ndarray:
    """Each clip's media hash now, where its files are reachable; the recorded one elsewhere."""
    clips = cache.file[CLIPS]
    hashes = cache.media_hash.copy()
    stats = clips["media_stat"][:]
    for row, (video, audio) in enumerate(zip(clips["video"][:], clips["audio"][:])):
        paths = [Path(p.decode()) if p else None for p in (video, audio)]
        if any(p is not None and not p.exists() for p in paths):
            continue
        if media_stat_key(paths).encode() != stats[row]:
            hashes[row] = media_hash(paths).encode()
    return hashes
