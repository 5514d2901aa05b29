"""The timing helper of ``mvemo bench``: figures and baselines take turns; a bench without its weights says so."""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mvemo.cache.read import Cache
from mvemo.extract.handcrafted.descriptors import FAMILIES
from mvemo.manifests.synthetic import write_media
from mvemo.pipeline.bench.audio import bench_audio
from mvemo.pipeline.bench.common import best_of_each
from mvemo.pipeline.bench.timeline import bench_timeline


def test_functions_take_turns_and_each_gets_its_fastest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    durations = {"figure": itertools.cycle([3.0, 1.0, 2.0]), "baseline": itertools.cycle([5.0, 4.0, 6.0])}
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def run(name: str) -> None:
        calls.append(name)
        clock[0] += next(durations[name])

    best = best_of_each({"figure": lambda: run("figure"), "baseline": lambda: run("baseline")}, repeat=3)
    assert calls == ["figure", "baseline"] * 3
    assert best == {"figure": 1.0, "baseline": 4.0}


def test_the_audio_bench_says_it_lacks_opensmile_and_compares_with_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "opensmile", None)  # what `import opensmile` meets where it is not installed
    clip = write_media(tmp_path / "clip.wav", y=0.1 * np.sin(np.arange(3 * 16000) / 5.0).astype(np.float32), sr=16000)
    figures = bench_audio(str(clip), repeat=1)
    assert "mvemo[opensmile]" in figures["opensmile"]["skipped"]
    assert figures["over_opensmile"] == {}
    assert set(figures["sets_ms"]) == {"mel", "lld", "mel+lld", "descriptors", "mel+lld+descriptors"}
    assert set(figures["descriptor_steps_ms"]) == {"spectra", *FAMILIES}


def test_timeline_bench_says_which_weights_it_lacks(tmp_path: Path) -> None:
    figures = bench_timeline(weights_dir=str(tmp_path), folder=str(tmp_path))
    assert set(figures) == {"skipped"}
    assert "i3d_rgb_kinetics400.npz" in figures["skipped"] and "--weights-dir" in figures["skipped"]


@pytest.mark.heavy
def test_the_stage_one_bench_times_each_worker_count_in_steady_state_and_says_where_the_time_went(
    tmp_path: Path,
) -> None:
    from mvemo.pipeline.bench.stage_one import bench_stage_one, table

    document = bench_stage_one(
        workers=(1, 2), clips_per_worker=1, sizes=("240p",), seconds=3, startup_workers=2, folder=str(tmp_path)
    )
    assert document["pool_startup_s"]["2"] > 0
    one, two = document["sizes"]["240p"]
    assert (one["workers"], one["clips"]) == (1, 1) and (two["workers"], two["clips"]) == (2, 2)
    for run in (one, two):
        workers = {name: share for name, share in run["shares"].items() if name.startswith("workers: ")}
        assert sum(workers.values()) == pytest.approx(1.0, abs=0.01), "the workers' time, all of it accounted for"
        assert run["shares"]["workers: decode video"] > 0 and run["shares"]["writer: writing rows"] > 0
        assert run["largest_share"] != "writer: waiting for clips", "waiting is no work"
    assert [row[:2] for row in table(document)] == [["240p", "1"], ["240p", "2"]]


@pytest.mark.heavy
def test_the_short_clips_bench_runs_the_three_kinds_of_clip_through_stage_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short clips, the same looped to fill the window and followed by silence, each into a fresh cache (here two
    generated clips through log-mel and musicnn, from random weights: the same work)."""
    from mvemo.pipeline.bench import short_clips

    monkeypatch.setattr(short_clips, "MUSEMO", tmp_path / "no-musemo")
    monkeypatch.setattr(short_clips, "SETS", ("logmel",))
    monkeypatch.setattr(short_clips, "NETS", ("musicnn",))
    manifests, source = short_clips.clips(tmp_path / "clips", 2)
    assert source == "generated" and set(manifests) == {"short", "looped", "padded"}
    lengths = {name: [len(sf.read(clip.audio)[0]) for clip in m.clips] for name, m in manifests.items()}
    assert lengths["short"] == [6 * 44100] * 2 and lengths["looped"] == lengths["padded"] == [30 * 44100] * 2
    figures = short_clips.bench_short_clips(n_clips=2, weights_dir=str(tmp_path / "no-weights"), folder=str(tmp_path))
    assert figures["weights"].startswith("seeded random") and figures["clips"] == 2


@pytest.mark.heavy
def test_the_predict_bench_times_one_song_and_several_alone_and_served(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over generated songs, with the tiny demo's model of the LLD statistics (no net weights), in processes of their
    own and served by `mvemo serve` (each run's `--verbose` line says where it ran, which the bench checks); a
    ready-made model whose weights are absent is skipped, saying which files."""
    from mvemo.pipeline.bench import predict

    monkeypatch.setattr(predict, "FOURQ", tmp_path / "no-4q")
    figures = predict.bench_predict(
        model=str(tiny_demo / "model"), name="lldstats", songs=3, repeat=1, folder=str(tmp_path)
    )
    assert figures["songs"] == "3 generated 30-s songs" and figures["model"].endswith("(lldstats)")
    for how in ("alone", "served"):  # each run ran where it was to, or the bench raised
        assert figures[f"{how}: first song s (T1)"] > 0 and figures[f"{how}: all songs s (TN)"] > 0
    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    skipped = predict.bench_predict(weights_dir=str(tmp_path / "empty"))
    assert skipped["skipped"].startswith("the weights of 4q-quadrants are not found: musicnn_msd_musicnn.npz")


@pytest.mark.heavy
def test_the_catalogue_bench_times_stage_one_and_predict_over_the_same_clips(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny demo's LLD statistics model against stage one computing its LLDs (what the model reads, not the
    demo's other sets); clips taken from each class in
    turn; a model whose weights are absent is skipped, saying which files."""
    from mvemo.manifests.io import read_manifest
    from mvemo.pipeline.bench import catalogue
    from mvemo.pipeline.predict.predictor import Predictor

    manifest = read_manifest(tiny_demo / "manifest.csv")
    manifest = dataclasses.replace(manifest, clips=manifest.clips[:4])
    predictor = Predictor(tiny_demo / "model", "lldstats")
    figures = catalogue.compare({}, predictor, manifest, workers=1, repeat=2, weights_dir=None, tmp=tmp_path)
    assert figures["extract clips/s"] > 0 and figures["predict clips/s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache0", "cache1"], "each stage one in a cache of its own"
    with Cache(tmp_path / "cache0") as cache:
        assert cache.feature_sets() == ["lld"], "stage one computes what the model reads"

    for name, count in (("a", 3), ("b", 1)):  # from each class in turn: a/0, b/0, a/1
        for i in range(count):
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / name / f"{i}.wav").write_bytes(b"")
    taken = catalogue.first_clips(tmp_path / "data", tmp_path / "media", 3)
    assert [clip.clip_id for clip in taken.clips] == ["a/0.wav", "a/1.wav", "b/0.wav"] and {
        c.fold for c in taken.clips
    } == {0, 1}

    monkeypatch.setenv("MVEMO_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    skipped = catalogue.bench_catalogue(weights_dir=str(tmp_path / "empty"))
    assert skipped["4q-quadrants"]["skipped"].startswith("its weights are not found: musicnn_msd_musicnn.npz")


@pytest.mark.heavy
def test_the_pages_bench_opens_a_long_page_of_each_kind_beside_a_blank_one(tmp_path: Path) -> None:
    from mvemo.pipeline.bench.pages import bench_pages

    figures = bench_pages(repeat=1, folder=str(tmp_path))
    if "skipped" in figures:
        pytest.skip(figures["skipped"])
    assert figures["windows"] == 271 and figures["goal_ready_ms"] == 1000
    assert figures["blank_page_load_ms"] > 0
    for kind in ("classes", "tags", "values"):
        assert figures[f"{kind}_load_ms"] > 0 and figures[f"{kind}_drawn_ms"] > 0 and figures[f"{kind}_page_kb"] < 300


def test_the_pages_bench_says_what_it_lacks_without_a_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    from mvemo.pipeline.bench import pages

    monkeypatch.setattr(pages.shutil, "which", lambda name: None)
    assert pages.bench_pages() == {
        "skipped": "no Chromium: apt-get install chromium chromium-driver (.ci/run installs them)"
    }
