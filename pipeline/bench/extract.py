"""``mvemo bench extract``: each net's forward and fine-tune step on this machine's device, and, on a GPU, the
rate at which I3D and C3D embeddings are exported from frames already in the cache.

Inputs are random arrays of the cached shapes and dtypes (30 s clips, 32 frames) put
through each net's own ``prepare``, so the figures are the nets' and the loader's,
never a decoder's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mvemo.cache.layout import FeatureSpec
from mvemo.cache.store import CacheWriter
from mvemo.extract.finetune.train import OptimizerConfig
from mvemo.extract.forward import autocast, embed_rows, resolve_device
from mvemo.extract.nets import get_net
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.building import kinds_of
from mvemo.pipeline.bench.common import best_of_each, stand_in_manifest

NETS = ("onedcnn", "twodcnn", "crnn", "musicnn", "msdvgg", "c3d", "i3d")
MUSIC_ENCODERS = ("musicnn", "msdvgg")
CACHED = {
    "waveform": ((480_000,), np.float16),
    "mel": ((96, 1876), np.float16),
    "logmel": ((96, 1876), np.float32),
    "lld": ((1292, 63), np.float32),
    "frames112": ((32, 112, 112, 3), np.uint8),
    "frames224": ((32, 224, 224, 3), np.uint8),
}
NUM_CLASSES = 6


def cached_batch(kind: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    shape, dtype = CACHED[kind]
    if dtype == np.uint8:
        return rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    return rng.standard_normal((batch, *shape)).astype(dtype)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Any, device: torch.device, repeat: int) -> float:
    """Best of ``repeat`` timed calls after one warm-up, in ms."""
    fn()
    _synchronize(device)
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        _synchronize(device)
        best = min(best, time.perf_counter() - began)
    return best * 1e3


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs in hardware here: any CUDA GPU mvemo supports, or a CPU with AVX512-BF16 or AMX."""
    return device.type == "cuda" or (device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def net_figures(net: EmotionNet, batch: int, device: torch.device, repeat: int) -> dict[str, float | str]:
    """Forward ms per clip in fp32 and under bf16 autocast (eval, no grad), and ms per training step of ``batch``
    clips."""
    rng = np.random.default_rng(0)
    inputs = tuple(x.to(device) for x in net.prepare(*(cached_batch(k, batch, rng) for k in kinds_of(net))))
    labels = torch.arange(batch, device=device) % NUM_CLASSES
    net.to(device)

    @torch.no_grad()
    def forward(bf16: bool) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            net.eval().embed(*inputs)

    optimizer = OptimizerConfig("adam", 1e-5).build(list(net.parameters()))

    def step() -> None:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = net.loss(net.embed(*inputs), labels)
        loss.backward()
        optimizer.step()

    bf16: float | str = "not measured: this CPU has no native bf16 (emulated, minutes per clip; mvemo runs fp32 here)"
    if native_bf16(device):
        try:
            bf16 = round(time_ms(lambda: forward(True), device, repeat) / batch, 2)
        except RuntimeError as err:  # e.g. oneDNN has no bf16 LSTM on some CPUs
            bf16 = f"unsupported here: {str(err).splitlines()[0][:120]}"
    return {
        "forward_ms_fp32": round(time_ms(lambda: forward(False), device, repeat) / batch, 2),
        "forward_ms_bf16": bf16,
        "step_ms": round(time_ms(step, device, repeat), 2),
        "batch": batch,
    }


GEMM_SIZE = 2048


def encoder_cpu_figures(name: str, repeat: int) -> dict[str, Any]:
    """One 30-s clip's embedding (its ten 3-s patches through the net, pooled) on the CPU, on one thread and on all of
    torch's threads: ms per clip, its GFLOP (torch's flop counter: two per multiply-add of the convs and matmuls), the
    GFLOP/s achieved, and that rate as a fraction of the fp32 GEMM rate (a 2048-square matmul) on as many threads,
    the two timed in turns."""
    net = get_net(name, num_classes=NUM_CLASSES).eval()
    (logmel,) = net.prepare(cached_batch("logmel", 1, np.random.default_rng(0)))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.embed(logmel)
    gflop = counter.get_total_flops() / 1e9
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    threads = torch.get_num_threads()
    out: dict[str, Any] = {"gflop_per_clip": round(gflop, 2)}
    for n in dict.fromkeys((1, threads)):
        torch.set_num_threads(n)
        try:
            with torch.no_grad():
                net.embed(logmel)  # warm-up: oneDNN's kernels for these shapes
                seconds = best_of_each({"net": lambda: net.embed(logmel), "gemm": lambda: a @ b}, repeat)
        finally:
            torch.set_num_threads(threads)
        achieved, gemm = gflop / seconds["net"], 2 * GEMM_SIZE**3 / seconds["gemm"] / 1e9
        out[f"threads_{n}"] = {
            "ms": round(seconds["net"] * 1e3, 1),
            "gflop_per_s": round(achieved, 1),
            "gemm_gflop_per_s": round(gemm, 1),
            "of_gemm": round(achieved / gemm, 2),
        }
    return out


def bench_encoders(names: tuple[str, ...] = MUSIC_ENCODERS, repeat: int = 5) -> dict[str, Any]:
    """``mvemo bench encoders``: each music encoder's ``encoder_cpu_figures``."""
    return {name: encoder_cpu_figures(name, repeat) for name in names}


def export_figures(
    name: str, device: torch.device, batch_sizes: tuple[int, ...], n_clips: int, folder: str | None
) -> dict[str, Any]:
    """Clips/s of ``embed_rows`` (frames read from an HDF5 cache by loader processes, bf16 on the GPU) per batch
    size."""
    net = get_net(name, num_classes=NUM_CLASSES)
    (kind,) = kinds_of(net)
    shape, dtype = CACHED[kind]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "frames.h5"
        manifest = stand_in_manifest(Path(tmp), n_clips)
        with CacheWriter(path, manifest) as writer:
            writer.prepare([FeatureSpec(kind, shape, np.dtype(dtype).name, "bench", "1")])
            for start in range(0, n_clips, 16):
                block = list(range(start, min(start + 16, n_clips)))
                writer.write(kind, block, cached_batch(kind, len(block), rng))
        rows = np.arange(n_clips)
        for batch in batch_sizes:
            list(embed_rows(net, str(path), rows[: batch * 2], batch, device, workers=4))  # warm-up
            _synchronize(device)
            began = time.perf_counter()
            for _ in embed_rows(net, str(path), rows, batch, device, workers=4):
                pass
            _synchronize(device)
            out[f"batch_{batch}"] = round(n_clips / (time.perf_counter() - began), 1)
    return out


def bench_extract(
    device: str = "auto", *, folder: str | None = None, nets: tuple[str, ...] = NETS, repeat: int | None = None
) -> dict[str, Any]:
    """The figures of ``mvemo bench extract --json``: ``{"nets": {NAME: {...}}, "device": ...}``, plus, on a GPU,
    ``export_clips_per_s`` for i3d and c3d at batch sizes 8, 16 and 32; each figure the best of ``repeat`` runs (5 on a
    GPU, 2 on a CPU where not given)."""
    torch_device = resolve_device(device)
    on_gpu = torch_device.type == "cuda"
    torch.manual_seed(0)
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name()
        if on_gpu
        else f"{torch_device.type} ({torch.get_num_threads()} threads)",
        "nets": {},
    }
    for name in nets:
        batch = 16 if on_gpu else 1
        figures["nets"][name] = net_figures(
            get_net(name, num_classes=NUM_CLASSES), batch, torch_device, repeat=repeat or (5 if on_gpu else 2)
        )
    if on_gpu:
        figures["export_clips_per_s"] = {
            name: export_figures(name, torch_device, (8, 16, 32), 512, folder)
            for name in ("i3d", "c3d")
            if name in nets
        }
    return figures
