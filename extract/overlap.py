"""The nets alongside decoding: clips the workers returned are embedded while they decode later ones.

Without it, stage one decodes every clip, then reads the frames and log-mel back from the cache for the nets: on a
GPU box its wall time is the sum of the two, and the GPU idles through the first. Here the feature pass hands each
clip's inputs, as their rows will hold them (``CacheWriter.as_stored``: an LLD matrix padded to its length; an
input the writer refuses is not embedded), to a thread of this process that runs the nets in batches on the
device. The queue between them is bounded: when the nets fall behind, the feature pass waits (step ``nets``), and
with it the executor's results (a local pool keeps a few jobs per worker in flight).

The cache keeps its single writer: the thread only computes, and the feature pass's process writes each batch of
embeddings once the rows of its inputs are written (after the pass's next write), so a killed run never holds an
embedding whose inputs it lost; an error of the nets stops the run there too, with the features it decoded kept.
Rows whose inputs were computed by an earlier run are left to ``export_embeddings`` afterwards, which reads them
from the cache.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import numpy as np
import torch

from mvemo.cache.handle import CacheHandle
from mvemo.extract.embed import EmbeddingSet, embedding_set, prepare_embedding_set
from mvemo.extract.forward import forward, memory_advice, place, resolve_device
from mvemo.manifests.steps import step

QUEUE_CLIPS = 64  # clips decoded and waiting for the nets: 64 x 5 MB of frames at most
STOP_WAIT_S = 30.0  # how long a stopping run waits for the batch the nets are computing
_END = None


class EmbeddingsAlongside:
    """Each net's ``emb/<net>/all`` for the clips the feature pass computes, in a thread, while it decodes others.

    Use as a context manager around ``compute_feature_sets(..., alongside=it)``: leaving the block normally waits
    for the last batches and writes them; leaving it on an error stops the thread and writes nothing more. ``sets``
    holds the nets it built (empty when no clip was computed), ``notes`` their log lines, ``embedded`` the rows
    written per set (``emb/<net>/all``).
    """

    def __init__(
        self,
        cache: CacheHandle,
        nets: Iterable[str],
        *,
        weights_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        net_options: Mapping[str, Mapping[str, Any]] = {},
        recompute: Iterable[str] = (),
        device: str = "auto",
        batch_size: int = 8,
    ) -> None:
        self.cache, self.nets, self.device_name = cache, tuple(nets), device
        self.device = torch.device("cpu")  # resolved when the first clip comes
        self.weights_dir, self.seed, self.net_options, self.recompute = weights_dir, seed, net_options, set(recompute)
        self.batch_size = batch_size
        self.sets: dict[str, EmbeddingSet] = {}
        self.notes: list[str] = []
        self.embedded: dict[str, int] = defaultdict(int)
        self._todo: dict[str, np.ndarray] = {}
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CLIPS)
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, row: int, result: Mapping[str, Any]) -> None:
        """One clip's computed sets (arrays, or failures): queued for each net whose inputs are all among them and
        whose row is to do. Blocks while the queue is full."""
        if self._thread is None:
            self._start()
        read = {kind for embedding in self.sets.values() for kind in embedding.kinds}
        stored = {  # each input as its row will hold it (an LLD matrix padded to its length), None if refused
            kind: self.cache.writer.as_stored(kind, result[kind])
            for kind in read
            if isinstance(result.get(kind), np.ndarray)
        }
        wanted = {}
        for name, embedding in self.sets.items():
            inputs = tuple(stored.get(kind) for kind in embedding.kinds)
            if self._todo[name][row] and all(value is not None for value in inputs):
                wanted[name] = inputs
        if wanted:
            with step("nets"):
                self._inbox.put((row, wanted))

    def written(self) -> None:
        """The feature pass wrote its rows: write the embeddings computed from them, or raise what the nets raised
        (once the features are safe)."""
        with step("writing"):
            while True:
                try:
                    done = self._outbox.get_nowait()
                except queue.Empty:
                    return
                if isinstance(done, BaseException):
                    raise done
                net, rows, vectors = done
                refused = self.cache.writer.write(self.sets[net].name, rows.tolist(), vectors)
                self.embedded[self.sets[net].name] += len(rows) - len(refused)

    def __enter__(self) -> EmbeddingsAlongside:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._thread is None:
            return
        try:
            if kind is None:
                with step("nets"):
                    self._inbox.put(_END)
                    self._thread.join()
                self.written()
        finally:
            if self._thread.is_alive():  # an error, or a signal while waiting: the thread drops what is left
                self._stopping.set()
                while self._thread.is_alive():
                    try:
                        self._inbox.put(_END, timeout=0.1)
                        break
                    except queue.Full:  # it is computing a batch, then takes the next clip
                        continue
                self._thread.join(timeout=STOP_WAIT_S)

    def _start(self) -> None:
        """Build the nets and give their sets rows in the cache (its feature sets are prepared by now)."""
        self.device = resolve_device(self.device_name)
        reader = self.cache.reopen()
        for name in self.nets:
            embedding = embedding_set(
                reader, name, weights_dir=self.weights_dir, seed=self.seed, net_options=self.net_options
            )
            self.notes.append(embedding.note)
            change = prepare_embedding_set(
                self.cache.writer, reader, embedding, recompute=embedding.name in self.recompute
            )
            self.notes += [change] if change else []
            self.sets[name] = embedding
            todo = np.zeros(len(self.cache.writer.clip_ids), dtype=bool)
            todo[self.cache.writer.todo(embedding.name)] = True
            self._todo[name] = todo
            place(embedding.net, self.device).eval()
        self._thread = threading.Thread(target=self._run, name="mvemo-nets", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The thread: batches of each net's clips, in the order taken, through the net; errors go to the outbox."""
        pending: dict[str, list[tuple[int, tuple[np.ndarray, ...]]]] = defaultdict(list)
        ended = False
        try:
            while not ended:
                item = self._inbox.get()
                ended = item is _END
                for name, inputs in ({} if ended else item[1]).items():
                    pending[name].append((item[0], inputs))
                for name in [n for n, clips in pending.items() if ended or len(clips) == self.batch_size]:
                    if not self._stopping.is_set():
                        self._embed(name, pending.pop(name))
        except BaseException as err:  # the feature pass raises it in its own thread
            self._outbox.put(err)
            while not ended:  # let the feature pass put what it still has
                ended = self._inbox.get() is _END

    def _embed(self, name: str, clips: list[tuple[int, tuple[np.ndarray, ...]]]) -> None:
        embedding = self.sets[name]
        rows = np.array([row for row, _ in clips])
        arrays = [np.stack(batch) for batch in zip(*(inputs for _, inputs in clips), strict=True)]
        with memory_advice(name, self.batch_size), torch.no_grad():
            inputs = embedding.net.prepare(*arrays, device=self.device)
            self._outbox.put((name, rows, forward(embedding.net, inputs, self.device)))
