"""Embeddings of the unimodal nets into the cache: ``emb/<net>/all`` for nets used as they are.

``--finetune none`` needs no training, so it is leak-free by construction: one
forward pass per clip, written once as ``emb/<net>/all`` and read by every fold.
Each set's fingerprint covers the net's config, its weights' sha256, the seed of
a random initialisation and the fingerprints of the cached inputs it read.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.handle import CacheHandle
from mvemo.cache.layout import FeatureSpec
from mvemo.cache.read import Cache
from mvemo.cache.store import CacheWriter
from mvemo.extract.forward import GPU_RESOURCES, embed_rows, in_order, resolve_device
from mvemo.extract.nets import get_net, split_init
from mvemo.extract.nets.base import EmotionNet
from mvemo.extract.nets.building import (
    build_net,
    code_config,
    embedding_spec,
    fail_rows_without_inputs,
    input_fingerprints,
    input_options,
    kinds_of,
    require_same_weights,
)
from mvemo.manifests.executor import Executor, Progress, is_lost_job


def input_kinds(nets: Iterable[str], net_options: Mapping[str, Mapping[str, Any]] = {}) -> tuple[str, ...]:
    """The cached feature sets the nets (with their ``net_options``) read, in a stable order."""
    kinds: list[str] = []
    for name in nets:
        kind = get_net(name, num_classes=2, **split_init(name, net_options.get(name, {}))[1]).input_kind
        kinds.extend((kind,) if isinstance(kind, str) else kind)
    return tuple(dict.fromkeys(kinds))


@dataclass
class EmbedSummary:
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def weights_change(cache: Cache, set_name: str, net: EmotionNet) -> str:
    """What recomputing a cached embedding set with ``net`` changes about its weights."""
    before = describe_weights(cache.weights_file(set_name), cache.weights_sha256(set_name))
    after = describe_weights(net.weights_file, net.weights_sha256)
    if cache.weights_sha256(set_name) == net.weights_sha256:
        return f"{set_name}: recomputed with the same weights ({after})"
    return f"{set_name}: recomputed with other weights: {before} before, {after} now"


def describe_weights(file: str, sha256: str) -> str:
    return f"{file or 'a weights file'} (sha256 {sha256[:12]})" if sha256 else "random init"


# Clips per job on an executor, in whole batches so that every clip meets the batch it meets in-process:
# a minute of I3D on a CPU core, a fraction of a second on a GPU.
BATCHES_PER_JOB = 8


def batches_per_job(n_rows: int, batch_size: int, executor: Executor) -> int:
    """``BATCHES_PER_JOB``, or fewer where the rows make fewer jobs than the executor has local workers: the batches
    then spread evenly over them (the demo's 72 clips made a job of 64 and one of 8, and C3D ran 54 s on one core
    while the other waited)."""
    workers = getattr(executor, "local_workers", 0)
    if workers <= 1:
        return BATCHES_PER_JOB
    return max(1, min(BATCHES_PER_JOB, math.ceil(math.ceil(n_rows / batch_size) / workers)))


@dataclass(frozen=True)
class EmbedJob:
    """One net's embeddings of some rows of the cache, a job an executor's worker runs."""

    cache_path: str
    net: str
    n_classes: int
    weights_dir: str | None
    pretrained_sha256: str
    seed: int
    options: tuple[tuple[str, Any], ...]
    rows: np.ndarray
    batch_size: int
    device: str


def embed_job(job: EmbedJob) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``job`` and their float32 embeddings, shape (rows, embedding_dim)."""
    net = _worker_net(job.net, job.n_classes, job.weights_dir, job.pretrained_sha256, job.seed, job.options)
    parts = list(embed_rows(net, job.cache_path, job.rows, job.batch_size, resolve_device(job.device)))
    return np.concatenate([rows for rows, _ in parts]), np.concatenate([embedding for _, embedding in parts])


@functools.lru_cache(maxsize=1)
def _worker_net(
    name: str, n_classes: int, weights_dir: str | None, sha256: str, seed: int, options: tuple
) -> EmotionNet:
    """Each worker builds (and loads) the net of a run's jobs once; the next net replaces it."""
    net = build_net(name, n_classes, weights_dir=weights_dir, seed=seed, options=dict(options))[0]
    require_same_weights(net, sha256)
    return net


@dataclass(frozen=True)
class EmbeddingSet:
    """A net of a run, built with its weights, and the set ``emb/<net>/all`` it writes."""

    net: EmotionNet
    note: str
    spec: FeatureSpec
    options: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kinds(self) -> tuple[str, ...]:
        return kinds_of(self.net)


def embedding_set(
    reader: Cache,
    name: str,
    *,
    weights_dir: str | os.PathLike[str] | None,
    seed: int,
    net_options: Mapping[str, Mapping[str, Any]],
) -> EmbeddingSet:
    """Net ``name`` built for the cache ``reader`` reads, and its set's spec: a fingerprint over the net's config,
    its weights and the fingerprints of the cached inputs it reads (which must be prepared in the cache)."""
    options = {**net_options.get(name, {}), **input_options(name, reader)}
    net, note = build_net(name, len(reader.classes), weights_dir=weights_dir, seed=seed, options=options)
    inputs = input_fingerprints(reader, name, kinds_of(net))
    config = {
        **code_config(net, fine_tuned=False),
        "finetune": "none",
        "protocol": "leakfree",
        "seed": seed,
        "inputs": inputs,
    }
    spec = embedding_spec(
        f"emb/{name}/all", config, net.weights_sha256, net=net, fine_tuned=False, weights_file=net.weights_file
    )
    return EmbeddingSet(net, note, spec, options)


def prepare_embedding_set(
    writer: CacheWriter, reader: Cache, embedding: EmbeddingSet, *, recompute: bool
) -> str | None:
    """Give the set its rows in the cache (starting it over with ``recompute``): what recomputing changes of its
    weights, when it replaces a set."""
    change = (
        weights_change(reader, embedding.name, embedding.net)
        if recompute and embedding.name in reader.feature_sets()
        else None
    )
    writer.prepare([embedding.spec], recompute=[embedding.name] if recompute else [])
    return change


def export_embeddings(
    cache: CacheHandle,
    nets: Iterable[str],
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    seed: int = 0,
    recompute: Iterable[str] = (),
    device: str = "auto",
    net_options: Mapping[str, Mapping[str, Any]] = {},
    executor: Executor | None = None,
    progress: Callable[[str], Progress | None] | None = None,
    built: Mapping[str, EmbeddingSet] = {},
) -> EmbedSummary:
    """Write ``emb/<net>/all`` for every clip whose inputs are in the cache (computed before, by
    ``compute_feature_sets``).

    Without ``executor`` the batches stream through this process (on a GPU, with loader processes reading the
    cache); with one, jobs of at most ``BATCHES_PER_JOB`` batches (``batches_per_job``) run on its workers (asking a
    Dask cluster for a ``GPU`` unless ``device`` is ``cpu``), and this process writes what they return. A job that
    is lost (its workers died) fails its clips, with the reason, and the others are written; any other error of a
    job stops the run as it would in this process.
    ``net_options`` maps a net to options of ``get_net`` (a config file's
    ``[net.<name>]``). ``progress(net)``, if given, returns the callable that
    wraps that net's results: ``bar(results, total)``. ``built``: nets whose sets
    were prepared already (by ``extract.overlap``, which embedded the clips decoded
    in this run): the rest of their rows are written, their notes are left to it.
    """
    nets = tuple(nets)
    cache_path = str(cache.path)
    summary = EmbedSummary()
    writer, reader = cache.writer, cache.reopen()  # the reader sees the inputs written before
    for name in nets:
        embedding = built.get(name)
        if embedding is None:
            embedding = embedding_set(reader, name, weights_dir=weights_dir, seed=seed, net_options=net_options)
            summary.notes.append(embedding.note)
            change = prepare_embedding_set(writer, reader, embedding, recompute=embedding.name in recompute)
            summary.notes += [change] if change else []
        net, set_name, kinds = embedding.net, embedding.name, embedding.kinds
        fail_rows_without_inputs(writer, reader, set_name, kinds)
        todo = writer.todo(set_name)
        rows = todo[np.logical_and.reduce([reader.done(k) for k in kinds])[todo]]
        if executor is None:
            jobs = in_order(rows, batch_size)
            results: Iterable[Any] = embed_rows(net, cache_path, rows, batch_size, resolve_device(device))
        else:
            where = None if weights_dir is None else str(Path(weights_dir).absolute())
            shared = (cache_path, name, len(reader.classes), where, net.weights_sha256)
            jobs = in_order(rows, batch_size * batches_per_job(rows.size, batch_size, executor))
            options = tuple(sorted(embedding.options.items()))
            work = [EmbedJob(*shared, seed, options, part, batch_size, device) for part in jobs]
            results = executor.map(embed_job, work, resources=None if device == "cpu" else GPU_RESOURCES)
        bar = progress(name) if progress else None
        # results first: a progress bar around them sees its end and closes at 100 %
        for result, part in zip(bar(results, len(jobs)) if bar else results, jobs, strict=True):
            if isinstance(result, BaseException):
                if not is_lost_job(result):
                    raise result
                for row in part:
                    reason = (
                        f"clip {writer.clip_ids[row]!r}: its embedding job was lost ({type(result).__name__}: {result})"
                    )
                    writer.fail(set_name, int(row), reason)
                continue
            done_rows, vectors = result
            writer.write(set_name, done_rows.tolist(), vectors)
    reader = cache.reopen()  # the writer's structural changes replaced the files the inputs were read from
    failures = reader.failures()
    for name in nets:
        set_name = f"emb/{name}/all"
        summary.done[name] = int(reader.done(set_name).sum())
        summary.failed[name] = {f["clip_id"]: f["reason"] for f in failures if f["feature_set"] == set_name}
    return summary
