"""Training one net on cached inputs: optimizers, early stopping, the precision it trains in (the device, the
batches read from the cache and the forward pass are every pass's: ``extract.forward``).

The training loop knows rows of a cache, not folds: ``extract.finetune.units`` decides
which rows train, which validate and which are embedded, so that leak-freedom
is decided in one place.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mvemo.extract.forward import autocast, batches_of, in_order, memory_advice, place
from mvemo.extract.nets import base_name
from mvemo.extract.nets.base import EmotionNet
from mvemo.manifests.errors import ConfigError, is_seed
from mvemo.manifests.shared_optimizers import OPTIMIZERS, make_optimizer

FINETUNE_MODES = ("last", "full")


@dataclass(frozen=True)
class OptimizerConfig:
    """An optimizer and its learning rate (``momentum`` for SGD and RMSprop)."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.name!r}: choose one of {', '.join(OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optimizer lr={self.lr}: expected a learning rate > 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optimizer momentum={self.momentum}: expected a value in [0, 1)")

    def build(self, params: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
        optimizer: torch.optim.Optimizer = make_optimizer(self.name, params, lr=self.lr, momentum=self.momentum)
        return optimizer


# Paper 001, Table 2: the best optimizer of each net (torchvision's video nets as I3D).
PAPER_OPTIMIZERS = {
    "onedcnn": OptimizerConfig("adam", 1e-3),
    "twodcnn": OptimizerConfig("sgd", 1e-3, 0.5),
    "c3d": OptimizerConfig("sgd", 1e-5, 0.0),
    "i3d": OptimizerConfig("adam", 1e-4),
    "crnn": OptimizerConfig("adam", 1e-3),
    # musicnn's own training (musicnn 0.1.0 config.json): Adam at 1e-3, as the other audio nets here
    "musicnn": OptimizerConfig("adam", 1e-3),
    "msdvgg": OptimizerConfig("adam", 1e-3),
    "mttmusicnn": OptimizerConfig("adam", 1e-3),
    "mttvgg": OptimizerConfig("adam", 1e-3),
    "r3d_18": OptimizerConfig("adam", 1e-4),
    "mc3_18": OptimizerConfig("adam", 1e-4),
    "r2plus1d_18": OptimizerConfig("adam", 1e-4),
}

_AUDIO_STUDY = {
    "adam": OptimizerConfig("adam", 1e-3),
    "sgd": OptimizerConfig("sgd", 1e-3, 0.5),
    "rmsprop": OptimizerConfig("rmsprop", 1e-3),
}
_VIDEO_STUDY = {
    "adam": OptimizerConfig("adam", 1e-4),
    "sgd": OptimizerConfig("sgd", 1e-3, 0.5),
    "rmsprop": OptimizerConfig("rmsprop", 1e-3),
}
# Paper 001, Table 2: the three optimizers each net was fine-tuned with (crnn, of paper 003, as the audio CNNs;
# torchvision's video nets as I3D).
STUDY_OPTIMIZERS = {
    **dict.fromkeys(("onedcnn", "twodcnn", "crnn", "musicnn", "msdvgg", "mttmusicnn", "mttvgg"), _AUDIO_STUDY),
    "c3d": {
        "adam": OptimizerConfig("adam", 1e-5),
        "sgd": OptimizerConfig("sgd", 1e-5, 0.0),
        "rmsprop": OptimizerConfig("rmsprop", 1e-3),
    },
    **dict.fromkeys(("i3d", "r3d_18", "mc3_18", "r2plus1d_18"), _VIDEO_STUDY),
}


@dataclass(frozen=True)
class TrainConfig:
    """How each net is fine-tuned.

    Parameters
    ----------
    finetune : {"last", "full"}
        ``last`` trains the net's last block and the head (the head alone would
        leave the embeddings unchanged), ``full`` every weight.
    max_epochs, patience : int
        Early stopping: training stops after ``patience`` epochs without a better
        validation accuracy (ties go to the lower validation loss) and the best
        epoch's weights are kept.
    batch_size : int
    validation_share : float
        Share of the training clips held out, grouped and stratified like the
        folds, to pick the epoch.
    seed : int
        Seeds the initialisation, the validation split and the batch order.
    optimizers : dict of net name to OptimizerConfig
        Overrides of ``PAPER_OPTIMIZERS``.
    net_options : dict of net name to dict
        Options of ``get_net`` (a config file's ``[net.<name>]`` tables).
    """

    finetune: str = "full"
    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 8
    validation_share: float = 0.2
    seed: int = 0
    optimizers: dict[str, OptimizerConfig] = field(default_factory=dict)
    net_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_MODES:
            raise ConfigError(f"finetune={self.finetune!r}: choose one of {', '.join(FINETUNE_MODES)}")
        for key in ("max_epochs", "patience", "batch_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"[train] {key}={getattr(self, key)!r}: expected an integer >= 1")
        if not 0 < self.validation_share < 0.5:
            raise ConfigError(f"[train] validation_share={self.validation_share}: expected a share in (0, 0.5)")
        if not is_seed(self.seed):
            raise ConfigError(f"[train] seed={self.seed!r}: expected an integer from 0 to 2**32-1")

    def optimizer(self, net: str) -> OptimizerConfig:
        """The net's ``[optim.<net>]``, else paper 001's (a variant trains as its net does)."""
        base = base_name(net)
        return self.optimizers.get(base, PAPER_OPTIMIZERS.get(base, OptimizerConfig()))

    def record(self, net: str) -> dict[str, Any]:
        """What decides a net's fine-tuned weights (fingerprinted)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("optimizers", "net_options")}
        options = {"net_options": self.net_options[net]} if self.net_options.get(net) else {}
        return {**fields, "optimizer": asdict(self.optimizer(net)), **options}


def training_precision(device: torch.device) -> str:
    """What ``train_net`` computes in on ``device`` (``autocast``'s choice), for a fine-tuned set's record."""
    return "bfloat16 autocast" if device.type == "cuda" else "float32"


def set_trainable(net: EmotionNet, finetune: str) -> list[torch.nn.Parameter]:
    """Freeze what ``finetune`` keeps and return the parameters it trains."""
    if finetune == "full":
        trained = list(net.parameters())
    else:
        centers = getattr(net, "center_loss", None)  # the CRNN's learned class centres train with its head
        modules = [*net.last_block(), net.head, *([centers] if isinstance(centers, torch.nn.Module) else [])]
        trained = [p for module in modules for p in module.parameters()]
    ids = {id(p) for p in trained}
    for p in net.parameters():
        p.requires_grad_(id(p) in ids)
    return trained


@dataclass
class TrainResult:
    state: dict[str, torch.Tensor]
    epochs: int  # the epoch whose weights were kept (1-based)
    val_accuracy: float | None
    history: list[dict[str, float]]


def shuffled_batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(rows)
    return [np.sort(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]


def train_net(
    net: EmotionNet,
    cache_path: str,
    y: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray | None,
    config: TrainConfig,
    *,
    epochs: int | None = None,
    device: torch.device,
    workers: int = 2,
) -> TrainResult:
    """Train ``net`` in place on ``train_rows``; with ``val_rows``, stop early and keep the best epoch's weights,
    else train exactly ``epochs`` epochs (the final model on all clips)."""
    place(net, device)
    optimizer = config.optimizer(net.name).build(set_trainable(net, config.finetune))
    rng = np.random.default_rng(config.seed)
    best: TrainResult | None = None
    history: list[dict[str, float]] = []
    with memory_advice(net.name, config.batch_size):
        for epoch in range(1, (epochs or config.max_epochs) + 1):
            net.train()
            losses = []
            for _, labels, inputs in batches_of(
                cache_path, net, shuffled_batches(train_rows, config.batch_size, rng), y, device, workers
            ):
                optimizer.zero_grad(set_to_none=True)
                with autocast(device):
                    loss = net.loss(net.embed(*inputs), labels)
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"{net.name}: the training loss became {loss.item()} at epoch {epoch}; lower its learning rate"
                        f" ([optim.{net.name}] lr, now {config.optimizer(net.name).lr})"
                    )
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            record = {"epoch": epoch, "train_loss": float(np.mean(losses))}
            if val_rows is not None:
                record |= evaluate(net, cache_path, y, val_rows, config.batch_size, device, workers)
            history.append(record)
            if val_rows is None:
                continue
            key = (record["val_accuracy"], -record["val_loss"])
            if best is None or key > (best.val_accuracy, -best.history[-1]["val_loss"]):
                best = TrainResult(copy.deepcopy(net.state_dict()), epoch, record["val_accuracy"], [record])
            elif epoch - best.epochs >= config.patience:
                break
    for p in net.parameters():
        p.requires_grad_(True)
    if best is None:
        return TrainResult(copy.deepcopy(net.state_dict()), len(history), None, history)
    net.load_state_dict(best.state)
    return TrainResult(best.state, best.epochs, best.val_accuracy, history)


@torch.no_grad()
def evaluate(
    net: EmotionNet,
    cache_path: str,
    y: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    workers: int,
) -> dict[str, float]:
    net.eval()
    losses, correct = [], 0
    for _, labels, inputs in batches_of(cache_path, net, in_order(rows, batch_size), y, device, workers):
        with autocast(device):
            embedding = net.embed(*inputs)
            losses.append(net.loss(embedding, labels).item() * len(labels))
            correct += int((net.head(embedding).argmax(1) == labels).sum())
    return {"val_loss": float(np.sum(losses) / len(rows)), "val_accuracy": correct / len(rows)}
