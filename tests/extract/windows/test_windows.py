"""Stage one over whole files: windows on one time axis, the window cache, and clip vectors pooled from it."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.imported import import_vectors
from mvemo.cache.read import Cache
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.features import FeatureConfigs
from mvemo.extract.finetune.train import TrainConfig
from mvemo.extract.frame_sets import FrameConfig
from mvemo.extract.stage import extract_features
from mvemo.extract.windows.plan import TIMES_SET, WindowConfig, plan_clips, plan_windows, pool, window_cache
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.fuse.stage import fuse_cache
from mvemo.fuse.targets.values import cross_validate_values
from mvemo.manifests import Clip, Manifest
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.schema import group_id
from mvemo.manifests.synthetic import SyntheticConfig
from mvemo.pipeline.config import window_config
from mvemo.pipeline.demo import build_demo_manifest
from mvemo.pipeline.predict.inputs import model_inputs
from mvemo.pipeline.predict.timeline import clip_timeline

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

LENGTH_S, HOP_S, DURATION_S = 2.0, 1.5, 5.0


def configs() -> FeatureConfigs:
    return FeatureConfigs.of_window(
        AudioWindow(duration_s=LENGTH_S), frames=FrameConfig(n_frames=8, window_duration_s=LENGTH_S)
    )


def annotated(clip: Clip) -> Clip:
    """The clip with a CSV of its values each half second: valence rising 0.1 a second through its clip value."""
    path = clip.video.with_suffix(".va.csv")  # type: ignore[union-attr]
    times = np.arange(0.0, DURATION_S, 0.5)
    rows = [f"{t},{np.clip(clip.valence + 0.1 * (t - 2.5), -1, 1)},{clip.arousal}" for t in times]
    path.write_text("time_s,valence,arousal\n" + "\n".join(rows) + "\n")
    return replace(clip, annotations=path)


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Synthetic 5-s clips and one broken file, through stage one in 2-s windows every 1.5 s, pooled mean+std."""
    root = tmp_path_factory.mktemp("windows")
    manifest = build_demo_manifest(root / "data", SyntheticConfig(clips_per_class=4, duration_s=DURATION_S), k=2)
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    clips = (
        *map(annotated, manifest.clips),
        Clip("broken", manifest.classes[0], broken, broken, fold=0, valence=0.0, arousal=0.0),
    )
    manifest = replace(manifest, clips=clips)
    windows = WindowConfig(windows=True, hop_s=HOP_S, pooling="mean+std")
    summary = extract_features(
        manifest, root / "cache", features="descriptors", nets=("onedcnn",), configs=configs(), windows=windows
    )
    assert summary.failed, "the broken clip fails"
    return root / "cache", manifest


def test_windows_cover_the_file_and_end_at_its_end() -> None:
    windows = plan_windows(100.0, 30.0, 15.0)
    assert [(w.start_s, w.end_s) for w in windows] == [(0, 30), (15, 45), (30, 60), (45, 75), (60, 90), (70, 100)]
    assert [(w.start_s, w.end_s) for w in plan_windows(90.0, 30.0, 15.0)][-1] == (60, 90), "no extra window"
    assert [(w.start_s, w.end_s) for w in plan_windows(12.0, 30.0, 15.0)] == [(0, 30)], "short: one padded window"
    for duration_s in (60.0004, 60.069, 60.49):
        assert [w.start_s for w in plan_windows(duration_s, 30.0, 15.0)] == [0, 15, 30], "no near copy of a window"
    assert [w.start_s for w in plan_windows(60.5, 30.0, 15.0)] == [0, 15, 30, 30.5], "half a second has a window"
    for duration_s in (0.5, 2.0, 5.0, 7.3, 31.0):
        windows = plan_windows(duration_s, LENGTH_S, HOP_S)
        assert windows[0].start_s == 0.0
        assert all(w.end_s - w.start_s == pytest.approx(LENGTH_S) for w in windows)
        assert windows[-1].end_s == pytest.approx(max(duration_s, LENGTH_S), abs=1e-3)
        gaps = [b.start_s - a.end_s for a, b in itertools.pairwise(windows)]
        assert all(gap <= 0 for gap in gaps), "no second left out"


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [("mean", lambda x: x.mean(0)), ("max", lambda x: x.max(0)), ("mean+std", lambda x: np.r_[x.mean(0), x.std(0)])],
)
def test_pooling(pooling: str, expected, rng: np.random.Generator) -> None:
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(pool(x, pooling), expected(x))
    np.testing.assert_allclose(pool(x[:1], pooling)[:3], x[0])


def test_window_cache_holds_each_window_with_its_times_and_clip(windowed: tuple[Path, Manifest]) -> None:
    cache_path, manifest = windowed
    plan = plan_clips(manifest, length_s=LENGTH_S, hop_s=HOP_S)
    with Cache(window_cache(cache_path)) as cache:
        assert cache.clip_ids == list(plan.windows), "one row per window, in clip then time order"
        times = cache.read_matrix(TIMES_SET)
        np.testing.assert_allclose(times, [[w.start_s, w.end_s] for w in plan.windows.values()])
        clip_of = [plan.clip_of[row_id] for row_id in cache.clip_ids]
        fold_of = {c.clip_id: c.fold for c in manifest.clips}
        group_of = {c.clip_id: group_id(c.group, c.clip_id) for c in manifest.clips}
        assert cache.folds.tolist() == [fold_of[c] for c in clip_of], "a window is in its clip's fold"
        assert cache.groups == [group_of[c] for c in clip_of], "a clip's windows share its group, its own id for none"
        assert cache.groups[-1] == "broken"
        good = [c.clip_id for c in manifest.clips if c.clip_id != "broken"]
        assert all(sum(c == clip for c in clip_of) == 3 for clip in good), "5 s in 2-s windows every 1.5 s: 0, 1.5, 3"


def test_the_cache_holds_each_clip_pooled_from_its_windows(windowed: tuple[Path, Manifest]) -> None:
    cache_path, manifest = windowed
    plan = plan_clips(manifest, length_s=LENGTH_S, hop_s=HOP_S)
    with Cache(window_cache(cache_path)) as windows, Cache(cache_path) as cache:
        assert cache.clip_ids == manifest.clip_ids
        assert sorted(cache.feature_sets()) == ["descriptors", "emb/onedcnn/all"], "the vector sets, not the waveform"
        rows_of = plan.rows_of(cache.clip_ids, windows.clip_ids)
        for name in cache.feature_sets():
            assert cache.row_shape(name)[0] == 2 * windows.row_shape(name)[0], "mean+std"
            done = cache.done(name)
            assert done.tolist() == [c != "broken" for c in cache.clip_ids]
            for row in np.flatnonzero(done):
                expected = pool(windows.read_matrix(name, rows_of[cache.clip_ids[row]]), "mean+std")
                np.testing.assert_allclose(cache.read_matrix(name, [row])[0], expected, rtol=1e-5, atol=1e-6)
        assert cache.columns("descriptors")[0].startswith("mean_")
        reason = cache.errors("descriptors")[cache.clip_ids.index("broken")]
        assert "'broken'" in reason and "broken.mp4" in reason and "cannot decode" in reason, reason


def test_a_second_run_computes_nothing_again(windowed: tuple[Path, Manifest]) -> None:
    cache_path, manifest = windowed
    windows = WindowConfig(windows=True, hop_s=HOP_S, pooling="mean+std")
    again = extract_features(manifest, cache_path, features="descriptors", configs=configs(), windows=windows)
    assert all(s.computed == 0 for s in again.features.sets.values())
    assert again.pooled["descriptors"] == len(manifest) - 1


def test_one_cache_never_mixes_first_windows_and_pooled_windows(
    windowed: tuple[Path, Manifest], tmp_path: Path
) -> None:
    cache_path, manifest = windowed
    clips = replace(manifest, clips=manifest.clips[:4])
    extract_features(clips, tmp_path / "cache", features="descriptors", configs=configs())
    with pytest.raises(ConfigError, match=r"first window \(descriptors\).*must not mix"):
        extract_features(
            clips, tmp_path / "cache", features="descriptors", configs=configs(), windows=WindowConfig(windows=True)
        )
    with pytest.raises(ConfigError, match=r"pooled over windows \(descriptors, emb/onedcnn/all\)"):
        extract_features(manifest, cache_path, features="descriptors", configs=configs())


def test_an_imported_set_is_of_neither_kind(windowed: tuple[Path, Manifest], tmp_path: Path) -> None:
    clips = replace(windowed[1], clips=windowed[1].clips[:4])
    windows = WindowConfig(windows=True, hop_s=HOP_S, pooling="mean+std")
    extract_features(clips, tmp_path / "cache", features="descriptors", configs=configs(), windows=windows)
    mine = tmp_path / "mine.csv"
    mine.write_text("clip,x\n" + "".join(f"{clip.clip_id},{i}\n" for i, clip in enumerate(clips.clips)))
    import_vectors(tmp_path / "cache", "mine", mine)
    again = extract_features(clips, tmp_path / "cache", features="descriptors", configs=configs(), windows=windows)
    assert all(s.computed == 0 for s in again.features.sets.values()), "the import blocks no later run"


def test_a_fine_tuned_net_on_windows_reaches_predict(windowed: tuple[Path, Manifest], tmp_path: Path) -> None:
    _, manifest = windowed
    clips = replace(manifest, clips=tuple(c for c in manifest.clips if c.clip_id != "broken"))
    training = TrainConfig(finetune="last", max_epochs=1, patience=1, batch_size=8, validation_share=0.25)
    windows = WindowConfig(windows=True, hop_s=HOP_S)
    extract_features(
        clips, tmp_path / "cache", nets=("onedcnn",), training=training, configs=configs(), windows=windows
    )
    with Cache(tmp_path / "cache") as cache:
        assert "emb/onedcnn/fold0" in cache.feature_sets()
        assert cache.config("emb/onedcnn/all")["checkpoint"]["path"].startswith("cache/windows.checkpoints/")
        cached = cache.read_matrix("emb/onedcnn/all", [0])[0]
    fuse_cache(tmp_path / "cache", tmp_path / "report", models="onedcnn")
    saved = load_fusion_model(tmp_path / "report" / "model")
    computed = model_inputs(saved, "onedcnn", clips.clips[0])["onedcnn"][0]
    np.testing.assert_allclose(computed, cached, rtol=1e-4, atol=1e-5)


def test_predict_pools_a_new_file_as_stage_one_did(windowed: tuple[Path, Manifest], tmp_path: Path) -> None:
    cache_path, manifest = windowed
    fuse_cache(cache_path, tmp_path, models="descriptors,onedcnn")
    saved = load_fusion_model(tmp_path / "model")
    clip = manifest.clips[0]
    with Cache(cache_path) as cache:
        for name, set_name in (("descriptors", "descriptors"), ("onedcnn", "emb/onedcnn/all")):
            computed = model_inputs(saved, name, clip)[name][0]
            np.testing.assert_allclose(computed, cache.read_matrix(set_name, [0])[0], rtol=1e-4, atol=1e-5)


def test_the_timeline_of_a_pooled_model_labels_the_whole_as_predict_does(windowed, tmp_path: Path) -> None:
    cache_path, manifest = windowed
    fuse_cache(cache_path, tmp_path, models="descriptors")
    saved = load_fusion_model(tmp_path / "model")
    clip = manifest.clips[1]
    predicted = saved.predict("descriptors", model_inputs(saved, "descriptors", clip))[0]
    same_hop = clip_timeline(saved, "descriptors", clip, HOP_S)
    np.testing.assert_allclose(same_hop.overall, predicted, rtol=1e-6)
    assert [n for n in same_hop.notes if "--hop" in n] == []
    assert any("std 0" in n for n in same_hop.notes), "mean+std pooling read per window is said"
    other_hop = clip_timeline(saved, "descriptors", clip, 1.0)
    assert len(other_hop.windows) == 4 and any("--hop 1" in n for n in other_hop.notes)


def test_clip_table_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[clip]\nwindows = true\nhop_s = 10\npooling = "mean+std"\n')
    assert window_config(path) == WindowConfig(windows=True, hop_s=10.0, pooling="mean+std")
    for text, match in (("pooling = 'median'", "pooling"), ("hop_s = 0", "hop_s"), ("window = true", "unknown key")):
        path.write_text(f"[clip]\n{text}\n")
        with pytest.raises(ConfigError, match=match):
            window_config(path)


def test_windows_refuse_configs_that_would_not_cover_the_file(windowed: tuple[Path, Manifest], tmp_path: Path) -> None:
    _, manifest = windowed
    late = FeatureConfigs.of_window(AudioWindow(offset_s=1.0, duration_s=LENGTH_S))
    other_frames = FeatureConfigs.of_window(
        AudioWindow(duration_s=LENGTH_S), frames=FrameConfig(window_duration_s=30.0)
    )
    on = WindowConfig(windows=True)
    for bad, windows, match in (
        (late, on, "offset_s"),
        (other_frames, on, r"\[frames\] window_start_s"),
        (configs(), WindowConfig(windows=True, hop_s=LENGTH_S + 1), "hop_s"),
    ):
        with pytest.raises(ConfigError, match=match):
            extract_features(manifest, tmp_path / "c", features="descriptors", configs=bad, windows=windows)
    assert not (tmp_path / "c").exists(), "refused before anything is written"


def test_windows_of_annotated_clips_take_their_values_and_train_against_them(windowed: tuple[Path, Manifest]) -> None:
    cache, manifest = windowed
    with Cache(window_cache(cache)) as windows:
        times = windows.read_matrix(TIMES_SET)
        assert windows.targets.value_names == ("valence", "arousal")
        clip = manifest.clips[0]
        rows = [i for i, row_id in enumerate(windows.clip_ids) if row_id.startswith(f"{clip.clip_id}@")]
        for row in rows:
            start, end = times[row]
            seconds = np.arange(0.0, DURATION_S, 0.5)
            inside = (seconds >= start) & (seconds < end)
            expected = np.clip(clip.valence + 0.1 * (seconds[inside] - 2.5), -1, 1).mean()
            assert windows.targets.values[row, 0] == pytest.approx(expected), (
                "the mean of the annotations in the window"
            )
        assert len({round(windows.targets.values[r, 0], 6) for r in rows}) > 1, "windows of one clip differ"
    result = cross_validate_values(window_cache(cache), models="descriptors")
    assert np.isfinite(result.metrics["descriptors"]["valence"]["ccc"]), "stage two scores windows against them"
