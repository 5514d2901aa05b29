"""The server's side of ``mvemo serve``: listen, refuse what it cannot run as the caller's own process would, and run
each request's command in a fork of itself (the exchange: ``wire``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvemo.pipeline.serving.match import difference, process_settings, thread_counts
from mvemo.pipeline.serving.wire import (
    GO,
    MESSAGE,
    RELAYED,
    SERVED_COMMANDS,
    SIZE,
    START_WAIT_S,
    STARTED,
    STATUS,
    STREAMS,
    listening,
    private,
    receive,
    same_user,
    send_refusal,
)

NOT_RUN = 254  # the exit of a fork whose client gave up waiting for it
POLL_S = 0.5
REQUEST_WAIT_S = 5.0  # how long the server waits for a connected client's request
FINISHING_S = 1.0  # how long a server that stops waits for its forks' ends, to log them
REQUEST_FIELDS = {"argv", "cwd", "env", "umask", "streams", "process"}

# What a served command is run by: its arguments (after ``mvemo``) and the size of each thread pool to take
Run = Callable[[list[str], dict[str, int]], "int | None"]


class ServeError(Exception):
    """A server cannot start: another serves the same code, or its folder is not this user's alone."""


@dataclass(frozen=True)
class Serving:
    """What a server runs its requests with: ``run``, and the thread pools' sizes it ``started`` with (by
    ``match.THREAD_POOLS`` name), for a caller whose environment names none."""

    run: Run
    started: Mapping[str, int]


def serve(
    path: Path,
    serving: Serving,
    *,
    idle_s: float | None = None,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Listen at ``path`` and run each request's command (``serving.run``: its exit status, or ``SystemExit``) in a
    fork of this process, until ``idle_s`` seconds pass with none running (``None``: until stopped); ``ready`` is
    called once the socket listens. A request for another command than ``predict``, or from a process whose settings
    differ from this one's (``match``), is refused: its client runs it itself. ``run`` starts with the relayed signals
    blocked and calls ``accept_signals`` once its handlers are in. Each command's end is logged on stderr. The socket
    is removed on the way out; forks still running finish."""
    listener = _listen(path)
    own = process_settings()
    running: dict[int, _Running] = {}
    last = time.monotonic()
    try:
        ready()
        while True:
            if _reap(running):
                last = time.monotonic()
            if idle_s is not None and not running and time.monotonic() - last > idle_s:
                return
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            request = _request(connection)
            if request is None:
                connection.close()
                continue
            fields, streams = request
            counts = _admitted(connection, fields, streams, own, serving.started)
            if counts is not None and (
                pid := _fork(listener, connection, fields, streams, serving.run, counts, running)
            ):
                running[pid] = _Running(connection, fields["argv"], time.monotonic())
    finally:
        path.unlink(missing_ok=True)
        listener.close()
        ending = time.monotonic() + FINISHING_S  # the commands ending now are logged; the others finish on their own
        while _reap(running) or (running and time.monotonic() < ending):
            time.sleep(POLL_S / 25)


def accept_signals() -> None:
    """In a served command, once its signal handlers are in: the signals relayed from its client reach it."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)


@dataclass
class _Running:
    connection: socket.socket
    argv: list[str]
    started: float


def _admitted(
    connection: socket.socket,
    fields: dict[str, Any],
    streams: list[int],
    own: Mapping[str, Any],
    started: Mapping[str, int],
) -> dict[str, int] | None:
    """The thread counts the request's command runs with, or ``None`` where it is refused (its client told why, the
    refusal logged, its streams and connection closed)."""
    argv = fields["argv"]
    if not argv or argv[0] not in SERVED_COMMANDS:
        why: str | dict[str, int] | None = f"`mvemo serve` runs {' and '.join(SERVED_COMMANDS)} alone"
    else:
        why = difference(fields["process"], own) or thread_counts(
            fields["env"], started=started, started_env=os.environ
        )
    if isinstance(why, dict):
        return why
    with contextlib.suppress(OSError):  # a client that has gone runs nothing
        send_refusal(connection, str(why))
    for fd in streams:
        os.close(fd)
    connection.close()
    _log(f"{' '.join(map(str, argv))[:200]}: refused, its client runs it itself: {why}")
    return None


def _fork(
    listener: socket.socket,
    connection: socket.socket,
    fields: dict[str, Any],
    streams: list[int],
    run: Run,
    counts: dict[str, int],
    running: dict[int, _Running],
) -> int | None:
    """Fork the request's command; in the server, the fork's process id (``None``: no fork, the request dropped)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)  # the fork's own handlers go in before any lands
    try:
        pid = os.fork()
    except OSError as error:
        pid = None
        connection.close()
        _log(f"{' '.join(fields['argv'])[:200]}: not run, no fork ({error})")
    if pid == 0:
        try:
            listener.close()
            for other in running.values():  # the fork holds its own client's connection alone
                other.connection.close()
            _run_request(connection, fields, streams, run, counts)
        finally:
            os._exit(1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
    for fd in streams:
        os.close(fd)
    return pid


def _reap(running: dict[int, _Running]) -> bool:
    """Wait for the forks that ended: send each one's client the status the fork ended with (it may have sent none:
    killed by a signal), log each; whether any ended."""
    ended = False
    for pid in list(running):
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done != pid:
            continue
        command = running.pop(pid)
        status = os.waitstatus_to_exitcode(wait_status)
        status = 128 - status if status < 0 else status  # killed by signal -status: as a shell says it
        with contextlib.suppress(OSError):  # a client that read the fork's own status has gone
            command.connection.sendall(MESSAGE.pack(STATUS, status))
        command.connection.close()
        words = " ".join(command.argv)[:200]
        seconds = time.monotonic() - command.started
        _log(
            f"{words}: not run: its client ran it alone"
            if status == NOT_RUN
            else f"{words}: exit {status} in {seconds:.2f} s"
        )
        ended = True
    return ended


def _log(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a server whose stderr has gone serves on
        print(f"mvemo serve: {line}", file=sys.stderr, flush=True)


def _listen(path: Path) -> socket.socket:
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not private(folder):
        raise ServeError(f"{folder}: the server's folder must be yours alone (chmod 700 {folder})")
    if path.exists():
        if listening(path):
            raise ServeError(f"a server of this mvemo already listens at {path}; stop it first (Ctrl-C or kill)")
        path.unlink()  # a server that died left it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
    except OSError as error:
        raise ServeError(f"{path}: {error}; set XDG_RUNTIME_DIR to a folder of a shorter path") from None
    listener.listen()
    listener.settimeout(POLL_S)
    return listener


def _request(connection: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The request's fields and its three streams; ``None`` for a peer of another user, one that sent nothing (a
    probe) or a broken request (logged)."""
    if not same_user(connection):
        return None
    connection.settimeout(REQUEST_WAIT_S)
    streams: list[int] = []
    try:
        head, streams, _, _ = socket.recv_fds(connection, SIZE.size, len(STREAMS))
        if not head:
            return None
        if len(head) < SIZE.size or len(streams) != len(STREAMS):
            raise ValueError("no request")
        body = receive(connection, SIZE.unpack(head)[0])
        if body is None:
            raise ValueError("a request cut short")
        fields = json.loads(body)
        if not isinstance(fields, dict) or not fields.keys() >= REQUEST_FIELDS:
            raise ValueError("a request without its fields")
        return fields, streams
    except (OSError, ValueError) as error:
        for fd in streams:
            os.close(fd)
        _log(f"a request was dropped ({error})")
        return None


def _run_request(
    connection: socket.socket, fields: dict[str, Any], streams: list[int], run: Run, counts: dict[str, int]
) -> None:
    """In the fork: tell the client it started and wait for its go, take its streams, folder, environment and umask,
    run the command, send its exit status and end the process (never returns)."""
    status = 1
    try:
        if not _started(connection):  # the client gave up waiting: it runs the command itself
            os._exit(NOT_RUN)
        os.setsid()  # a process group of its own, out of the server's terminal: a Ctrl-C there stops the server alone
        for signum in RELAYED:
            signal.signal(signum, signal.SIG_DFL)
        _take_over(fields, streams)
        threading.Thread(target=_relay_signals, args=(connection,), daemon=True).start()
        status = run(list(fields["argv"]), counts) or 0
    except SystemExit as exit:
        status = _exit_status(exit)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)  # the command is over: nothing may stop the status now
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError):
                    stream.flush()
            with contextlib.suppress(OSError):
                connection.sendall(MESSAGE.pack(STATUS, status))
        finally:
            os._exit(status)  # what a late signal stopped above, the server sends once it reaps the fork


def _take_over(fields: dict[str, Any], streams: list[int]) -> None:
    """In the fork: the client's streams (with their encodings and error handlers), folder, environment, umask, time
    zone and temporary folder."""
    for target, fd in zip(STREAMS, streams):
        os.dup2(fd, target)
        os.close(fd)
    (stdin, stdout, stderr) = fields["streams"]
    buffering = 1 if os.isatty(1) else -1
    sys.stdin = open(0, encoding=stdin[0], errors=stdin[1], closefd=False)  # noqa: SIM115 (the process's own)
    sys.stdout = open(1, "w", buffering=buffering, encoding=stdout[0], errors=stdout[1], closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding=stderr[0], errors=stderr[1], closefd=False)  # noqa: SIM115
    os.chdir(fields["cwd"])
    os.environ.clear()
    os.environ.update(fields["env"])
    os.umask(fields["umask"])
    if hasattr(time, "tzset"):
        time.tzset()
    tempfile.tempdir = None  # found again from $TMPDIR


def _started(connection: socket.socket) -> bool:
    """In the fork: whether its client, told that it started, says go."""
    connection.settimeout(START_WAIT_S)
    try:
        connection.sendall(MESSAGE.pack(STARTED, os.getpid()))
        go = connection.recv(len(GO))
    except OSError:
        return False
    connection.settimeout(None)
    return go == GO


def _relay_signals(connection: socket.socket) -> None:
    """In the fork: raise each signal its client sends on in the fork's process group (the command and the processes
    it started, as a terminal's Ctrl-C reaches them), and SIGTERM once the client has gone."""
    while True:
        try:
            sent = connection.recv(1)
        except OSError:
            sent = b""
        os.killpg(0, sent[0] if sent else signal.SIGTERM)
        if not sent:
            return


def _exit_status(exit: SystemExit) -> int:
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)
    return 1
