"""The clips' tags and values in a cache: written with the clip table, rewritten when the manifest changes them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from mvemo.cache.layout import TARGETS_FILE
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.manifests import Manifest
from tests.cache.helpers import stand_in_manifest


def with_targets(manifest: Manifest, tags: tuple[str, ...] = ("calm", "dark")) -> Manifest:
    clips = tuple(
        replace(c, tags=tuple(t for j, t in enumerate(tags) if (i >> j) & 1), valence=i / 2, arousal=1 - i / 20)
        for i, c in enumerate(manifest.clips)
    )
    return replace(manifest, clips=clips, tags=tags, scale=(-1.0, 6.0))


def test_targets_follow_the_manifest_by_row(tmp_path: Path) -> None:
    manifest = with_targets(stand_in_manifest(tmp_path / "media"))
    with CacheWriter(tmp_path / "cache", manifest):
        pass
    with Cache(tmp_path / "cache") as cache:
        assert cache.targets.tags == ("calm", "dark") and cache.targets.scale == (-1.0, 6.0)
        assert np.array_equal(cache.targets.tag_matrix, manifest.tag_matrix)
        np.testing.assert_array_equal(cache.targets.values, manifest.values)
    fewer = replace(manifest, clips=manifest.clips[::-1][:8])  # reordered, four clips removed
    changed = with_targets(fewer, tags=("happy", "calm", "dark"))
    with CacheWriter(tmp_path / "cache", changed):
        pass
    with Cache(tmp_path / "cache") as cache:
        order = [cache.clip_ids.index(c) for c in changed.clip_ids]
        assert cache.targets.tags == ("happy", "calm", "dark")
        assert np.array_equal(cache.targets.tag_matrix[order], changed.tag_matrix), "a new vocabulary rewrites them"
        np.testing.assert_array_equal(cache.targets.values[order], changed.values)


def test_a_manifest_without_targets_leaves_none(tmp_path: Path) -> None:
    manifest = stand_in_manifest(tmp_path / "media")
    with CacheWriter(tmp_path / "cache", with_targets(manifest)):
        pass
    with CacheWriter(tmp_path / "cache", manifest):
        pass
    assert not (tmp_path / "cache" / TARGETS_FILE).exists()
    with Cache(tmp_path / "cache") as cache:
        assert cache.targets.tags == () and cache.targets.tag_matrix.shape == (12, 0)
