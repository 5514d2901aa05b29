"""Stage two never mixes two states of a cache: `mvemo extract` that removes, renames or adds clips while a
cross-validation reads the cache stops the run with one line naming the cache and what changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.fuse.cv import cross_validate
from mvemo.manifests import Clip, Manifest
from mvemo.manifests.errors import CacheError
from mvemo.pipeline.executors import Executor, ProcessExecutor
from tests.fuse.helpers import CLASSES, embedding_cache

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy


class ChangedAfterFirstFit(Executor):
    """Runs the jobs on ``inner``; once the first result is back, ``change`` rewrites the cache, as an extract
    started meanwhile would."""

    def __init__(self, inner: Executor, change: Callable[[], None]) -> None:
        self.inner, self.change = inner, change

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], resources: Any = None) -> Iterator[Any]:
        results = self.inner.map(fn, *iterables)
        yield next(results)
        self.change()
        yield from results

    def close(self, *, stop: bool = False) -> None:
        self.inner.close(stop=stop)


def manifest_of(cache: Path) -> Manifest:
    with Cache(cache) as read:
        clips = tuple(
            Clip(c, CLASSES[y], audio=Path(a), fold=int(f))
            for c, y, a, f in zip(read.clip_ids, read.y, read.media["audio"], read.folds)
        )
    return Manifest(CLASSES, clips)


def removed(manifest: Manifest) -> Manifest:
    return replace(manifest, clips=manifest.clips[3:])


def renamed(manifest: Manifest) -> Manifest:
    return replace(
        manifest, clips=tuple(replace(c, clip_id=f"{c.clip_id}-renamed") if i < 6 else c for i, c in enumerate(manifest.clips))
    )


def added_first(manifest: Manifest) -> Manifest:
    return replace(
        manifest, clips=tuple(replace(c, clip_id=f"new{i}") for i, c in enumerate(manifest.clips[:3])) + manifest.clips
    )


@pytest.mark.parametrize("change", [removed, renamed, added_first])
@pytest.mark.parametrize("pool", [False, True], ids=["serial", "processes"])
def test_a_cache_changed_during_a_run_stops_it_naming_the_cache_and_the_change(
    tmp_path: Path, change: Callable[[Manifest], Manifest], pool: bool
) -> None:
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"descriptors": (8, 1.0)}, n_per_class=8)
    manifest = manifest_of(cache)

    def extract_meanwhile() -> None:
        with CacheWriter(cache, change(manifest)):
            pass

    executor = ChangedAfterFirstFit(ProcessExecutor(1) if pool else Executor(), extract_meanwhile)
    with executor, Cache(cache) as opened, pytest.raises(CacheError) as raised:
        cross_validate(opened, models="descriptors", repeats=3, executor=executor)
    message = str(raised.value)
    assert f"cache {str(cache)!r} changed while stage two read it" in message
    assert ("gone" in message) == (change is not added_first) and ("new" in message) == (change is not removed)
    assert "\n" not in message


def test_clips_appended_at_the_end_also_stop_a_run_that_read_the_table_before(tmp_path: Path) -> None:
    """A run reads the clip table it started with, whole: a clip added at the end is a change too."""
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"descriptors": (8, 1.0)}, n_per_class=8)
    manifest = manifest_of(cache)
    extra = replace(manifest.clips[0], clip_id="appended")

    def append() -> None:
        with CacheWriter(cache, replace(manifest, clips=(*manifest.clips, extra))):
            pass

    with Cache(cache) as opened, pytest.raises(CacheError, match=r"1 clip\(s\) new \(first: 'appended'\)"):
        cross_validate(opened, models="descriptors", repeats=2, executor=ChangedAfterFirstFit(Executor(), append))


def test_an_unchanged_cache_reads_the_same_with_or_without_the_pin(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"descriptors": (8, 1.0)}, n_per_class=8)
    with Cache(cache) as opened, ProcessExecutor(1) as pool:
        serial = cross_validate(opened, models="descriptors", repeats=2)
        pooled = cross_validate(opened, models="descriptors", repeats=2, executor=pool)
    assert serial.metrics["descriptors"]["accuracy"] == pooled.metrics["descriptors"]["accuracy"]


def test_a_set_written_again_during_a_run_stops_it_naming_the_set(tmp_path: Path) -> None:
    """The same clips, but a set extract started over (``--recompute``): a later fold would read its new rows."""
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"descriptors": (8, 1.0)}, n_per_class=8)
    with Cache(cache) as opened:
        values, columns = opened.read_matrix("descriptors"), tuple(opened.columns("descriptors"))
    spec = FeatureSpec("descriptors", (8,), "float32", "mvemo.descriptors", "1", {}, columns=columns)

    def recompute() -> None:
        with CacheWriter(cache, manifest_of(cache)) as writer:
            writer.prepare([spec], recompute=["descriptors"])
            writer.write("descriptors", range(len(values)), values[::-1])

    with (
        Cache(cache) as opened,
        pytest.raises(CacheError, match=r"changed while stage two read it: descriptors was written again"),
    ):
        cross_validate(opened, models="descriptors", repeats=2, executor=ChangedAfterFirstFit(Executor(), recompute))
