"""Fingerprints of feature sets and content hashes of media.

A feature set's fingerprint is the sha256 of everything that decides its
values except the inputs: the cache schema version, the extractor's name and
version, its full config and the weights' sha256. New clips can then be
appended under the same fingerprint, while each row records the content hash
of the media it was computed from, so a changed file makes only its rows stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal text whatever their dict order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def fingerprint_record(
    *, extractor: str, extractor_version: str, config: Mapping[str, Any], weights_sha256: str = ""
) -> dict[str, Any]:
    """Everything a feature set's fingerprint covers, as stored in its attributes."""
    return {
        "schema_version": SCHEMA_VERSION,
        "extractor": extractor,
        "extractor_version": extractor_version,
        "config": dict(config),
        "weights_sha256": weights_sha256,
    }


def fingerprint(record: Mapping[str, Any]) -> str:
    """sha256 (hex) of a ``fingerprint_record``."""
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


def record_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two records, sorted."""
    keys = sorted(set(old) | set(new))
    diff: list[str] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diff.extend(record_diff(a, b, prefix=f"{name}."))
        elif canonical_json(a) != canonical_json(b):
            diff.append(name)
    return diff


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, read in large blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def media_stat_key(paths: list[Path | None]) -> str:
    """sha256 (hex) of the size and modification time of each file: cheap to recompute, a memo key."""
    parts = []
    for path in paths:
        stat = None if path is None else os.stat(path)
        parts.append("-" if stat is None else f"{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def media_hash(paths: list[Path | None]) -> str:
    """Content hash (sha256 hex) of a clip's media files, in order; None marks an absent modality.

    Reading every byte costs about 1 ms per MB, far less than decoding them; the
    cache reads it again only for files whose ``media_stat_key`` changed (as git does).
    """
    return combined_digest([None if path is None else file_sha256(path) for path in paths])


def combined_digest(digests: list[str | None]) -> str:
    """``media_hash`` of files whose own sha256 (hex) are ``digests``; None marks an absent modality."""
    digest = hashlib.sha256()
    for one in digests:
        digest.update(b"-" if one is None else one.encode())
    return digest.hexdigest()
