"""Decoding in a child process, so that a file that hangs or crashes the decoder costs one clip, not the run.

The child samples a clip's frames (``FrameWorker.sample``) and decodes its audio
track (``FrameWorker.decode_audio``): one container serves both, so a file that
hangs the demuxer would hang either.

A check of the clock between packets (``decode.video``'s deadline) stops a
decode that is merely slow, but not one stuck inside a single FFmpeg call (a
demuxer looping on a crafted index, a read blocked on a dead mount), and a
segfault in a decoder would take the whole run down with it. So by default each
calling thread owns one long-lived child, ``python -m mvemo.extract.decode.worker``,
that decodes its clips one at a time: the parent sends a JSON request on the
child's stdin and reads back a JSON header and the raw frames from its stdout;
when the answer does not come within the clip's ``timeout_s`` plus a grace
period, the parent kills the child (it started it, by its pid), reports the
clip and starts a fresh child for the next one.

Why a long-lived ``subprocess`` and not a process per clip: ``multiprocessing``
refuses children in daemonic workers (Dask's, ``multiprocessing.Pool``'s) and
``fork`` is unsafe in multi-threaded callers, while a fresh interpreter costs
~0.3-0.5 s to import PyAV and numpy. Started once, the child costs only the copy
of the frames through the pipe per clip (``pipeline/bench/video.py`` measures it
beside the in-process path). Results come back as raw bytes described by JSON;
nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from mvemo.extract.decode.audio import AudioWindow, Decoded, decode_audio
from mvemo.extract.decode.frames import VideoSource
from mvemo.extract.decode.packets import DecodeParams, DecodeTimeoutError, NoVideoStreamError, describe_clip
from mvemo.extract.decode.video import SampledFrames, read_sample
from mvemo.manifests.errors import MediaError

STARTUP_TIMEOUT_S = 120.0
_HEADER = struct.Struct(">I")
_ERRORS: dict[str, type[MediaError]] = {
    "MediaError": MediaError,
    "NoVideoStreamError": NoVideoStreamError,
    "DecodeTimeoutError": DecodeTimeoutError,
}


def kill_grace_s(timeout_s: float) -> float:
    """How long past ``timeout_s`` the parent waits for the child's own deadline check before killing it."""
    return 1.0 + 0.1 * timeout_s


class WorkerError(RuntimeError):
    """The worker broke its protocol or raised something that is not a media problem: a bug."""


class FrameWorker:
    """One child process that samples frames from one clip at a time.

    Parameters
    ----------
    command : sequence of str, optional
        The child's command line; default ``python -m mvemo.extract.decode.worker``
        with this checkout on ``PYTHONPATH``. Tests pass a child that never
        answers to check that a hang is stopped.
    """

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command is not None else [sys.executable, "-m", "mvemo.extract.decode.worker"]
        self.owner_pid = os.getpid()
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: Any = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def sample(self, path: str | os.PathLike[str], params: DecodeParams, *, clip_id: str = "") -> SampledFrames:
        """``read_sample`` in the child; past ``params.timeout_s`` plus ``kill_grace_s`` the child is killed.

        Raises
        ------
        MediaError
            As ``read_sample``, or ``DecodeTimeoutError`` when the child was
            killed, or ``MediaError`` when the child died on this file.
        """
        request = {"kind": "frames", "path": str(path), "clip_id": clip_id, "params": asdict(params)}
        header, (frames, second) = self._ask(request, params.timeout_s)
        return SampledFrames(
            frames=frames,
            timestamps_s=np.array(header["timestamps_s"], dtype=np.float64),
            frame_indices=np.array(header["frame_indices"], dtype=np.int64),
            target_times_s=np.array(header["target_times_s"], dtype=np.float64),
            window_s=(header["window_s"][0], header["window_s"][1]),
            source=VideoSource(**header["source"]),
            decoded_frames=header["decoded_frames"],
            frames_second=second,
        )

    def decode_audio(
        self, path: str | os.PathLike[str], window: AudioWindow, *, clip_id: str = "", timeout_s: float
    ) -> Decoded:
        """``extract.decode.audio.decode_audio`` in the child, killed past ``timeout_s`` plus ``kill_grace_s`` (a
        container that hangs the demuxer would hang its audio track's reading as well as its frames')."""
        request = {"kind": "audio", "path": str(path), "clip_id": clip_id, "window": asdict(window)}
        header, (y,) = self._ask(request, timeout_s)
        return Decoded(y, header["sr"], header["valid_s"])

    def _ask(self, request: dict[str, Any], timeout_s: float | None) -> tuple[dict[str, Any], list[Any]]:
        """Send one request; the answer's header and its arrays (None where the header gives none)."""
        path, clip_id = request["path"], request["clip_id"]
        proc = self._ensure_started()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s + kill_grace_s(timeout_s)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            header = self._read_header(proc.stdout, deadline)
            if not header["ok"]:
                error: Exception = _ERRORS.get(header["error"], WorkerError)(header["message"])
                if isinstance(error, WorkerError):
                    error = WorkerError(
                        f"decoder worker failed on {describe_clip(path, clip_id)}:\n{header['message']}"
                    )
                raise _Answered(error)
            arrays = []
            for payload in header["payloads"]:
                array = None if payload is None else np.empty(payload["shape"], dtype=np.dtype(payload["dtype"]))
                if array is not None:
                    _read_into(proc.stdout, array.data.cast("B"), deadline)
                arrays.append(array)
        except _Timeout:
            self.close(kill=True)
            raise DecodeTimeoutError(
                f"{describe_clip(path, clip_id)}: decoding did not finish within timeout_s={timeout_s:g}"
                " and its process was stopped; raise timeout_s if the file is fine but long or large,"
                " else re-encode or replace it"
            ) from None
        except (_Died, BrokenPipeError):
            code = proc.wait()
            self.close()
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise MediaError(
                f"{describe_clip(path, clip_id)}: the decoder process died ({how}) while reading this file;"
                " re-encode or replace it"
            ) from None
        except _Answered as answer:  # the child said why and is ready for the next clip
            raise answer.error from None
        except BaseException:  # Ctrl-C, a bug: a half-read answer would be read as the next clip's
            self.close(kill=True)
            raise
        return header, arrays

    def close(self, *, kill: bool = False) -> None:
        """Stop the child: close its stdin so that it exits, or kill it."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            _stop(self._proc, kill=kill)
            self._proc = None

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        # One BLAS/OpenMP thread: the child's numpy calls (the mono mix is a matrix product) otherwise start
        # a thread per core that spins after each call, on the core a sibling worker computes on (138 instead
        # of 76 ms of CPU a clip with two workers).
        env = dict(os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # A process group of its own: Ctrl-C reaches the run's group, and a child still starting (before it ignores
        # SIGINT) would die there printing Python's shutdown; the parent stops it instead.
        proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0, process_group=0
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _stop, proc, kill=True)
        assert proc.stdout is not None
        try:
            ready = self._read_header(proc.stdout, time.monotonic() + STARTUP_TIMEOUT_S)
        except (_Timeout, _Died):
            self.close(kill=True)
            raise WorkerError(f"the decoder worker {self.command} did not start; run it by hand to see why") from None
        if not ready.get("ready"):
            self.close(kill=True)
            raise WorkerError(f"the decoder worker {self.command} answered {ready!r} instead of its ready line")
        return proc

    def _read_header(self, stream: IO[bytes], deadline: float | None) -> dict[str, Any]:
        size = bytearray(_HEADER.size)
        _read_into(stream, memoryview(size), deadline)
        body = bytearray(_HEADER.unpack(size)[0])
        _read_into(stream, memoryview(body), deadline)
        return json.loads(body)


class _Timeout(Exception):
    pass


class _Answered(Exception):
    """The child answered with an error; ``error`` is what to raise."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Died(Exception):
    pass


def _read_into(stream: IO[bytes], view: memoryview, deadline: float | None) -> None:
    """Fill ``view`` from a pipe, waiting at most until ``deadline`` (monotonic seconds)."""
    got = 0
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while got < len(view):
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and (wait <= 0 or not selector.select(wait)):
                raise _Timeout
            n = stream.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise _Died
            got += n


def _stop(proc: subprocess.Popen[bytes], *, kill: bool) -> None:
    if proc.poll() is None:
        if kill:
            proc.kill()
        elif proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


_local = threading.local()


def _forget_workers_in_fork() -> None:
    global _local
    _local = threading.local()  # a forked child must start its own worker, never talk to its parent's


os.register_at_fork(after_in_child=_forget_workers_in_fork)


def worker_for_this_thread() -> FrameWorker:
    """This thread's worker, started on first use (Dask runs several tasks per process, one per thread)."""
    worker = getattr(_local, "worker", None)
    if worker is None or worker.owner_pid != os.getpid():
        worker = _local.worker = FrameWorker()
    return worker


def read_audio(
    path: str | os.PathLike[str], window: AudioWindow, *, clip_id: str = "", timeout_s: float | None
) -> Decoded:
    """A clip's audio window, decoded by this thread's decoder process and stopped past ``timeout_s``
    (None: decoded in this process, unbounded)."""
    if timeout_s is None:
        return decode_audio(path, window, clip_id=clip_id)
    return worker_for_this_thread().decode_audio(path, window, clip_id=clip_id, timeout_s=timeout_s)


# ---- the child ---------------------------------------------------------------------------------


def _send(out: IO[bytes], header: dict[str, Any], payload: memoryview | None = None) -> None:
    body = json.dumps(header).encode()
    _write_all(out, _HEADER.pack(len(body)) + body)
    if payload is not None:
        _write_all(out, payload)


def _write_all(out: IO[bytes], data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = out.write(view)
        view = view[n or 0 :]


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when its parent dies, even while it is stuck in a decoder."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    """Serve requests from stdin until it closes (or its parent stops reading: the parent was stopped, and
    this child ends without a word). The protocol channel is the original stdout; anything a library prints
    goes to stderr."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a SIGINT sent to this group alone: the parent decides
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    with contextlib.suppress(BrokenPipeError):
        _serve(out)


def _serve(out: IO[bytes]) -> None:
    _send(out, {"ready": True, "pid": os.getpid()})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            header, arrays = _ANSWERS[request["kind"]](request)
        except MediaError as err:
            _send(out, {"ok": False, "error": type(err).__name__, "message": str(err)})
            continue
        except Exception:  # a bug or a library fault: report it whole, keep serving
            _send(out, {"ok": False, "error": "internal", "message": traceback.format_exc()})
            continue
        arrays = [None if a is None else np.ascontiguousarray(a) for a in arrays]
        payloads = [None if a is None else {"shape": list(a.shape), "dtype": a.dtype.str} for a in arrays]
        _send(out, {"ok": True, **header, "payloads": payloads})
        for array in arrays:
            if array is not None:
                _write_all(out, array.data)


def _frames(request: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray | None]]:
    sample = read_sample(request["path"], DecodeParams(**request["params"]), clip_id=request["clip_id"])
    header = {
        "timestamps_s": sample.timestamps_s.tolist(),
        "frame_indices": sample.frame_indices.tolist(),
        "target_times_s": sample.target_times_s.tolist(),
        "window_s": list(sample.window_s),
        "source": asdict(sample.source),
        "decoded_frames": sample.decoded_frames,
    }
    return header, [sample.frames, sample.frames_second]


def _audio(request: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray | None]]:
    decoded = decode_audio(request["path"], AudioWindow(**request["window"]), clip_id=request["clip_id"])
    return {"sr": decoded.sr, "valid_s": decoded.valid_s}, [decoded.y]


_ANSWERS = {"frames": _frames, "audio": _audio}


if __name__ == "__main__":
    main()
