"""The parts of ``make gpu-check`` (``pipeline.bench.gpu``), each a function of the check's config that returns its
figures: ``tests``, ``decoders``, ``throughput``, ``extract``, ``finetune`` and ``leak``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from mvemo.cache.read import Cache
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.decode.nvdec import nvdec_problem
from mvemo.extract.features import FeatureConfigs, FeatureRunSummary
from mvemo.extract.finetune.train import TrainConfig
from mvemo.extract.forward import embed_rows, forward, place
from mvemo.extract.frame_sets import FrameConfig, SampledFrames, frames112, frames224, sample_frames
from mvemo.extract.nets import INIT, get_net, pretrained_file
from mvemo.extract.numba_once import compile_numba_once
from mvemo.extract.stage import StageOneSummary, extract_features
from mvemo.extract.weights.registry import find_weights
from mvemo.fuse.stage import run_cv
from mvemo.manifests.executor import Executor
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.synthetic import SyntheticConfig, write_synthetic_set
from mvemo.pipeline.bench.gpu_device import gpu_samples
from mvemo.pipeline.bench.stage_one import WARM_CLIPS_PER_WORKER, pool_startup_s, warmed_run
from mvemo.pipeline.bench.stage_one import figures as decode_figures
from mvemo.pipeline.bench.video import generate_clip
from mvemo.pipeline.executors import build_executor

DEVICE_TESTS = "tests/extract/test_nets_on_device.py"
FINETUNED = ("twodcnn", "musicnn")
EMBEDDED = {"i3d": "frames224", "musicnn": "logmel"}
EMBEDDED_ROWS = 768  # clips read per embedding rate, the cache's clips over again as needed
DECODE_CLIPS_PER_WORKER = 30  # the decode rate in steady state: 30 clips per worker after a warm-up clip each
TINY_S = 4.0


@dataclass(frozen=True)
class CheckConfig:
    """What the check runs on: ``shared`` holds ``weights/`` and ``data/mved-sample/`` (as ``../shared`` does);
    ``folder`` gets this run's caches and reports, ``generated`` the generated clips (kept and reused with --keep)."""

    device: torch.device
    shared: Path
    folder: Path
    generated: Path
    tiny: bool = False
    budget_s: float = 540.0
    clips: int = 96
    leak_epochs: int = 5

    @property
    def weights(self) -> Path:
        return self.shared / "weights"

    @property
    def workers(self) -> int:
        return 2 if self.tiny else os.cpu_count() or 1

    @property
    def sample(self) -> Path:
        return self.shared / "data" / "mved-sample"

    @property
    def features(self) -> FeatureConfigs:
        """The papers' 30-s window, or the tiny clips' 4 s (musicnn then embeds one patch, not ten of silence)."""
        return FeatureConfigs.of_window(AudioWindow(duration_s=TINY_S)) if self.tiny else FeatureConfigs()


def run_device_tests(config: CheckConfig) -> dict[str, Any]:
    """The tests marked ``gpu``, on ``config.device``, in a pytest process run from the clone's root."""
    if not Path(DEVICE_TESTS).is_file():
        return {"not_run": f"{DEVICE_TESTS} is not here: run the check from a clone's root"}
    report = config.folder / "device-tests.xml"
    env = os.environ | {"MVEMO_TEST_DEVICE": str(config.device), "MVEMO_SHARED": str(config.shared)}
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-o", "addopts=", "-o", "junit_family=xunit1", "-q", "-rs"]
    done = subprocess.run(
        [*command, "-p", "no:cacheprovider", f"--junitxml={report}", DEVICE_TESTS],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if not report.is_file():
        return {"exit_code": done.returncode, "output": done.stdout[-2000:] + done.stderr[-2000:]}
    return {"exit_code": done.returncode, **junit_outcomes(report)}


def junit_outcomes(junit_xml: Path) -> dict[str, Any]:
    """Each test's outcome, seconds and recorded properties, and the counts of each outcome."""
    tests: dict[str, Any] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        entry: dict[str, Any] = {"outcome": outcome, "seconds": round(float(case.get("time", 0.0)), 2)}
        entry |= {p.get("name", ""): float(p.get("value", "nan")) for p in case.iter("property")}
        if outcome != "passed":
            entry["message"] = next(child.get("message", "") for child in case if child.tag == outcome)[:500]
        tests[case.get("name", "")] = entry
    counts = {o: sum(t["outcome"] == o for t in tests.values()) for o in ("passed", "failure", "error", "skipped")}
    return {"counts": counts, "tests": tests}


# --- decoders ---------------------------------------------------------------------------------------------------------

PARITY_CLIPS = 12  # of the MVED sample, spread over its classes
PARITY_SAVED = 3  # clips whose frames from both decoders are kept beside the document (``decoded-frames.npz``)


def decoders(config: CheckConfig) -> dict[str, Any]:
    """The same videos' frames decoded on the CPU and on NVDEC, in this process: per clip, whether every pixel of
    frames224 and frames112 is equal, their mean and largest absolute difference (levels of 255), the cosine of I3D's
    embeddings of the two frames224 (float32; the published weights where found), and each decoder's seconds."""
    problem = nvdec_problem()
    if problem is not None:
        return {"nvdec": f"does not work here: {problem}"}
    videos = sorted(config.sample.glob("*/*.mp4"))[:: max(1, len(list(config.sample.glob("*/*.mp4"))) // PARITY_CLIPS)]
    videos = videos[:PARITY_CLIPS] + [generated_clip(config, size) for size in SIZES]
    net, weights = video_net(config)
    clips: dict[str, Any] = {}
    saved: dict[str, np.ndarray] = {}
    for video in videos:
        sampled: dict[str, SampledFrames] = {}
        seconds: dict[str, float] = {}
        for decoder in ("cpu", "nvdec"):
            sample_frames(video, FrameConfig(decoder=decoder, isolate=False))  # once to warm: the timed one is steady
            began = time.perf_counter()
            sampled[decoder] = sample_frames(video, FrameConfig(decoder=decoder, isolate=False))
            seconds[decoder] = time.perf_counter() - began
        cpu, gpu = sampled["cpu"], sampled["nvdec"]
        large, small = (frames224(cpu), frames224(gpu)), (frames112(cpu), frames112(gpu))
        embedded = [embed_rows_of(net, frames, config.device) for frames in large]
        difference = np.abs(large[0].astype(np.int16) - large[1].astype(np.int16))
        clips[video.name] = {
            "decoded_by": gpu.decoder,
            "frames224_equal": bool(np.array_equal(large[0], large[1])),
            "frames112_equal": bool(np.array_equal(small[0], small[1])),
            "mean_abs_diff": round(float(difference.mean()), 4),
            "max_abs_diff": int(difference.max()),
            "i3d_cosine": round(cosine(embedded[0], embedded[1]), 6),
            "cpu_s": round(seconds["cpu"], 3),
            "nvdec_s": round(seconds["nvdec"], 3),
        }
        if len(saved) < 2 * PARITY_SAVED:
            saved |= {f"{video.stem}/cpu": large[0], f"{video.stem}/nvdec": large[1]}
    np.savez_compressed(config.folder / "decoded-frames.npz", allow_pickle=False, **saved)
    every = list(clips.values())
    return {
        "i3d_weights": weights,
        "clips": clips,
        "all_equal": all(c["frames224_equal"] and c["frames112_equal"] for c in every),
        "min_i3d_cosine": min(c["i3d_cosine"] for c in every),
        "max_mean_abs_diff": max(c["mean_abs_diff"] for c in every),
    }


def video_net(config: CheckConfig) -> tuple[Any, str]:
    """I3D with its published weights where ``config.weights`` holds them, else random ones of the same shapes."""
    file = pretrained_file("i3d")
    weights = find_weights(file, config.weights) if file else None
    net = get_net("i3d", num_classes=6, weights=weights)
    return net, weights.name if weights else "random (the same shapes: parity only)"


def embed_rows_of(net: Any, frames: np.ndarray, device: torch.device) -> np.ndarray:
    place(net, device).eval()
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        return forward(net, net.prepare(frames[None], device=device), device, bf16=False)[0]
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


SIZES = {"640x360": (640, 360), "1280x720": (1280, 720)}


def generated_clip(config: CheckConfig, size: str) -> Path:
    """A 30-s h264 + AAC clip of ``size`` whose decoding costs what a real one's does (``bench.video``), written
    once into ``config.generated`` (4 s and 160x120 when tiny)."""
    width, height = (160, 120) if config.tiny else SIZES[size]
    path = config.generated / f"clip-{size}.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_clip(path, width, height, seconds=int(TINY_S) if config.tiny else 30, audio_sr=44100)
    return path


def linked_manifest(config: CheckConfig, source: Path, name: str, count: int) -> Manifest:
    """``count`` clips in 2 folds, each a link of ``source`` under a name of its own (the decoders do the same work
    for each)."""
    root = config.folder / name
    clips = []
    for i in range(count):
        target = root / f"{i}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        clips.append(Clip(f"{name}/{i}", ("a", "b")[i % 2], video=target, audio=target, fold=i % 2))
    return Manifest(("a", "b"), tuple(clips))


# --- throughput -------------------------------------------------------------------------------------------------------


def embedding_rate(
    name: str, cache: Path, n_clips: int, config: CheckConfig, *, bf16: bool, batch: int = 16
) -> dict[str, Any]:
    """Clips/s of ``name``'s embeddings read from ``cache`` by loader processes: ``EMBEDDED_ROWS`` of the cache's
    clips (each once when tiny), timed from the first batch out, so that the loaders' start is not counted."""
    file = pretrained_file(name)
    weights = find_weights(file, config.weights) if file else None
    net = get_net(name, num_classes=6, weights=weights)  # no file: random weights, said so in the figures
    batch, n_rows = (2, n_clips) if config.tiny else (batch, EMBEDDED_ROWS)
    rows = np.resize(np.arange(n_clips), n_rows)
    loaders = min(8, config.workers)
    figures: dict[str, Any] = {"weights": weights.name if weights else "random (same shapes and work; speed only)"}
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    try:
        list(embed_rows(net, str(cache), rows[: batch * 2], batch, config.device, workers=loaders, bf16=bf16))
        with gpu_samples(config.device, figures):
            began, first, clips = time.perf_counter(), None, 0
            for batch_rows, _ in embed_rows(net, str(cache), rows, batch, config.device, workers=loaders, bf16=bf16):
                if first is None:
                    first = time.perf_counter()
                else:
                    clips += len(batch_rows)
            seconds = time.perf_counter() - (first or began)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    steady = clips / seconds if clips else len(rows) / (time.perf_counter() - began)
    return figures | {"clips_per_s": round(steady, 1), "batch": batch, "clips": len(rows), "loaders": loaders}


def throughput(config: CheckConfig) -> dict[str, Any]:
    """Stage one's decoding rate in steady state (the pool warmed on a clip per worker first, its start-up reported
    apart) with where its time went (``bench.stage_one.figures``): on the CPU with every core's worker and with one
    (the pool's efficiency: its rate over the workers times one worker's), and on NVDEC; a pool's start-up alone;
    each embedding's rate, i3d's bf16 at several batch sizes; all over generated clips."""
    manifest = linked_manifest(config, generated_clip(config, "640x360"), "clips", config.clips)
    cache = config.folder / "throughput-cache"
    sets = tuple(EMBEDDED.values())
    figures: dict[str, Any] = {"clips": len(manifest), "size": "640x360", "decode_workers": config.workers}
    compile_numba_once()  # into numba's cache: the start-up measured is that of an install that has run once
    figures["pool_startup_s"] = round(pool_startup_s(config.workers), 2)

    def decode_rate(decoder: str, workers: int, clips: Manifest, into: Path) -> dict[str, Any]:
        configs = replace(config.features, frames=replace(config.features.frames, decoder=decoder))
        warm = Manifest(clips.classes, manifest.clips[: WARM_CLIPS_PER_WORKER * workers])

        def run(chosen: Manifest, name: str, executor: Executor) -> FeatureRunSummary:
            path = into if name == "timed" else config.folder / f"{into.name}-{name}"
            return extract_features(chosen, path, features=sets, configs=configs, executor=executor).features

        startup_s, summary = warmed_run(workers, warm, clips, run)
        return {
            "decoder": decoder,
            "workers": workers,
            "startup_s": round(startup_s, 1),
            **decode_figures(summary, len(clips), workers),
            "failed": {name: len(failed) for name, failed in summary.failures.items()},
        }

    one = Manifest(manifest.classes, manifest.clips[: max(2, len(manifest) // config.workers)])
    figures["decode"] = decode_rate("cpu", config.workers, manifest, cache)
    figures["decode_one_worker"] = decode_rate("cpu", 1, one, config.folder / "one-worker-cache")
    figures["decode_efficiency"] = round(
        figures["decode"]["clips_per_s"] / (config.workers * figures["decode_one_worker"]["clips_per_s"]), 2
    )
    if nvdec_problem() is None:
        figures["decode_nvdec"] = decode_rate("nvdec", config.workers, manifest, config.folder / "nvdec-cache")
    for name in EMBEDDED:
        for bf16 in (False, True):
            figures[f"{name}_{'bf16' if bf16 else 'float32'}"] = embedding_rate(
                name, cache, len(manifest), config, bf16=bf16
            )
    for batch in () if config.tiny else I3D_BATCHES:  # tiny: batches of 2 whatever is asked
        figures[f"i3d_bf16_batch{batch}"] = embedding_rate("i3d", cache, len(manifest), config, bf16=True, batch=batch)
    return figures


I3D_BATCHES = (32, 64)  # beside the default 16


def extract(config: CheckConfig) -> dict[str, Any]:
    """``extract`` as a user runs it on the box, timed whole: ``config.clips`` links of a generated 30-s clip of each
    size (the throughput part's few when tiny) in 2 folds, decoded into the sets of ``EMBEDDED`` by a process per core,
    on the CPU and on NVDEC, with each of its nets on the device alongside the decoding (``extract.overlap``), each run
    into a cache of its own: the GPU's utilisation over each run and its stages' seconds (the nets' share of the wall
    time). The nets run with their published weights where found, else from random ones of the same shapes (the same
    work)."""
    random = [name for name in EMBEDDED if (file := pretrained_file(name)) and not find_weights(file, config.weights)]
    figures: dict[str, Any] = {"nets": list(EMBEDDED), "sets": list(EMBEDDED.values()), "random_weights": random}
    decoders = ("cpu", "nvdec") if nvdec_problem() is None else ("cpu",)
    for size, count in list(SIZES_CLIPS.items())[: 1 if config.tiny else None]:  # tiny: one size (160x120 either way)
        source = generated_clip(config, size)
        for decoder in decoders:
            manifest = linked_manifest(
                config, source, f"extract-{size}-{decoder}", config.clips if config.tiny else count
            )
            configs = replace(config.features, frames=replace(config.features.frames, decoder=decoder))
            cache = config.folder / f"end-to-end-{size}-{decoder}"
            click.echo(f"gpu-check: extract of {len(manifest)} clips at {size} on {decoder} ...", err=True)
            figures[f"{size}_{decoder}"] = timed_extract(manifest, config, cache, configs, random) | {
                "clips": len(manifest)
            }
            click.echo(f"gpu-check: ... {figures[f'{size}_{decoder}']}", err=True)
    return figures


SIZES_CLIPS = {"640x360": 256, "1280x720": 128}  # extract's clips of each size


def timed_extract(
    manifest: Manifest, config: CheckConfig, cache: Path, configs: FeatureConfigs, random: list[str]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with build_executor("processes", workers=config.workers) as executor, gpu_samples(config.device, figures):
        began = time.perf_counter()
        summary = extract_features(
            manifest,
            cache,
            features=tuple(EMBEDDED.values()),
            nets=tuple(EMBEDDED),
            configs=configs,
            net_options={name: {INIT: "random"} for name in random},
            weights_dir=config.weights,
            device=str(config.device),
            executor=executor,
            overlap=True,
        )
        seconds = time.perf_counter() - began
    stages = stage_figures(summary)
    nets_s = sum(s for stage, s in stages["stages_s"].items() if stage != "features")
    return figures | {
        "extract_s": round(seconds, 1),  # the part's "seconds" count the clips' generation too
        "clips_per_s": round(len(manifest) / seconds, 2),
        "nets_share": round(nets_s / seconds, 2),  # the share of the wall time left after the decoding
        "stages_s": stages["stages_s"],
        "failed": stages["failed"],
    }


# --- fine-tuning and its leak -----------------------------------------------------------------------------------------


def sample_manifest(config: CheckConfig) -> Manifest:
    """The MVED sample in 2 folds (the synthetic set when tiny)."""
    if config.tiny:
        root = config.folder / "tiny-sample"
        if not root.is_dir():  # 4 clips a class: 2 folds leave 2 groups of each class to train and validate on
            write_synthetic_set(root, SyntheticConfig(clips_per_class=4, duration_s=TINY_S))
    else:
        root = config.sample
    return assign_folds(scan_tree(root), k=2, seed=0)


def fine_tune(manifest: Manifest, config: CheckConfig, *, protocol: str, epochs: int) -> tuple[Path, StageOneSummary]:
    """The cache of ``FINETUNED`` fine-tuned with ``protocol`` for ``epochs``, named by both: a second call with the
    same finds its embeddings done (the leak part reuses the fine-tuning part's when their epochs agree)."""
    cache = config.folder / f"{protocol}-{epochs}epochs"
    training = TrainConfig(finetune="last", max_epochs=epochs, patience=max(1, epochs // 2))
    with build_executor("processes", workers=config.workers) as executor:
        return cache, extract_features(
            manifest,
            cache,
            nets=FINETUNED,
            training=training,
            protocol=protocol,
            configs=config.features,
            weights_dir=config.weights,
            device=str(config.device),
            executor=executor,
        )


def stage_figures(summary: StageOneSummary) -> dict[str, Any]:
    return {
        "stages_s": {stage.stage: round(stage.seconds, 1) for stage in summary.stages},
        "units": [
            {
                "net": u.net,
                "fold": u.fold,
                "epochs": u.epochs,
                "val_accuracy": u.val_accuracy,
                "seconds": round(u.seconds, 1),
                "skipped": u.skipped,
            }
            for u in summary.units
        ],
        "failed": {name: len(failed) for name, failed in summary.features.failures.items() if failed}
        | {name: len(failed) for name, failed in summary.failed_embeddings.items() if failed},
    }


def finetune(config: CheckConfig) -> dict[str, Any]:
    """twodcnn and musicnn fine-tuned leak-free over 2 folds for 1 epoch; each fold's embeddings checked."""
    manifest = sample_manifest(config)
    figures: dict[str, Any] = {"clips": len(manifest)}
    with gpu_samples(config.device, figures):
        cache, summary = fine_tune(manifest, config, protocol="leakfree", epochs=1)
    with Cache(cache) as opened:
        written = {name: int(opened.done(name).sum()) for name in opened.feature_sets() if name.startswith("emb/")}
    expected = [f"emb/{net}/fold{k}" for net in FINETUNED for k in range(2)]
    figures |= stage_figures(summary) | {"embeddings": written}
    figures["per_fold_embeddings_written"] = all(written.get(name) == len(manifest) for name in expected)
    return figures


def leak(config: CheckConfig) -> dict[str, Any]:
    """Stage two's accuracy on embeddings fine-tuned with each protocol, one repeat of the manifest's 2 folds."""
    manifest = sample_manifest(config)
    figures: dict[str, Any] = {"clips": len(manifest), "folds": 2, "repeats": 1, "epochs": config.leak_epochs}
    accuracy: dict[str, dict[str, float]] = {}
    for protocol in ("leakfree", "paper"):
        cache, summary = fine_tune(manifest, config, protocol=protocol, epochs=config.leak_epochs)
        figures[protocol] = stage_figures(summary)
        report = run_cv(cache, config.folder / f"leak-{protocol}-report", models=",".join(FINETUNED)).document
        accuracy[protocol] = {name: m["accuracy"]["mean"] for name, m in report["models"].items()}
    figures["accuracy_pct"] = {p: {n: round(100 * a, 1) for n, a in acc.items()} for p, acc in accuracy.items()}
    figures["paper_minus_leakfree_points"] = {
        name: round(100 * (accuracy["paper"][name] - accuracy["leakfree"][name]), 1) for name in accuracy["leakfree"]
    }
    return figures


PART_RUNS: dict[str, Callable[[CheckConfig], dict[str, Any]]] = {
    "tests": run_device_tests,
    "decoders": decoders,
    "throughput": throughput,
    "extract": extract,
    "finetune": finetune,
    "leak": leak,
}
