"""The optimizer study's training: a net fine-tuned fold by fold as ``leakfree`` does, its own softmax's
probabilities for each test fold returned and nothing written (``mvemo study optimizers`` scores them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mvemo.cache.read import Cache
from mvemo.extract.finetune.jobs import build_finetune_net
from mvemo.extract.finetune.train import TrainConfig, train_net
from mvemo.extract.finetune.units import clip_table, inner_split, ready_rows
from mvemo.extract.forward import embed_rows, resolve_device
from mvemo.extract.nets.building import kinds_of


@dataclass
class OutOfFold:
    """A net's own probabilities for each fold's clips, fine-tuned on the other folds: ``rows`` with their inputs
    cached, ``proba`` (len(rows), n_classes), and per fold the validation loss and accuracy of the kept epoch on
    the inner split of its training rows (``validation``), what a choice between trainings may read."""

    rows: np.ndarray
    proba: np.ndarray
    validation: dict[int, dict[str, float]]


def out_of_fold_probabilities(
    cache: Cache,
    name: str,
    config: TrainConfig,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    workers: int = 2,
    log: Callable[[str], None] = lambda line: None,
) -> OutOfFold:
    """The net fine-tuned as ``leakfree`` does on the other folds, fold by fold (nothing written)."""
    cache_path = str(cache.path)  # the loader processes' side of the process boundary
    torch_device = resolve_device(device)
    y, folds, groups, n_classes = clip_table(cache)
    net, _ = build_finetune_net(cache, name, n_classes, config, weights_dir)
    ready = ready_rows(cache, kinds_of(net))
    ready = ready[folds[ready] >= 0]
    proba = np.zeros((len(ready), n_classes), dtype=np.float32)
    validation = {}
    for k in sorted(set(folds[ready].tolist())):
        train_rows, val_rows = inner_split(ready[folds[ready] != k], y, groups, config.validation_share, config.seed)
        net, _ = build_finetune_net(cache, name, n_classes, config, weights_dir)
        result = train_net(net, cache_path, y, train_rows, val_rows, config, device=torch_device, workers=workers)
        validation[k] = {
            "val_loss": result.history[result.epochs - 1]["val_loss"],
            "val_accuracy": float(result.val_accuracy or 0.0),
        }
        test = ready[folds[ready] == k]
        for batch, p in embed_rows(net, cache_path, test, config.batch_size, torch_device, workers, probabilities=True):
            proba[np.searchsorted(ready, batch)] = p
        log(
            f"{name}, {config.optimizer(name).name}, fold {k}: {result.epochs} epochs,"
            f" validation accuracy {result.val_accuracy:.3f}"
        )
    return OutOfFold(ready, proba, validation)
