"""``make gpu-check``: the GPU path checked in one prepared run of at most ten minutes, for short loans of a GPU.

Six parts, each timed in a process of its own within its share of the time budget, run in this order and printed
as one JSON document with the device's name (also written to ``--json-out`` after every part):

- ``tests``: the tests marked ``gpu`` (the pretrained nets' float32 parity with their references, bf16 autocast
  against float32, NVDEC's frames against the CPU's), in a pytest process of their own, with each measured error;
- ``decoders``: the frames of the MVED sample's videos and of generated ones decoded on the CPU and on NVDEC
  (``[frames] decoder``): how many are equal, their mean and largest difference per pixel, the cosine of I3D's
  embeddings of the two, and each decoder's seconds per clip in one process;
- ``throughput``: clips per second over generated 30-s clips of stage one's decoding (worker processes writing
  the cache) on the CPU (with one worker too, for the pool's efficiency) and on NVDEC, a pool's start-up, and of
  i3d's (float32, and bf16 at several batch sizes) and musicnn's embeddings read from the cache by loader
  processes, with memory and utilisation sampled from ``nvidia-smi`` during each;
- ``extract``: stage one as a user runs it, timed whole over generated clips at 640x360 and 1280x720: decoding
  into the frames and log-mel on the CPU and on NVDEC, with i3d and musicnn on the device alongside, with the GPU's
  utilisation and the nets' share of the wall time;
- ``finetune``: twodcnn and musicnn fine-tuned (``--finetune last``, leak-free, 2 folds x 1 epoch) over the MVED
  sample, checking that each fold's embeddings are written;
- ``leak``: ``--protocol paper`` against ``leakfree`` with ``--finetune last``: the accuracy each protocol's
  embeddings give in stage two, one repeat, and their difference in points; left out when too little of the
  time budget remains.

``--device cpu --tiny`` is the dry run (a few short clips, the synthetic set for the sample): it checks the script,
not the figures, so a GPU's short time goes to measuring.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from mvemo.cache.h5file import mvemo_version
from mvemo.cache.read import Cache
from mvemo.extract.decode.audio import AudioWindow
from mvemo.extract.decode.nvdec import nvdec_problem
from mvemo.extract.features import FeatureConfigs, FeatureRunSummary
from mvemo.extract.frame_sets import FrameConfig, SampledFrames, frames112, frames224, sample_frames
from mvemo.extract.nets import INIT, get_net, pretrained_file
from mvemo.extract.numba_once import compile_numba_once
from mvemo.extract.stage import StageOneSummary, extract_features
from mvemo.extract.train import TrainConfig, embed_rows, forward, place, resolve_device
from mvemo.extract.weights.registry import find_weights
from mvemo.fuse.stage import run_cv
from mvemo.manifests.executor import Executor
from mvemo.manifests.folds import assign_folds
from mvemo.manifests.scan import scan_tree
from mvemo.manifests.schema import Clip, Manifest
from mvemo.manifests.synthetic import SyntheticConfig, write_synthetic_set
from mvemo.pipeline.bench.stage_one import WARM_CLIPS_PER_WORKER, pool_startup_s, warmed_run
from mvemo.pipeline.bench.stage_one import figures as decode_figures
from mvemo.pipeline.bench.video import generate_clip
from mvemo.pipeline.executors import build_executor

PARTS = ("tests", "decoders", "throughput", "extract", "finetune", "leak")
DEVICE_TESTS = "tests/extract/test_nets_on_device.py"
FINETUNED = ("twodcnn", "musicnn")
EMBEDDED = {"i3d": "frames224", "musicnn": "logmel"}
EMBEDDED_ROWS = 768  # clips read per embedding rate, the cache's clips over again as needed
DECODE_CLIPS_PER_WORKER = 30  # the decode rate in steady state: 30 clips per worker after a warm-up clip each
LEAK_MIN_LEFT_S = 240.0
RESERVE_S = 45.0  # kept for each part still to run when a part's time limit is set
MIN_PART_S = 30.0
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


def device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "mvemo": mvemo_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        facts |= {
            "device": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1),
        }
        driver = nvidia_smi("driver_version")
        if driver:
            facts["driver"] = driver[0][0]
    return facts


def nvidia_smi(*fields: str) -> list[list[str]]:
    """One row per GPU of ``nvidia-smi --query-gpu`` (empty when nvidia-smi is absent or fails)."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run([*query(fields)], capture_output=True, text=True, check=False)
    return rows_of(done.stdout)


def query(fields: tuple[str, ...]) -> list[str]:
    return ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def rows_of(output: str) -> list[list[str]]:
    return [[v.strip() for v in line.split(",")] for line in output.splitlines() if line.strip()]


@contextmanager
def gpu_samples(device: torch.device, into: dict[str, Any]) -> Iterator[None]:
    """``nvidia-smi``'s utilisation and memory, sampled every 100 ms while the block runs (one process streaming
    them); their summary goes into ``into["gpu"]``, with torch's own peak allocation. Nothing on a CPU."""
    if device.type != "cuda" or shutil.which("nvidia-smi") is None:
        yield
        return
    torch.cuda.reset_peak_memory_stats(device)
    sampler = subprocess.Popen([*query(("utilization.gpu", "memory.used")), "-lms", "100"], stdout=subprocess.PIPE, text=True)
    try:
        yield
    finally:
        sampler.terminate()
        output, _ = sampler.communicate()
        use = np.array([[float(v) for v in row] for row in rows_of(output) if len(row) == 2] or np.zeros((0, 2)))
        into["gpu"] = {
            "samples": len(use),
            "utilization_mean_pct": round(float(use[:, 0].mean()), 1) if len(use) else None,
            "utilization_max_pct": round(float(use[:, 0].max()), 1) if len(use) else None,
            "memory_used_max_mib": round(float(use[:, 1].max())) if len(use) else None,
            "torch_peak_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20),
        }


# --- tests -------------------------------------------------------------------------------------------------------------


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


# --- throughput --------------------------------------------------------------------------------------------------------


# --- decoders ----------------------------------------------------------------------------------------------------------

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


# --- throughput --------------------------------------------------------------------------------------------------------


def embedding_rate(name: str, cache: Path, n_clips: int, config: CheckConfig, *, bf16: bool, batch: int = 16) -> dict[str, Any]:
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
            figures[f"{name}_{'bf16' if bf16 else 'float32'}"] = embedding_rate(name, cache, len(manifest), config, bf16=bf16)
    for batch in () if config.tiny else I3D_BATCHES:  # tiny: batches of 2 whatever is asked
        figures[f"i3d_bf16_batch{batch}"] = embedding_rate("i3d", cache, len(manifest), config, bf16=True, batch=batch)
    return figures


I3D_BATCHES = (32, 64)  # beside the default 16


def extract(config: CheckConfig) -> dict[str, Any]:
    """``extract`` as a user runs it on the box, timed whole: ``config.clips`` links of a generated 30-s clip of each
    size (12 when tiny) in 2 folds, decoded into the sets of ``EMBEDDED`` by a process per core, on the CPU and on
    NVDEC, with each of its nets on the device alongside the decoding (``extract.overlap``), each run into a cache of
    its own: the GPU's utilisation over each run and its stages' seconds (the nets' share of the wall time). The nets
    run with their published weights where found, else from random ones of the same shapes (the same work)."""
    random = [name for name in EMBEDDED if (file := pretrained_file(name)) and not find_weights(file, config.weights)]
    figures: dict[str, Any] = {"nets": list(EMBEDDED), "sets": list(EMBEDDED.values()), "random_weights": random}
    decoders = ("cpu", "nvdec") if nvdec_problem() is None else ("cpu",)
    for size, count in list(SIZES_CLIPS.items())[: 1 if config.tiny else None]:  # tiny: one size (160x120 either way)
        source = generated_clip(config, size)
        for decoder in decoders:
            manifest = linked_manifest(config, source, f"extract-{size}-{decoder}", 12 if config.tiny else count)
            configs = replace(config.features, frames=replace(config.features.frames, decoder=decoder))
            cache = config.folder / f"end-to-end-{size}-{decoder}"
            click.echo(f"gpu-check: extract of {len(manifest)} clips at {size} on {decoder} ...", err=True)
            figures[f"{size}_{decoder}"] = timed_extract(manifest, config, cache, configs, random) | {"clips": len(manifest)}
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


# --- fine-tuning and its leak ------------------------------------------------------------------------------------------


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


def gpu_check(config: CheckConfig, parts: tuple[str, ...] = PARTS, *, json_out: Path | None = None) -> dict[str, Any]:
    """The check's JSON document: the device, then each part's figures and seconds.

    Each part runs in a process of its own, stopped when it outlasts its share of the budget (what is left, less
    ``RESERVE_S`` for each part after it): an error or a hang is that part's figure, and the next part runs. After
    every part the document so far is written to ``json_out`` and a line to stderr, so that a loan cut short keeps
    what was measured."""
    began = time.perf_counter()
    document: dict[str, Any] = {"device": device_facts(config.device), "tiny": config.tiny, "budget_s": config.budget_s}
    for n, part in enumerate(parts):
        left = config.budget_s - (time.perf_counter() - began)
        if part == "leak" and left < LEAK_MIN_LEFT_S and not config.tiny:
            document[part] = {"not_run": f"{left:.0f} s of the {config.budget_s:.0f} s budget left (needs {LEAK_MIN_LEFT_S:.0f})"}
            continue
        part_began = time.perf_counter()
        document[part] = run_part(PART_RUNS[part], config, max(left - RESERVE_S * (len(parts) - n - 1), MIN_PART_S))
        document[part]["seconds"] = round(time.perf_counter() - part_began, 1)
        written(document, began, json_out)
        outcome = document[part].get("error", "done")
        click.echo(f"gpu-check: {part} in {document[part]['seconds']} s: {outcome}"[:300], err=True)
    return written(document, began, json_out)


def written(document: dict[str, Any], began: float, json_out: Path | None) -> dict[str, Any]:
    """``document`` with the seconds since ``began``, as written to ``json_out`` (when given)."""
    document["seconds"] = round(time.perf_counter() - began, 1)
    if json_out is not None:
        write_json(document, json_out)
    return document


def run_part(run: Callable[[CheckConfig], dict[str, Any]], config: CheckConfig, limit_s: float) -> dict[str, Any]:
    """``run(config)`` in a process of its own (spawned: CUDA is never forked), its figures, or ``{"error": ...}``
    when it raises, dies or outlasts ``limit_s`` (it is then killed with every process it started, and their GPU
    memory with them)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_part_process, args=(run, config, sender))
    process.start()
    sender.close()
    status: str = "error"
    value: Any = "interrupted"
    try:
        if receiver.poll(limit_s):
            status, value = receiver.recv()
        else:
            status, value = "error", f"stopped after {limit_s:.0f} s, its share of the budget: it hung or ran too long"
    except EOFError:  # the process died before it answered
        process.join(5)
        status, value = "error", f"its process died (exit code {process.exitcode})"
    finally:
        receiver.close()
        process.join(0 if status == "error" else 5)
        _stop_group(process)
    return value if status == "ok" else {"error": value}


def _stop_group(process: Any) -> None:
    """Kill a part's process and every process it started (its group), whether it finished or not: no worker of
    one part runs on into the next."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone, or the part never reached setsid: the process alone
        process.kill()
    process.join()


def _part_process(run: Callable[[CheckConfig], dict[str, Any]], config: CheckConfig, sender: Any) -> None:
    os.setsid()  # a process group of its own: a part stopped at its limit is stopped with its workers
    try:
        sender.send(("ok", run(config)))
    except Exception as err:  # one part's failure is a figure of the check: the others still run
        sender.send(("error", f"{type(err).__name__}: {err}"[:2000]))


def write_json(document: dict[str, Any], path: Path) -> None:
    """``document`` as ``path``, whole (written beside it, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2))
    os.replace(partial, path)


@click.command()
@click.option("--device", default="cuda", show_default=True, help="cuda, cuda:N, or cpu for the dry run.")
@click.option(
    "--shared",
    default="../shared",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding weights/ and data/mved-sample/.",
)
@click.option("--parts", default=",".join(PARTS), show_default=True, help="Which parts to run, comma-separated.")
@click.option("--tiny", is_flag=True, help="The dry run's sizes: a few short clips, the synthetic set for the sample.")
@click.option(
    "--clips",
    default=None,
    type=click.IntRange(min=1),
    help="Generated clips of the throughput part.  [default: 30 per core, 4 tiny]",
)
@click.option("--budget-s", default=540.0, show_default=True, help="Wall seconds the check should fit in.")
@click.option(
    "--json-out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the document here too, after every part (a loan cut short keeps what was measured).",
)
@click.option(
    "--keep",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep this run's caches and reports in DIR/run, and the generated clips in DIR/generated (reused).",
)
def main(
    device: str, shared: str, parts: str, tiny: bool, clips: int | None, budget_s: float, json_out: str | None, keep: str | None
) -> None:
    """Check the GPU path and print one JSON document of its figures."""
    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: choose among {', '.join(PARTS)}", param_hint="--parts")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        kept = Path(keep) if keep else Path(tmp)
        shutil.rmtree(kept / "run", ignore_errors=True)  # the caches of an earlier run would make this one's figures
        (kept / "run").mkdir(parents=True)
        config = CheckConfig(
            device=resolve_device(device),
            shared=Path(shared).resolve(),
            folder=kept / "run",
            generated=kept / "generated",
            tiny=tiny,
            budget_s=budget_s,
            clips=clips or (4 if tiny else DECODE_CLIPS_PER_WORKER * (os.cpu_count() or 1)),
            leak_epochs=1 if tiny else 5,
        )
        print(json.dumps(gpu_check(config, chosen, json_out=Path(json_out) if json_out else None), indent=2))


if __name__ == "__main__":
    main()
