"""A one-command ``predict``'s feature sets, computed in a process of their own while the command's process imports
torch and runs the nets.

In one process, a first label waited for torch's imports, then librosa's, then the clip's feature sets, then the
nets. Here a second process, spawned before the first imports torch, imports stage one's feature code
(``pipeline.predict.clip_sets``: librosa, scipy, numba) and checks the saved model while the first imports torch;
then it computes each clip's sets while the first loads the nets and runs them. It sends a clip's sets in two parts:
first those the nets read, so that the nets embed the clip while its other sets are computed; each further clip's
sets are computed while the nets embed the one before.

Before its first clip the process checks that this version computes every feature set each model of the saved folder
reads with the recorded fingerprint; ``pipeline.predict.inputs.check_computable`` raises what it found as if it had
checked them itself. A clip whose sets fail is that clip's failure. A process that dies on a clip fails that clip, and
a new one computes the others.

A ``SetsAhead`` is started from the main thread (it sets signal handlers) of a program whose main module can be
imported again (``multiprocessing``'s spawn), as the console scripts are.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from mvemo.fuse.saved.model import SavedFusionModel, load_fusion_model
from mvemo.manifests.errors import CacheError, ConfigError, MediaError, MvemoError
from mvemo.manifests.schema import Clip
from mvemo.pipeline.executors import keep_freed_heap
from mvemo.pipeline.predict.failures import failure_reason

# A part of a clip's feature sets as the process sends it: the sets by name, or the error computing them raised
Part = dict[str, np.ndarray] | Exception
PARTS_A_CLIP = 2  # the sets the clip's nets read, then the others (``compute_clips``)
# The signals the command handles, sent to its whole process group by a terminal or a scheduler: the process ignores
# them, and the command, stopping, closes the process's pipe or kills it
COMMAND_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SetsAhead:
    """The process that computes, ahead of the nets, the feature sets of the clips a saved model labels; one request
    at a time (``parts``)."""

    def __init__(self, folder: str | os.PathLike[str], weights_dir: str | os.PathLike[str] | None = None) -> None:
        """Start the process for the model saved in ``folder``; weight files (the faces sets') are looked for in
        ``weights_dir`` first."""
        self.folder = str(Path(folder).absolute())
        self.weights_dir = None if weights_dir is None else str(Path(weights_dir).absolute())
        self._checks: dict[str, Exception | None] | None = None
        self._owed = 0  # the parts the process still has to send of the last request
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # not a fork: it would copy this process's threads' locks
        self._connection, theirs = context.Pipe()
        self._process = context.Process(
            target=compute_sets, args=(theirs, self.folder, self.weights_dir), name="mvemo-sets", daemon=True
        )
        # the process starts with the command's signals ignored, as Python keeps an ignored signal so across exec (a
        # signal in these few milliseconds is lost)
        handlers = {signum: signal.getsignal(signum) for signum in COMMAND_SIGNALS}
        try:
            for signum in COMMAND_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            self._process.start()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        theirs.close()

    def check(self, name: str) -> None:
        """Raise what checking model ``name``'s feature sets raised in the process (``clip_sets.check_feature_sets``);
        the first call waits for the process to have checked them all."""
        if self._checks is None:
            try:
                checks = self._connection.recv()
            except (EOFError, OSError):
                checks = MvemoError(f"it died (exit {self._ended()}); its error, if it had time to say one, is above")
            if isinstance(checks, Exception):
                raise MvemoError(
                    f"the process that computes the clips' feature sets could not check the model saved in"
                    f" {self.folder}: {checks}"
                )
            self._checks = checks
        if (error := self._checks[name]) is not None:
            raise error

    def parts(self, name: str, clips: list[Clip]) -> Iterator[Part]:
        """The feature sets model ``name`` reads of each clip, in order, in two parts a clip: those its nets read, then
        the others. The process starts on them at once; one that still owes parts of an earlier request, left
        unread, is replaced, so that no clip is given another's sets."""
        self.check(name)
        if self._owed:
            self._replace(name)
        try:
            self._connection.send((name, clips))
        except OSError:  # it died before: a new one computes them
            self._replace(name)
            self._connection.send((name, clips))
        self._owed = PARTS_A_CLIP * len(clips)
        return self._received(name, clips)

    def _received(self, name: str, clips: list[Clip]) -> Iterator[Part]:
        for index, clip in enumerate(clips):
            received = 0
            try:
                while received < PARTS_A_CLIP:
                    part = self._connection.recv()
                    received += 1
                    self._owed -= 1
                    yield part
            except (EOFError, OSError):  # its end closed, or reset with a part unread
                died = MediaError(
                    f"clip {clip.clip_id!r}: the process computing its feature sets died (exit {self._ended()})"
                )
                yield from [died] * (PARTS_A_CLIP - received)
                self._replace(name)
                self._connection.send((name, clips[index + 1 :]))
                self._owed = PARTS_A_CLIP * (len(clips) - index - 1)

    def _replace(self, name: str) -> None:
        """A new process in place of one that died or owes parts of a request left unread, for model ``name``."""
        self._kill()
        self._start()
        self._checks = None
        self._owed = 0
        self.check(name)

    def _ended(self) -> int | None:
        """The exit code of the process, which has closed its end of the pipe."""
        self._process.join()
        return self._process.exitcode

    def _kill(self) -> None:
        self._connection.close()
        self._process.kill()
        self._process.join()

    def close(self) -> None:
        """End the process: told that no clips follow, where it checked the model and sent every part asked for;
        else killed, as the command stopped before it needed them (a signal, an error), rather than waited for."""
        if self._checks is None or self._owed:
            self._kill()
        else:
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
    keep_freed_heap()
    # here and not with this module: the command's own process computes no set of a model that reads one row a clip
    from mvemo.pipeline.predict.clip_sets import check_feature_sets

    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):  # the command closed its end
        try:
            saved = load_fusion_model(Path(folder))
        except Exception as error:  # the command reads the model too, and says what is wrong with it
            connection.send(_sendable(error))
            return
        checks: dict[str, Exception | None] = {}
        for name in saved.models:
            try:
                check_feature_sets(saved, name, weights_dir)
                checks[name] = None
            except (MvemoError, TypeError, KeyError, ValueError) as error:  # those ``check_computable`` tells apart
                checks[name] = _sendable(error)
        gc.freeze()
        gc.enable()
        connection.send(checks)
        while True:
            name, clips = connection.recv()
            compute_clips(connection, saved, name, clips, weights_dir)
    # the process ends at once: it holds no file but its standard streams, and the interpreter's shutdown, which the
    # command waits for, took 0.22 s
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def compute_clips(
    connection: Connection, saved: SavedFusionModel, name: str, clips: list[Clip], weights_dir: str | None
) -> None:
    """Send the sets model ``name`` reads of each clip, two parts a clip (``SetsAhead.parts``)."""
    from mvemo.pipeline.predict.clip_sets import ClipFeatures, model_configs, net_input_sets

    configs, fingerprints = model_configs(saved, name)
    read_by_nets = net_input_sets(saved, name)
    for clip in clips:
        features = ClipFeatures(clip, weights_dir)  # the audio is decoded for each part, the frames sampled once
        failed: Exception | None = None
        for part in (read_by_nets, set(configs) - read_by_nets):
            if failed is None:
                try:
                    sets = features.get({n: c for n, c in configs.items() if n in part}, fingerprints)
                except MvemoError as error:
                    failed = _sendable(error)
                except Exception as error:  # a decoder or library fault: the clip's failure, as ``predict`` says
                    failed = MediaError(failure_reason(clip, error))
            connection.send(sets if failed is None else failed)


def _sendable(error: Exception) -> Exception:
    """``error`` as it may cross the pipe: itself where it pickles and unpickles, else its message under the nearest of
    mvemo's error types (an error whose ``__init__`` takes more than its message does not unpickle)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        kinds = (ConfigError, MediaError, CacheError, MvemoError)
        return next((kind for kind in kinds if isinstance(error, kind)), MvemoError)(str(error))
