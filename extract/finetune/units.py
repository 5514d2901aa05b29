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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from mvemo.cache.handle import CacheHandle
from mvemo.cache.read import Cache
from mvemo.extract.finetune.jobs import UnitJob, UnitResult, build_finetune_net, train_unit
from mvemo.extract.finetune.train import TrainConfig
from mvemo.extract.forward import GPU_RESOURCES
from mvemo.extract.nets.building import embedding_spec, fail_rows_without_inputs, input_fingerprints, kinds_of
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import is_lost_job
from mvemo.manifests.folds import inner_split as grouped_inner_split

PROTOCOLS = ("leakfree", "paper")


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


def inner_split(
    rows: np.ndarray, y: np.ndarray, groups: list[str], share: float, seed: int, unit: str = "fine-tuning"
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) rows of ``rows``: the grouped, stratified split of ``manifests.folds.inner_split``,
    with an error naming the ``unit`` and the fix where the rows are too few to split."""
    try:
        train, val = grouped_inner_split(y[rows], [groups[r] for r in rows], share=share, seed=seed)
    except ConfigError as err:
        raise ConfigError(
            f"{unit}: {len(rows)} clips with their inputs computed, too few to train and pick an epoch ({err});"
            " compute the net's inputs for more clips (see the failures of `mvemo cache info`)"
        ) from None
    return rows[train], rows[val]


# One unit to train: its nets, fold (None: all clips), target sets, training and validation rows, fixed epochs.
UnitPlan: TypeAlias = "tuple[Units, int | None, list[str], np.ndarray, np.ndarray | None, int | None]"


def finetune_embeddings(
    cache: CacheHandle,
    nets: Iterable[str],
    config: TrainConfig,
    *,
    protocol: str = "leakfree",
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    workers: int = 2,
    recompute: Iterable[str] = (),
    executor: Any = None,
    log: Callable[[str], None] = lambda line: None,
    progress: Callable[[str], Callable[[Iterable[Any], int], Iterable[Any]] | None] | None = None,
) -> FinetuneSummary:
    """Fine-tune each net per fold (or once) and write ``emb/<net>/fold<k>`` and ``emb/<net>/all``.

    Units train as jobs on ``executor`` (serial by default): first every net's fold units (or, with ``paper``,
    its one unit), then each net's model on all clips, which trains for the median of its folds' epochs. A job
    asks a Dask cluster for a ``GPU`` resource unless ``device`` is ``cpu``; this process writes every result.
    ``progress(phase)``, if given, returns the callable that wraps a phase's units as they finish:
    ``bar(units, total)``.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    weights_dir = None if weights_dir is None else Path(weights_dir).absolute()
    summary = FinetuneSummary()
    y, folds, groups, n_classes = clip_table(cache.reopen())  # the reader sees the inputs written before
    fold_ids = sorted(set(folds[folds >= 0].tolist()))
    if not fold_ids:
        raise ConfigError("fine-tuning needs the manifest's folds; run `mvemo manifest folds MANIFEST --k K` first")
    units = {}
    for name in nets:
        units[name] = Units(cache, name, n_classes, config, protocol, weights_dir, recompute)
        summary.notes.append(units[name].note)
    bars = progress or (lambda phase: None)
    first: list[UnitPlan] = []
    for u in units.values():
        if protocol == "paper":
            train, val = inner_split(u.ready, y, groups, config.validation_share, config.seed, f"{u.name}, all clips")
            first.append(
                (u, None, [f"emb/{u.name}/all", *(f"emb/{u.name}/fold{k}" for k in fold_ids)], train, val, None)
            )
        else:
            for k in fold_ids:
                pool = u.ready[folds[u.ready] != k]
                train, val = inner_split(pool, y, groups, config.validation_share, config.seed, f"{u.name}, fold {k}")
                first.append((u, k, [f"emb/{u.name}/fold{k}"], train, val, None))
    phase = "fine-tuning" if protocol == "paper" else "fine-tuning per fold"
    summary.units += _run_units(
        first, cache, y=y, device=device, workers=workers, executor=executor, log=log, bar=bars(phase)
    )
    if protocol == "leakfree":  # the final models: all clips, for the median of their folds' epochs
        epochs = {name: int(np.median([s.epochs for s in summary.units if s.net == name])) for name in units}
        final: list[UnitPlan] = [
            (u, None, [f"emb/{u.name}/all"], u.ready, None, epochs[u.name]) for u in units.values()
        ]
        bar = bars("fine-tuning on all clips")
        summary.units += _run_units(
            final, cache, y=y, device=device, workers=workers, executor=executor, log=log, bar=bar
        )
    return summary


def _run_units(
    plan: list[UnitPlan],
    cache: CacheHandle,
    *,
    y: np.ndarray,
    device: str,
    workers: int,
    executor: Any,
    log: Callable[[str], None],
    bar: Callable[[Iterable[Any], int], Iterable[Any]] | None,
) -> list[UnitSummary]:
    """Train the units of ``plan`` not done before, as jobs, and write each result as it arrives (in plan order).

    A failed job (an input error, a lost worker) stops the run after the others' results are written, so a rerun
    resumes from there."""
    cache.reopen()  # what earlier units wrote decides which are done
    summaries: dict[int, UnitSummary] = {}
    jobs: list[UnitJob] = []
    for i, (units, fold, targets, train_rows, val_rows, epochs) in enumerate(plan):
        stored = units.done(targets, units.record(fold, epochs))
        if stored is None:
            jobs.append(units.job(fold, targets, train_rows, val_rows, epochs, y, device, workers))
        else:
            log(f"{units.name}, {_where(fold)}: done before (same training record), skipped")
            summaries[i] = UnitSummary(units.name, fold, stored["epochs"], stored["val_accuracy"], 0.0, skipped=True)
    todo = [i for i in range(len(plan)) if i not in summaries]
    if executor is None:
        results: Iterable[Any] = map(train_unit, jobs)
    else:
        results = executor.map(train_unit, jobs, resources=None if device == "cpu" else GPU_RESOURCES)
    errors: list[BaseException] = []
    # results first: a progress bar around them sees its end and closes at 100 %
    for result, i, job in zip(bar(results, len(jobs)) if bar else results, todo, jobs, strict=True):
        if isinstance(result, BaseException):
            errors.append(result)
            continue
        units = plan[i][0]
        units.write(job, result)
        accuracy = "" if result.val_accuracy is None else f", validation accuracy {result.val_accuracy:.3f}"
        log(f"{units.name}, {_where(job.fold)}: {result.epochs} epochs{accuracy}, {result.seconds:.1f} s")
        summaries[i] = UnitSummary(units.name, job.fold, result.epochs, result.val_accuracy, result.seconds)
    if errors:
        error = errors[0]
        if is_lost_job(error):
            raise ConfigError(
                f"a fine-tuning job was lost ({type(error).__name__}: {error});"
                " finished units are kept, rerun to resume"
            ) from error
        raise error
    return [summaries[i] for i in range(len(plan))]


def _where(fold: int | None) -> str:
    return "all clips" if fold is None else f"fold {fold}"


def clip_table(cache: Cache) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Labels, folds, groups (a clip without one is its own) and the number of classes of a cache's clips.

    Raises
    ------
    ConfigError
        When the manifest gave no class labels: fine-tuning learns the classes.
    """
    if not cache.classes:
        raise ConfigError(
            f"cache {str(cache.path)!r}: its manifest has no 'label' column, and fine-tuning a net learns the classes;"
            " extract with --finetune none (tags and valence/arousal heads train in stage two)"
        )
    return cache.y, cache.folds, cache.groups, len(cache.classes)


class Units:
    """The (net, fold) units of one net: their training records, jobs and embedding sets."""

    def __init__(
        self,
        cache: CacheHandle,
        name: str,
        n_classes: int,
        config: TrainConfig,
        protocol: str,
        weights_dir: str | os.PathLike[str] | None,
        recompute: Iterable[str],
    ) -> None:
        self.cache, self.name, self.n_classes = cache, name, n_classes
        self.config, self.protocol = config, protocol
        self.weights_dir = None if weights_dir is None else str(weights_dir)
        self.recompute = set(recompute)
        self.net, self.note = build_finetune_net(cache.reader, name, n_classes, config, weights_dir)
        self.kinds, self.pretrained_sha256 = kinds_of(self.net), self.net.weights_sha256
        self.inputs = input_fingerprints(cache.reader, name, self.kinds)
        self.ready = ready_rows(cache.reader, self.kinds)

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

    def done(self, targets: list[str], record: dict[str, Any]) -> dict[str, Any] | None:
        """The stored training result when every target set is complete with this record, else None."""
        cache = self.cache.reader
        stored = None
        for target in targets:
            if target in self.recompute or target not in cache.feature_sets():
                return None
            config = cache.config(target)
            if config.get("training") != record or not cache.done(target)[self.ready].all():
                return None
            stored = config["result"]
        return stored

    def job(
        self,
        fold: int | None,
        targets: list[str],
        train_rows: np.ndarray,
        val_rows: np.ndarray | None,
        epochs: int | None,
        y: np.ndarray,
        device: str,
        workers: int,
    ) -> UnitJob:
        return UnitJob(
            str(self.cache.path),
            self.name,
            tuple(targets),
            self.n_classes,
            self.config,
            self.protocol,
            self.weights_dir,
            self.pretrained_sha256,
            fold,
            train_rows,
            val_rows,
            epochs,
            y,
            self.ready,
            device,
            workers,
        )

    def write(self, job: UnitJob, result: UnitResult) -> None:
        """The unit's embeddings into each of its target sets, with its training record and checkpoint."""
        targets = list(job.targets)
        config = {
            **result.code_config,
            "finetune": self.config.finetune,
            "protocol": self.protocol,
            "seed": self.config.seed,
            "inputs": self.inputs,
            "training": self.record(job.fold, job.epochs),
            "result": {
                "epochs": result.epochs,
                "val_accuracy": result.val_accuracy,
                "train_clips": len(job.train_rows),
                "val_clips": 0 if job.val_rows is None else len(job.val_rows),
                "trained_in": result.trained_in,
                "history": result.history,
            },
            "checkpoint": {
                "path": os.path.relpath(result.checkpoint, self.cache.path.parent),
                "sha256": result.checkpoint_sha256,
            },
        }
        # where the fine-tuning started names the file; the checkpoint's sha256 is fingerprinted
        specs = [
            embedding_spec(
                t, config, result.checkpoint_sha256, net=self.net, fine_tuned=True, weights_file=self.net.weights_file
            )
            for t in targets
        ]
        writer = self.cache.writer
        existing = set(writer.feature_sets())
        writer.prepare(specs, recompute=[t for t in targets if t in existing])
        for target in targets:
            fail_rows_without_inputs(writer, self.cache.reader, target, self.kinds)
        for target in targets:
            writer.write(target, job.rows.tolist(), result.embeddings)


def ready_rows(cache: Cache, kinds: tuple[str, ...]) -> np.ndarray:
    """Rows whose every input is computed."""
    return np.flatnonzero(np.logical_and.reduce([cache.done(k) for k in kinds]))
