"""A one-command ``predict``'s feature sets, computed in a process of their own while the command's process imports
torch and loads the nets.

In one process, a first label waited for torch's imports, then librosa's, then the clip's feature sets, then the
nets. Here a second process, spawned before the first imports torch, imports stage one's feature code
(``pipeline.predict.clip_sets``: librosa, scipy, numba) and computes each clip's sets while the first imports torch
and loads the nets. It sends a clip's sets in two parts: first those the nets read, so that the nets embed the clip
while its other sets are computed; each further clip's sets are computed while the nets embed the one before.

Before its first clip the process checks that this version computes every feature set each model of the saved folder
reads with the recorded fingerprint; ``pipeline.predict.inputs.check_computable`` raises what it found as if it had
checked them itself. A clip whose sets fail is that clip's failure. A process that dies on a clip fails that clip, and
a new one computes the others.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from mvemo.fuse.saved.model import SavedFusionModel, load_fusion_model
from mvemo.manifests.errors import MediaError, MvemoError
from mvemo.manifests.schema import Clip
from mvemo.pipeline.predict.failures import failure_reason

# A part of a clip's feature sets as the process sends it: the sets by name, or the error computing them raised
Part = dict[str, np.ndarray] | MvemoError
PARTS_A_CLIP = 2  # the sets the nets read, then the others


class SetsAhead:
    """The process that computes, ahead of the nets, the feature sets of the clips a saved model labels."""

    def __init__(self, folder: str | os.PathLike[str], weights_dir: str | os.PathLike[str] | None = None) -> None:
        """Start the process for the model saved in ``folder``; weight files (the faces sets') are looked for in
        ``weights_dir`` first."""
        self.folder = str(Path(folder).absolute())
        self.weights_dir = None if weights_dir is None else str(Path(weights_dir).absolute())
        self._checks: dict[str, Exception | None] | None = None
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # not a fork: it would copy this process's threads' locks
        self._connection, theirs = context.Pipe()
        self._process = context.Process(
            target=compute_sets, args=(theirs, self.folder, self.weights_dir), name="mvemo-sets", daemon=True
        )
        # Ctrl-C, sent to the whole process group, is the command's to handle (it closes the process's pipe): the
        # process starts ignoring it, as Python keeps a signal ignored across exec. One that reaches this process
        # meanwhile waits, blocked, for its handler to be back.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._process.start()
        finally:
            signal.signal(signal.SIGINT, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()

    def check(self, name: str) -> None:
        """Raise what checking model ``name``'s feature sets raised in the process (``clip_sets.check_feature_sets``);
        the first call waits for the process to have checked them all."""
        if self._checks is None:
            try:
                self._checks = self._connection.recv()
            except (EOFError, OSError):
                raise MvemoError(
                    f"the process that computes the clips' feature sets died (exit {self._ended()}) as it checked"
                    f" the model saved in {self.folder} (its error, if it had time to say one, is above)"
                ) from None
        assert self._checks is not None
        if (error := self._checks[name]) is not None:
            raise error

    def parts(self, name: str, clips: list[Clip]) -> Iterator[Part]:
        """The feature sets model ``name`` reads of each clip, in order, in two parts a clip: those its nets read, then
        the others. The process starts on them at once."""
        self.check(name)
        try:
            self._connection.send((name, clips))
        except OSError:  # it died before: a new one computes them
            self._start_again(name)
            self._connection.send((name, clips))
        return self._received(name, clips)

    def _received(self, name: str, clips: list[Clip]) -> Iterator[Part]:
        for index, clip in enumerate(clips):
            received = 0
            try:
                while received < PARTS_A_CLIP:
                    part = self._connection.recv()
                    received += 1
                    yield part
            except (EOFError, OSError):  # its end closed, or reset with a part unread
                died = MediaError(
                    f"clip {clip.clip_id!r}: the process computing its feature sets died (exit {self._ended()})"
                )
                yield from [died] * (PARTS_A_CLIP - received)
                self._start_again(name)
                self._connection.send((name, clips[index + 1 :]))

    def _start_again(self, name: str) -> None:
        """A new process in place of one that died, for model ``name``."""
        self._ended()
        self._start()
        self._checks = None
        self.check(name)

    def _ended(self) -> int | None:
        """The exit code of the process, which has closed its end of the pipe."""
        self._process.join()
        return self._process.exitcode

    def close(self) -> None:
        """Tell the process there are no more clips, and wait for it to end."""
        self._connection.close()
        self._process.join()

    def __enter__(self) -> SetsAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def compute_sets(connection: Connection, folder: str, weights_dir: str | None) -> None:
    """The process's work: check every model's feature sets, then compute the sets of the clips of each
    ``(model, clips)`` it is sent, two parts a clip, until the command closes its end of the pipe."""
    gc.disable()  # until its imports are done (``pipeline.cli.collector`` says why)
    # here and not with this module: the command's own process never computes a set, nor imports librosa
    from mvemo.pipeline.predict.clip_sets import check_feature_sets

    saved = load_fusion_model(Path(folder))
    checks: dict[str, Exception | None] = {}
    for name in saved.models:
        try:
            check_feature_sets(saved, name, weights_dir)
            checks[name] = None
        except (MvemoError, TypeError, KeyError, ValueError) as error:  # those ``check_computable`` tells apart
            checks[name] = error
    gc.freeze()
    gc.enable()
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):  # the command closed its end
        connection.send(checks)
        while True:
            name, clips = connection.recv()
            compute_clips(connection, saved, name, clips, weights_dir)
    gc.freeze()  # the process ends: its shutdown need not walk its objects


def compute_clips(
    connection: Connection, saved: SavedFusionModel, name: str, clips: list[Clip], weights_dir: str | None
) -> None:
    """Send the sets model ``name`` reads of each clip, two parts a clip (``SetsAhead.parts``)."""
    from mvemo.pipeline.predict.clip_sets import ClipFeatures, model_configs, net_input_sets

    configs, fingerprints = model_configs(saved, name)
    read_by_nets = net_input_sets(saved, name)
    for clip in clips:
        features = ClipFeatures(clip, weights_dir)  # one decode for both parts
        failed: MvemoError | None = None
        for part in (read_by_nets, set(configs) - read_by_nets):
            if failed is None:
                try:
                    sets = features.get({n: c for n, c in configs.items() if n in part}, fingerprints)
                except Exception as error:  # a decoder or library fault: the clip's failure, as ``predict`` says
                    failed = error if isinstance(error, MvemoError) else MediaError(failure_reason(clip, error))
            connection.send(sets if failed is None else failed)
