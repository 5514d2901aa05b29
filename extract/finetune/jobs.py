"""One fine-tuning unit: the job a worker runs (train a net on some rows, embed every clip) and its checkpoint.

A unit is a (net, fold) pair, or a net on all clips; extract.finetune.units plans the units and writes what
they return. Checkpoints are state dicts beside the cache, read back with weights_only=True and
checked against their sha256.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvemo.cache.fingerprint import file_sha256
from mvemo.cache.layout import inside
from mvemo.cache.read import Cache
from mvemo.extract.finetune.train import TrainConfig, train_net, training_precision
from mvemo.extract.forward import embed_rows, resolve_device
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.building import build_net, code_config, input_options, require_same_weights
from mvemo.manifests.errors import ConfigError

# Net options while fine-tuning: paper 001 trains the 2D CNN with ReLU where the MSD weights were trained with ELU.
FINETUNE_OPTIONS = {"twodcnn": {"activation": "relu"}}


def checkpoint_dir(cache_path: str | os.PathLike[str]) -> Path:
    path = Path(cache_path)
    return path.with_name(path.name + ".checkpoints")


def build_finetune_net(
    cache: Cache, name: str, n_classes: int, config: TrainConfig, weights_dir: str | os.PathLike[str] | None
) -> tuple[EmotionNet, str]:
    """The net as fine-tuning starts it (``FINETUNE_OPTIONS``, then the config's, then those its cached input sets,
    pretrained weights)."""
    options = {**FINETUNE_OPTIONS.get(name, {}), **config.net_options.get(name, {}), **input_options(name, cache)}
    return build_net(name, n_classes, weights_dir=weights_dir, seed=config.seed, options=options)


@dataclass(frozen=True)
class UnitJob:
    """All a worker needs to train one (net, fold) unit: the cache and checkpoints lie where it can read and write."""

    cache_path: str
    name: str
    targets: tuple[str, ...]
    n_classes: int
    config: TrainConfig
    protocol: str
    weights_dir: str | None
    pretrained_sha256: str
    fold: int | None
    train_rows: np.ndarray
    val_rows: np.ndarray | None
    epochs: int | None
    y: np.ndarray
    rows: np.ndarray
    device: str
    workers: int


@dataclass
class UnitResult:
    """What a trained unit sends back: its outcome, its checkpoint and its embeddings of ``UnitJob.rows``."""

    epochs: int
    val_accuracy: float | None
    history: list[dict[str, float]]
    code_config: dict[str, Any]  # ``extract.nets.building.code_config`` of the trained net
    checkpoint: Path
    checkpoint_sha256: str
    embeddings: np.ndarray
    seconds: float
    trained_in: str  # ``extract.finetune.train.training_precision`` of the device it trained on


def train_unit(job: UnitJob) -> UnitResult:
    """Fine-tune one unit, save its checkpoint and embed every ready clip (a job that runs on any executor's worker)."""
    began = time.perf_counter()
    device = resolve_device(job.device)
    with Cache(job.cache_path) as cache:  # the worker's side of the process boundary
        net, _ = build_finetune_net(cache, job.name, job.n_classes, job.config, job.weights_dir)
    require_same_weights(net, job.pretrained_sha256)
    result = train_net(
        net,
        job.cache_path,
        job.y,
        job.train_rows,
        job.val_rows,
        job.config,
        epochs=job.epochs,
        device=device,
        workers=job.workers,
    )
    checkpoint = save_checkpoint(net, job.cache_path, job.fold, job.protocol)
    batches = embed_rows(net, job.cache_path, job.rows, job.config.batch_size, device, job.workers)
    embeddings = (
        np.concatenate([e for _, e in batches]) if len(job.rows) else np.zeros((0, net.embedding_dim), np.float32)
    )
    return UnitResult(
        result.epochs,
        result.val_accuracy,
        result.history,
        code_config(net, fine_tuned=True),
        checkpoint,
        file_sha256(checkpoint),
        embeddings,
        time.perf_counter() - began,
        training_precision(device),
    )


def save_checkpoint(net: EmotionNet, cache_path: str, fold: int | None, protocol: str) -> Path:
    """``<cache>.checkpoints/<net>/<fold or all>-<protocol>.pt``, written whole or not at all."""
    folder = checkpoint_dir(cache_path) / net.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{'all' if fold is None else f'fold{fold}'}-{protocol}.pt"
    partial = path.with_suffix(".pt.partial")
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(net: EmotionNet, record: dict[str, str], folder: str | os.PathLike[str]) -> None:
    """Load a checkpoint (``record``: its ``path`` relative to ``folder`` and its ``sha256``) into ``net``."""
    path = inside(folder, record["path"])
    if path is None:
        raise ConfigError(
            f"checkpoint {record['path']!r} lies outside {str(folder)!r}, the folder that names it:"
            " a checkpoint is read from there alone; save the model again with `mvemo fuse`, or rerun `mvemo extract`"
        )
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {str(path)!r} is missing; keep the checkpoints beside the cache or model that names them"
        )
    if file_sha256(path) != record["sha256"]:
        raise ConfigError(
            f"checkpoint {str(path)!r} changed since the embeddings were written (sha256 differs); rerun mvemo extract"
        )
    try:
        state = torch.load(
            path, map_location="cpu", weights_only=True
        )  # plain tensors only: a pickled object never runs
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"checkpoint {str(path)!r} holds more than a state dict of tensors; refused ({err})"
        ) from None
    net.load_state_dict(state)
