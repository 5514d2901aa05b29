"""Fine-tuned embeddings into the cache: per fold without leaks (``leakfree``), or once on all clips (``paper``).

``leakfree`` (default): for each fold k the net is fine-tuned on the clips of
the other folds only, the epoch picked on a validation split drawn from those
clips (grouped and stratified like the folds), and ``emb/<net>/fold<k>`` is
written for every clip: the test fold never trains a weight or picks an epoch.
Then the net is trained on all clips for the median of the folds' epochs and
writes ``emb/<net>/all``, which the final fusion model and ``mvemo predict`` use.

``paper``: paper 001's way, for comparison: one fine-tuning on all clips whose
embeddings are written under every fold (labelled ``protocol=paper`` in the
cache and every report; its accuracies are inflated by construction).

Each (net, fold) is a unit of work: its checkpoint (a state dict, read back
with ``torch.load(weights_only=True)``) lies beside the cache in
``<cache>.checkpoints/<net>/``, its path and sha256 are in the set's config,
and a rerun skips every unit whose set is complete with the same training record.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

from cache.fingerprint import file_sha256
from cache.layout import FeatureSpec
from cache.lock import CacheLock
from cache.read import Cache
from cache.store import CacheWriter
from extract.embed import EXTRACTOR_VERSION, build_net, fail_rows_without_inputs, input_fingerprints, input_options
from extract.nets.base import EmotionNet
from extract.train import TrainConfig, embed_rows, kinds_of, resolve_device, train_net
from manifests.errors import ConfigError
from manifests.schema import Manifest

PROTOCOLS = ("leakfree", "paper")
# Net options while fine-tuning: paper 001 trains the 2D CNN with ReLU where the MSD weights were trained with ELU.
FINETUNE_OPTIONS = {"twodcnn": {"activation": "relu"}}


@dataclass
class UnitSummary:
    """One trained (net, fold) unit: ``fold`` None is the model on all clips."""

    net: str
    fold: int | None
    epochs: int
    val_accuracy: float | None
    seconds: float
    skipped: bool = False


@dataclass
class FinetuneSummary:
    units: list[UnitSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def checkpoint_dir(cache_path: str | os.PathLike[str]) -> Path:
    path = Path(cache_path)
    return path.with_name(path.name + ".checkpoints")


def inner_split(rows: np.ndarray, y: np.ndarray, groups: list[str], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) rows: the first of round(1 / share) grouped, stratified splits of ``rows``
    (fewer splits, so a larger validation share, where the largest class has fewer clips than that)."""
    largest_class = int(np.bincount(y[rows]).max())
    splitter = StratifiedGroupKFold(n_splits=max(2, min(round(1 / share), largest_class)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer clips than splits simply misses some splits
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        train, val = next(splitter.split(np.zeros(len(rows)), y[rows], [groups[r] for r in rows]))
    return rows[train], rows[val]


def finetune_embeddings(
    manifest: Manifest,
    cache_path: str | os.PathLike[str],
    nets: Iterable[str],
    config: TrainConfig,
    *,
    protocol: str = "leakfree",
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    workers: int = 2,
    recompute: Iterable[str] = (),
    lock: CacheLock | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> FinetuneSummary:
    """Fine-tune each net per fold (or once) and write ``emb/<net>/fold<k>`` and ``emb/<net>/all``."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    cache_path = str(cache_path)
    torch_device = resolve_device(device)
    summary = FinetuneSummary()
    y, folds, groups, n_classes = clip_table(cache_path)
    for name in nets:
        units = Units(cache_path, manifest, name, n_classes, config, protocol, weights_dir, lock, recompute)
        summary.notes.append(units.note)
        with Cache(cache_path) as cache:
            ready = ready_rows(cache, units.kinds)
        fold_ids = sorted(set(folds[folds >= 0].tolist()))
        plan: list[tuple[int | None, list[str]]]
        if protocol == "paper":
            plan = [(None, [f"emb/{name}/all", *(f"emb/{name}/fold{k}" for k in fold_ids)])]
        else:
            plan = [*((k, [f"emb/{name}/fold{k}"]) for k in fold_ids), (None, [f"emb/{name}/all"])]
        chosen_epochs: list[int] = []
        for fold, targets in plan:
            if fold is None and protocol == "leakfree":  # the final model: all clips, the folds' median epochs
                train_rows, val_rows, epochs = ready, None, int(np.median(chosen_epochs))
            else:
                pool = ready if fold is None else ready[folds[ready] != fold]
                (train_rows, val_rows), epochs = inner_split(pool, y, groups, config.validation_share, config.seed), None
            unit = units.run(fold, targets, train_rows, val_rows, epochs, y, torch_device, workers, log)
            chosen_epochs.append(unit.epochs)
            summary.units.append(unit)
    return summary


def clip_table(cache_path: str) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Labels, folds, groups (a clip without one is its own) and the number of classes of a cache's clips."""
    with Cache(cache_path) as cache:
        groups = [g or f"clip:{c}" for g, c in zip(cache.groups, cache.clip_ids)]
        return cache.y, cache.folds, groups, len(cache.classes)


def build_finetune_net(
    cache_path: str, name: str, n_classes: int, seed: int, weights_dir: str | os.PathLike[str] | None
) -> tuple[EmotionNet, str]:
    """The net as fine-tuning starts it (``FINETUNE_OPTIONS``, options from its cached input, pretrained weights)."""
    with Cache(cache_path) as cache:
        options = {**FINETUNE_OPTIONS.get(name, {}), **input_options(name, cache)}
    return build_net(name, n_classes, weights_dir=weights_dir, seed=seed, options=options)


def out_of_fold_probabilities(
    cache_path: str | os.PathLike[str],
    name: str,
    config: TrainConfig,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    workers: int = 2,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[np.ndarray, np.ndarray]:
    """The net's own class probabilities for each fold's clips, fine-tuned as ``leakfree`` does on the other folds
    (nothing written): (rows in a fold with their inputs cached, their probabilities)."""
    cache_path = str(cache_path)
    torch_device = resolve_device(device)
    y, folds, groups, n_classes = clip_table(cache_path)
    net, _ = build_finetune_net(cache_path, name, n_classes, config.seed, weights_dir)
    with Cache(cache_path) as cache:
        ready = ready_rows(cache, kinds_of(net))
    ready = ready[folds[ready] >= 0]
    proba = np.zeros((len(ready), n_classes), dtype=np.float32)
    for k in sorted(set(folds[ready].tolist())):
        train_rows, val_rows = inner_split(ready[folds[ready] != k], y, groups, config.validation_share, config.seed)
        net, _ = build_finetune_net(cache_path, name, n_classes, config.seed, weights_dir)
        result = train_net(net, cache_path, y, train_rows, val_rows, config, device=torch_device, workers=workers)
        test = ready[folds[ready] == k]
        for batch, p in embed_rows(net, cache_path, test, config.batch_size, torch_device, workers, probabilities=True):
            proba[np.searchsorted(ready, batch)] = p
        log(
            f"{name}, {config.optimizer(name).name}, fold {k}: {result.epochs} epochs, validation accuracy {result.val_accuracy:.3f}"
        )
    return ready, proba


class Units:
    """The (net, fold) units of one net: their training records, checkpoints and embedding sets."""

    def __init__(
        self,
        cache_path: str,
        manifest: Manifest,
        name: str,
        n_classes: int,
        config: TrainConfig,
        protocol: str,
        weights_dir: str | os.PathLike[str] | None,
        lock: CacheLock | None,
        recompute: Iterable[str],
    ) -> None:
        self.cache_path, self.manifest, self.name, self.n_classes = cache_path, manifest, name, n_classes
        self.config, self.protocol, self.weights_dir, self.lock = config, protocol, weights_dir, lock
        self.recompute = set(recompute)
        net, self.note = self._build()
        self.kinds = kinds_of(net)
        self.pretrained_sha256 = net.weights_sha256
        with Cache(cache_path) as cache:
            self.inputs = input_fingerprints(cache, name, self.kinds)

    def _build(self) -> tuple[EmotionNet, str]:
        return build_finetune_net(self.cache_path, self.name, self.n_classes, self.config.seed, self.weights_dir)

    def record(self, fold: int | None, epochs: int | None) -> dict[str, Any]:
        """Everything that decides the unit's weights; the set's config adds the checkpoint it produced."""
        return {
            "finetune": self.config.finetune,
            "protocol": self.protocol,
            "fold": fold,
            "epochs": epochs or "early stopping",
            "train": self.config.record(self.name),
            "pretrained_sha256": self.pretrained_sha256,
            "inputs": self.inputs,
        }

    def _done(self, targets: list[str], record: dict[str, Any]) -> dict[str, Any] | None:
        """The stored training result when every target set is complete with this record, else None."""
        with Cache(self.cache_path) as cache:
            stored = None
            for target in targets:
                if target in self.recompute or target not in cache.feature_sets():
                    return None
                config = cache.config(target)
                if config.get("training") != record or not cache.done(target)[ready_rows(cache, self.kinds)].all():
                    return None
                stored = config["result"]
            return stored

    def run(
        self,
        fold: int | None,
        targets: list[str],
        train_rows: np.ndarray,
        val_rows: np.ndarray | None,
        epochs: int | None,
        y: np.ndarray,
        device: torch.device,
        workers: int,
        log: Callable[[str], None],
    ) -> UnitSummary:
        where = "all clips" if fold is None else f"fold {fold}"
        record = self.record(fold, epochs)
        stored = self._done(targets, record)
        if stored is not None:
            log(f"{self.name}, {where}: done before (same training record), skipped")
            return UnitSummary(self.name, fold, stored["epochs"], stored["val_accuracy"], 0.0, skipped=True)
        began = time.perf_counter()
        net, _ = self._build()
        result = train_net(
            net, self.cache_path, y, train_rows, val_rows, self.config, epochs=epochs, device=device, workers=workers
        )
        checkpoint = self._save(net, fold)
        outcome = {
            "epochs": result.epochs,
            "val_accuracy": result.val_accuracy,
            "train_clips": len(train_rows),
            "val_clips": 0 if val_rows is None else len(val_rows),
            "history": result.history,
        }
        config = {
            **net.config,
            "finetune": self.config.finetune,
            "protocol": self.protocol,
            "seed": self.config.seed,
            "inputs": self.inputs,
            "training": record,
            "result": outcome,
            "checkpoint": {"path": os.path.relpath(checkpoint, Path(self.cache_path).parent), "sha256": file_sha256(checkpoint)},
        }
        self._write(net, targets, config, device, workers)
        seconds = time.perf_counter() - began
        accuracy = "" if result.val_accuracy is None else f", validation accuracy {result.val_accuracy:.3f}"
        log(f"{self.name}, {where}: {result.epochs} epochs{accuracy}, {seconds:.1f} s")
        return UnitSummary(self.name, fold, result.epochs, result.val_accuracy, seconds)

    def _save(self, net: EmotionNet, fold: int | None) -> Path:
        folder = checkpoint_dir(self.cache_path) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{'all' if fold is None else f'fold{fold}'}-{self.protocol}.pt"
        partial = path.with_suffix(".pt.partial")
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, partial)
        os.replace(partial, path)
        return path

    def _write(self, net: EmotionNet, targets: list[str], config: dict[str, Any], device: torch.device, workers: int) -> None:
        specs = [
            FeatureSpec(
                t,
                (net.embedding_dim,),
                "float32",
                f"mvemo.net.{self.name}",
                EXTRACTOR_VERSION,
                config,
                config["checkpoint"]["sha256"],
            )
            for t in targets
        ]
        with CacheWriter(self.cache_path, self.manifest, lock=self.lock) as writer:
            existing = set(writer.feature_sets())
            writer.prepare(specs, recompute=[t for t in targets if t in existing])
            with Cache(self.cache_path) as cache:
                rows = ready_rows(cache, self.kinds)
                for target in targets:
                    fail_rows_without_inputs(writer, cache, target, self.kinds)
            for batch, embedding in embed_rows(net, self.cache_path, rows, self.config.batch_size, device, workers):
                for target in targets:
                    writer.write(target, batch.tolist(), embedding)


def ready_rows(cache: Cache, kinds: tuple[str, ...]) -> np.ndarray:
    """Rows whose every input is computed."""
    return np.flatnonzero(np.logical_and.reduce([cache.done(k) for k in kinds]))


def load_checkpoint(net: EmotionNet, record: dict[str, str], folder: str | os.PathLike[str]) -> None:
    """Load a checkpoint (``record``: its ``path`` relative to ``folder`` and its ``sha256``) into ``net``."""
    path = Path(folder) / record["path"]
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} is missing; keep the checkpoints beside the cache or model that names them")
    if file_sha256(path) != record["sha256"]:
        raise ConfigError(
            f"checkpoint {str(path)!r} changed since the embeddings were written (sha256 differs); rerun mvemo extract"
        )
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
