"""Stage two never mixes two states of a cache: `mvemo extract` that removes, renames or adds clips while a
cross-validation reads the cache stops the run with one line naming the cache and what changed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.fuse.cv import cross_validate
from mvemo.manifests import Clip, Manifest
from mvemo.manifests.errors import CacheError
from mvemo.pipeline.executors import Executor, ProcessExecutor
from tests.fuse.helpers import CLASSES, embedding_cache, read_by
from tests.fuse.test_dimensional import valued

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
        manifest,
        clips=tuple(replace(c, clip_id=f"{c.clip_id}-renamed") if i < 6 else c for i, c in enumerate(manifest.clips)),
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


def net_spec(net: str, dim: int) -> FeatureSpec:
    """The spec ``embedding_cache`` writes a pretrained net's ``emb/<net>/all`` with."""
    config = {"protocol": "leakfree", "finetune": "none", "inputs": read_by(net)}
    return FeatureSpec(f"emb/{net}/all", (dim,), "float32", net, "1", config, f"{net}-weights-sha256")


def write_rows(cache: Path, spec: FeatureSpec, rows: np.ndarray, values: np.ndarray, recompute: bool = False) -> None:
    """What an ``mvemo extract`` run in another process writes into ``cache`` meanwhile."""
    with CacheWriter(cache, manifest_of(cache)) as writer:
        writer.prepare([spec], recompute=[spec.name] if recompute else [])
        writer.write(spec.name, rows, values)


def in_another_process(*args: Any) -> None:
    with ProcessExecutor(1) as pool:
        for result in pool.map(write_rows, *([a] for a in args)):
            if isinstance(result, BaseException):  # the executor hands a job's error back as its result
                raise result


def test_fuse_saves_the_models_its_cv_scored_and_stops_where_an_input_became_complete_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent extract completes set c between the CV and the final fit: the CV scored integrated-audio over a
    and b, and the final fit must not save another model under its name and score."""
    from mvemo.fuse import stage

    nets = {"a": (6, 1.0), "b": (6, 1.0), "c": (6, 1.0)}
    cache = embedding_cache(tmp_path / "c", nets=nets, n_per_class=10, written={"emb/c/all": 12})
    rest = np.arange(12, 30)
    fitted_with: list[list[str]] = []
    original = stage.train_final

    def complete_c_first(cache_: Cache, models: list, *args: Any, **kwargs: Any) -> Any:
        fitted_with.append([m.name for m in models])
        in_another_process(cache, net_spec("c", 6), rest, np.ones((len(rest), 6), np.float32))
        return original(cache_, models, *args, **kwargs)

    monkeypatch.setattr(stage, "train_final", complete_c_first)
    with pytest.raises(CacheError) as raised:
        stage.fuse_cache(cache, tmp_path / "out")
    assert fitted_with == [["a", "b", "integrated-audio"]], "the CV's own models, not those of the cache now"
    message = str(raised.value)
    assert "c became complete since the cross-validation" in message and "mvemo fuse" in message and "\n" not in message
    assert not (tmp_path / "out" / "model").exists(), "no model its CV never scored"


def test_the_final_fit_stops_on_a_set_written_again_after_the_cv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mvemo.fuse import stage

    cache = embedding_cache(tmp_path / "c", nets={"a": (6, 1.0), "b": (6, 1.0)}, n_per_class=10)
    original = stage.train_final

    def restart_a_first(*args: Any, **kwargs: Any) -> Any:  # extract --recompute emb/a/all started meanwhile
        in_another_process(cache, net_spec("a", 6), np.arange(5), np.zeros((5, 6), np.float32), True)
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, "train_final", restart_a_first)
    with pytest.raises(CacheError, match=r"changed while stage two read it: emb/a/all was written again"):
        stage.fuse_cache(cache, tmp_path / "out")


def test_a_run_reads_no_set_it_does_not_need_not_even_one_being_started_over(tmp_path: Path) -> None:
    cache = embedding_cache(tmp_path / "c", nets={"a": (6, 1.0), "z": (6, 1.0)}, n_per_class=8)
    with Cache(cache) as opened:
        for segment in (cache / "sets" / "emb" / "z" / "all").glob(
            "*.h5"
        ):  # extract removed z's files to start it over
            segment.unlink()
        assert cross_validate(opened, models="a").metrics["a"]["accuracy"]["mean"] > 0.5


def test_a_segment_removed_before_the_final_fit_stops_it_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mvemo.fuse import stage

    cache = embedding_cache(tmp_path / "c", nets={"a": (6, 1.0), "b": (6, 1.0)}, n_per_class=8)
    original = stage.train_final

    def remove_a_first(*args: Any, **kwargs: Any) -> Any:
        for path in (cache / "sets" / "emb" / "a" / "all").glob("*.h5"):
            path.unlink()
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, "train_final", remove_a_first)
    with pytest.raises(CacheError) as raised:
        stage.fuse_cache(cache, tmp_path / "out")
    assert "emb/a/all" in str(raised.value) and "\n" not in str(raised.value)


def paper_net(cache: Path, net: str, dim: int) -> None:
    """``emb/<net>/all`` fine-tuned on every clip (the papers' protocol), as ``mvemo extract --protocol paper``
    writes."""
    config = {"protocol": "paper", "finetune": "full"}
    spec = FeatureSpec(f"emb/{net}/all", (dim,), "float32", net, "1", config, f"{net}-checkpoint-sha256")
    manifest = valued(manifest_of(cache))  # the values ``embedding_cache(..., retarget=valued)`` gave the clips
    with CacheWriter(cache, manifest) as writer:
        writer.prepare([spec])
        writer.write(spec.name, range(len(manifest)), np.zeros((len(manifest), dim), np.float32))


@pytest.mark.parametrize("target", ["label", "valence"])
def test_fuse_reads_stamps_and_describes_only_the_sets_of_its_models(tmp_path: Path, target: str) -> None:
    """An unrelated set fine-tuned on every clip, and another one being started over (its files removed, as extract
    does), never enter a model of other sets: not its fingerprint, provenance or protocol, and they stop nothing."""
    from mvemo.fuse.stage import fuse_cache

    cache = embedding_cache(tmp_path / "c", nets={"a": (6, 1.0), "z": (6, 1.0)}, n_per_class=10, retarget=valued)
    paper_net(cache, "p", 6)
    with Cache(cache) as opened:
        own = opened.combined_fingerprint(["emb/a/all"])
        assert own != opened.combined_fingerprint()
    for segment in (cache / "sets" / "emb" / "z" / "all").glob("*.h5"):
        segment.unlink()
    _, folder = fuse_cache(cache, tmp_path / "out", models="a", target=target)
    saved = json.loads((folder / "model.json").read_text())
    assert saved["protocol"] == "leakfree" and saved["cache_fingerprint"] == own and list(saved["provenance"]) == ["a"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report.get("cache_fingerprint", own) == own and list(report["provenance"]) == ["a"]
    assert report.get("protocol", "leakfree") == "leakfree"


def test_an_unrelated_set_completed_between_the_cv_and_the_final_fit_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mvemo.fuse import stage

    cache = embedding_cache(
        tmp_path / "c", nets={"a": (6, 1.0), "z": (6, 1.0)}, n_per_class=10, written={"emb/z/all": 12}
    )
    original = stage.train_final

    def complete_z_first(*args: Any, **kwargs: Any) -> Any:
        rest = np.arange(12, 30)
        in_another_process(cache, net_spec("z", 6), rest, np.ones((len(rest), 6), np.float32))
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, "train_final", complete_z_first)
    _, folder = stage.fuse_cache(cache, tmp_path / "out", models="a")
    assert (folder / "model.json").is_file()


def test_a_handle_opened_before_the_clips_changed_still_names_the_clips_not_a_set(tmp_path: Path) -> None:
    """A worker's handle, opened before `mvemo extract` removed clips, reads its old clip table: the change shows
    first as a set's new stamp (the clip table's time is in it), and must still be named as the clips gone."""
    cache = embedding_cache(tmp_path / "c", nets={}, vectors={"descriptors": (8, 1.0)}, n_per_class=8)
    manifest = manifest_of(cache)
    with Cache(cache) as before:
        pinned = before.pin(["descriptors"])
        with CacheWriter(cache, removed(manifest)):
            pass
        with pytest.raises(CacheError, match=r"changed while stage two read it: 3 clip\(s\) gone \(first: "):
            pinned.require_set(before, "descriptors")
