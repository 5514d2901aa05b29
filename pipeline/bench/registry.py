"""Every ``mvemo bench``: how the command line runs it, at the size its figures are measured at or at its smallest
(``--smallest``: a check, in seconds, that it runs and prints what it promises; not a measurement), and the keys its
JSON document promises. Each bench's module is imported when it runs, so that ``mvemo bench --help`` imports none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Options:
    """What the command line gives the benches (``mvemo bench --help``), and ``smallest``."""

    clips: int | None = None
    folder: str | None = None
    grow_gb: float = 0.2
    device: str = "auto"
    minutes: float = 1.0
    weights_dir: str | None = None
    cut: str = "pooled"
    workers: tuple[int, ...] = (1, 2)
    smallest: bool = False

    def size(self, measured: Any, smallest: Any) -> Any:
        """``smallest`` where the bench runs at its smallest, else ``measured``."""
        return smallest if self.smallest else measured

    def n_clips(self, measured: int, smallest: int) -> int:
        """The clips of ``--clips``, else the bench's own count at its size."""
        return self.clips or self.size(measured, smallest)


@dataclass(frozen=True)
class Bench:
    """A bench: ``run`` with the command line's options, and the keys of its JSON document (those of every run: a
    bench that lacks what it needs prints ``{"skipped": why}`` instead)."""

    run: Callable[[Options], dict[str, Any]]
    keys: frozenset[str]


def _audio(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.audio import bench_audio

    return bench_audio(repeat=o.size(5, 1))


def _video(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.video import SIZES, bench_video

    return bench_video(repeat=o.size(3, 1), sizes=o.size(tuple(SIZES), ("240p",)), folder=o.folder)


def _extract(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.extract import bench_extract

    return bench_extract(o.device, folder=o.folder, repeat=o.size(None, 1))


def _encoders(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.extract import bench_encoders

    return bench_encoders(repeat=o.size(5, 1))


def _cache(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.cache import bench_cache

    return bench_cache(n_clips=o.n_clips(3438, 24), grow_gb=o.size(o.grow_gb, 0.001), folder=o.folder)


def _fuse(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.fuse import bench_fuse

    return bench_fuse(n_clips=o.n_clips(3438, 144), folder=o.folder)


def _upper(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.upper import bench_upper

    return bench_upper(n_clips=o.n_clips(900, 48), cut=o.cut, weights_dir=o.weights_dir, one_epoch=o.smallest)


def _scale(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.scale import bench_scale

    return bench_scale(n_clips=o.n_clips(200, 4), duration_s=o.size(30.0, 3.0), folder=o.folder)


def _stage_one(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.stage_one import STARTUP_WORKERS, bench_stage_one

    return bench_stage_one(
        workers=o.size(o.workers, (1,)),
        clips_per_worker=o.size(8, 1),
        sizes=o.size(("240p", "720p"), ("240p",)),
        seconds=o.size(30, 3),
        startup_workers=o.size(STARTUP_WORKERS, 2),
        folder=o.folder,
    )


def _timeline(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.timeline import bench_timeline

    size = o.size("1080p", "240p")
    return bench_timeline(minutes=o.size(o.minutes, 0.5), size=size, weights_dir=o.weights_dir, folder=o.folder)


def _pages(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.pages import SECONDS, bench_pages

    return bench_pages(repeat=o.size(3, 1), seconds=o.size(SECONDS, 40), size=o.size((1920, 1080), (426, 240)))


def _memory(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.memory import bench_memory

    n_clips = o.n_clips(20_000, 240)
    return bench_memory(n_clips=n_clips, cut_clips=n_clips // 4, k=o.size(6, 3), folder=o.folder)


def _faces(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.faces import bench_faces

    sizes = o.size(("240p", "1080p"), ("240p",))
    return bench_faces(sizes=sizes, repeat=o.size(3, 1), weights_dir=o.weights_dir, folder=o.folder)


def _short_clips(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.short_clips import bench_short_clips

    n_clips = o.n_clips(24, 2)
    return bench_short_clips(n_clips=n_clips, repeat=o.size(2, 1), weights_dir=o.weights_dir, folder=o.folder)


def _predict(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.predict import bench_predict

    return bench_predict(songs=o.size(9, 2), repeat=o.size(2, 1), weights_dir=o.weights_dir, folder=o.folder)


def _catalogue(o: Options) -> dict[str, Any]:
    from mvemo.pipeline.bench.catalogue import bench_catalogue

    workers = o.size(max(o.workers), 1)
    return bench_catalogue(
        n_clips=o.n_clips(16, 2), workers=workers, repeat=o.size(2, 1), weights_dir=o.weights_dir, folder=o.folder
    )


def _keys(text: str) -> frozenset[str]:
    return frozenset(text.split())


CACHE_KEYS = "clips cache_bytes write_s write_gbps memcpy_write_gbps embeddings_read_gbps random_mel_read_ms"
CACHE_KEYS += " numpy_random_mel_copy_ms memcpy_gbps read_fraction_of_memcpy"
CACHE_KEYS += " add_set_cache_gb add_set_ms add_set_bytes_ratio add_set_time_ratio"
FUSE_KEYS = "clips folds integrated_dims head models cv_all_models_s cv_all_models_2_processes_s logreg_fit_s"
FUSE_KEYS += " cv_over_one_fit cv_2_processes_over_one_fit integrated_accuracy nested_cv_all_models_s"
FUSE_KEYS += " nested_over_one_fit nested_integrated_accuracy"
PREDICT_KEYS = {
    f"{how}: {figure}"
    for how in ("alone", "served")
    for figure in (
        "first song s (T1)",
        "all songs s (TN)",
        "each further song s ((TN - T1) / (N - 1))",
        "first over each further (goal <= 2)",
    )
}
PREDICT_KEYS |= {"alone: imports of torch and librosa s", "alone: T1 less those imports and one further song s"}
PAGE_KEYS = {
    f"{kind}_{figure}"
    for kind in ("classes", "tags", "values")
    for figure in ("page_kb", "load_ms", "drawn_ms", "ready_over_blank")
}
BENCHES: dict[str, Bench] = {
    "audio": Bench(
        _audio,
        _keys(
            "clip steps_ms total_ms descriptors_ms descriptor_steps_ms expressive_ms sets_ms opensmile over_opensmile"
            " naive_ms speedup"
        ),
    ),
    "video": Bench(
        _video,
        _keys(
            "ms_per_clip decode_all_ms ratio in_process_ms decoded_frames floor ratio_over_floor gop clips bitrate_mbps"
            " cpu_count repeat"
        ),
    ),
    "extract": Bench(_extract, _keys("device nets")),
    "encoders": Bench(_encoders, _keys("musicnn msdvgg")),
    "cache": Bench(_cache, _keys(CACHE_KEYS)),
    "fuse": Bench(_fuse, _keys(FUSE_KEYS)),
    "upper": Bench(
        _upper,
        _keys("clips training_clips cut layers upper_fold_s frozen_fold_s upper_over_frozen chosen goal_s"),
    ),
    "scale": Bench(
        _scale,
        _keys("clips workers serial_s processes_s dask_s speedup_processes speedup_dask clips_per_s_serial"),
    ),
    "stage-one": Bench(_stage_one, _keys("sets clips_per_worker cores pool_startup_s sizes")),
    "timeline": Bench(
        _timeline,
        _keys(
            "video model windows wall_s cpu_s wall_s_per_video_minute cpu_s_per_video_minute goal_s_per_video_minute"
            " peak_rss_mb cores"
        ),
    ),
    "pages": Bench(_pages, _keys("video windows blank_page_load_ms goal_ready_ms") | PAGE_KEYS),
    "memory": Bench(_memory, _keys("cv_lldstats fuse_cut")),
    "faces": Bench(
        _faces,
        _keys("cores frames expression_net")
        | {f"240p_{figure}" for figure in ("frames_ms", "faces_ms", "faces_over_frames", "working_size")},
    ),
    "short-clips": Bench(
        _short_clips,
        _keys("clips source sets weights")
        | {"short s", "looped s", "padded s", "short over looped (goal <= 0.33)", "short over padded"},
    ),
    "predict": Bench(_predict, _keys("model songs") | PREDICT_KEYS),
    "catalogue": Bench(_catalogue, _keys("4q-quadrants valence-arousal mved-classes")),
}
