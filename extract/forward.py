"""A net run over cached rows on a device, for every pass that runs one (the export of embeddings, fine-tuning,
``predict``, the benches): the device and the net's place on it, batches read from the cache, the forward pass, and the
precision of the rows it writes."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mvemo.cache.read import Cache
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.building import kinds_of
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Resources

# What a job that runs a net asks of a Dask cluster whose workers advertise it (dask-worker --resources GPU=1).
GPU_RESOURCES: Resources = {"GPU": 1}


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, then Apple MPS, then the CPU; otherwise the named device, which must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    here = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not here.get(device.type, True):
        raise ConfigError(f"--device {name}: no {device.type.upper()} device here; use --device auto or cpu")
    return device


def place(net: EmotionNet, device: torch.device) -> EmotionNet:
    """``net`` on ``device``; on a GPU with cuDNN's autotuner and, for video nets, the channels_last_3d layout
    (I3D export 212 -> 292 clips/s on an H100, measured)."""
    net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if any(kind.startswith("frames") for kind in kinds_of(net)):
            net.to(memory_format=torch.channels_last_3d)
    return net


def autocast(device: torch.device, *, bf16: bool = True) -> torch.autocast:
    """bf16 autocast on a GPU; a disabled context on the CPU (exact fp32, deterministic) or with ``bf16`` False."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


class CachedBatches(torch.utils.data.Dataset[tuple[np.ndarray, ...]]):
    """Batches of a net's cached inputs and labels, one item per batch of rows (each worker opens the cache itself)."""

    def __init__(self, cache_path: str, kinds: tuple[str, ...], batches: list[np.ndarray], y: np.ndarray) -> None:
        self.cache_path, self.kinds, self.batches, self.y = cache_path, kinds, batches, y
        self._cache: Cache | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        if self._cache is None:
            self._cache = Cache(self.cache_path)
        rows = self.batches[i]
        return (rows, self.y[rows], *(self._cache.read_matrix(k, rows) for k in self.kinds))


def batches_of(
    cache_path: str, net: EmotionNet, batches: list[np.ndarray], y: np.ndarray, device: torch.device, workers: int
) -> Iterator[tuple[np.ndarray, torch.Tensor, tuple[torch.Tensor, ...]]]:
    """(rows, labels, prepared inputs) on ``device`` for each batch, read by ``workers`` processes on a GPU."""
    on_gpu = device.type == "cuda"
    # a daemonic process (a Dask worker by default) may not start loader processes: it reads the batches itself
    readers = workers if on_gpu and not multiprocessing.current_process().daemon else 0
    dataset = CachedBatches(cache_path, kinds_of(net), batches, y)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=readers, pin_memory=on_gpu, worker_init_fn=_reader_signals
    )
    try:
        for rows, labels, *arrays in loader:  # the loader turned the arrays into (pinned, on a GPU) CPU tensors
            yield (
                np.asarray(rows),
                torch.as_tensor(labels).to(device, non_blocking=True),
                net.prepare(*arrays, device=device),
            )
    finally:
        if dataset._cache is not None:
            dataset._cache.close()


def _reader_signals(worker_id: int) -> None:
    """A loader process forked from a command leaves Ctrl-C and SIGTERM to it (it inherited the command's handlers,
    which would print a traceback per reader): the loader stops its readers when the command unwinds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def memory_advice(net: str, batch_size: int) -> Iterator[None]:
    """A device out-of-memory error becomes an input error naming the batch size to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise ConfigError(
            f"{net}: out of device memory at batch size {batch_size}; set a smaller one in --config"
            f" ([train] batch_size = {max(1, batch_size // 2)}), or use another --device"
        ) from None


def in_order(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def embed_rows(
    net: EmotionNet,
    cache_path: str,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    workers: int = 2,
    *,
    probabilities: bool = False,
    bf16: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, float32 embeddings) per batch, in eval mode; with ``probabilities``, the head's class probabilities.
    The nets run in float32 (``extract.nets.building.ROW_PRECISION``); ``bf16`` runs them under bf16 autocast on a
    GPU (to measure it)."""
    place(net, device).eval()
    y = np.zeros(int(rows.max()) + 1 if len(rows) else 0, dtype=np.int64)
    with memory_advice(net.name, batch_size):
        for batch, _, inputs in batches_of(cache_path, net, in_order(rows, batch_size), y, device, workers):
            yield batch, forward(net, inputs, device, probabilities=probabilities, bf16=bf16)


@torch.no_grad()
def forward(
    net: EmotionNet,
    inputs: Sequence[torch.Tensor],
    device: torch.device,
    *,
    probabilities: bool = False,
    bf16: bool = False,
) -> np.ndarray:
    """One batch of prepared ``inputs`` through the placed, eval-mode ``net``: its float32 embeddings, or with
    ``probabilities`` its head's class probabilities (in float32, or under bf16 autocast on a GPU with ``bf16``)."""
    with autocast(device, bf16=bf16):
        output = net.embed(*inputs)
        if probabilities:
            output = torch.softmax(net.head(output).float(), dim=1)
    return output.float().cpu().numpy()
