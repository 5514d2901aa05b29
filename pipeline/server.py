"""``mvemo serve``: a process that imported mvemo's stack and loaded its models once runs each ``mvemo predict`` of
its user's shells in a fork of itself, so that a song's label costs the song, not the start-up.

Standard library only: the client's side (``forward``) runs in every ``mvemo predict`` before anything else is
imported. A request is the client's arguments, working folder, environment and umask, with its standard streams
passed as file descriptors: the fork runs the command on them, so what it prints, the terminal it sees and its exit
status are the client's own. A signal the client gets (Ctrl-C) is sent on to the fork; a client that dies takes its
fork with it. The socket lies in a folder only its user may enter, it answers that user alone, and its name holds the
Python, the mvemo folder and the newest change of mvemo's code, so that a client never reaches a server that runs
other code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORWARDED = ("predict",)  # the commands a server runs
NO_SERVE = "MVEMO_NO_SERVE"  # set (to anything but "") to run every command in its own process
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STREAMS = (0, 1, 2)
NUMBER = struct.Struct("!q")
POLL_S = 0.5
ROOMS = ("manifests", "cache", "extract", "fuse", "pipeline")  # the folders of mvemo's code


class ServeError(Exception):
    """A server cannot start: another serves the same code, or its folder is not this user's alone."""


def socket_path() -> Path:
    """Where the server of this Python and this mvemo code listens: ``$XDG_RUNTIME_DIR/mvemo`` (else
    ``~/.cache/mvemo``), named after the interpreter, the package's folder and its newest source file's time."""
    package = Path(__file__).resolve().parents[1]  # mvemo's folder, or a checkout's where it is installed editable
    newest = max(path.stat().st_mtime_ns for room in ROOMS for path in (package / room).rglob("*.py"))
    key = hashlib.sha256(json.dumps([sys.executable, str(package), newest]).encode()).hexdigest()[:16]
    runtime = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(runtime) / "mvemo" / f"serve-{key}.sock"


def forward(argv: list[str]) -> int | None:
    """Run the command ``argv`` (the arguments after ``mvemo``) in the server of this code, on this process's
    streams, folder and environment, and return its exit status; ``None`` where no server runs it (another command,
    no server, ``$MVEMO_NO_SERVE``, a standard stream closed): the caller then runs it itself."""
    if not argv or argv[0] not in FORWARDED or os.environ.get(NO_SERVE) or not all(_open(fd) for fd in STREAMS):
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with client:
        try:
            client.connect(str(socket_path()))
        except OSError:  # none listening (none started, or one that died and left its socket)
            return None
        umask = os.umask(0)
        os.umask(umask)
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask}).encode()
        socket.send_fds(client, [NUMBER.pack(len(request)) + request], list(STREAMS))
        pid = _read_number(client)
        if pid is None or pid <= 1:  # the server stopped before it started the command
            return None
        for signum in RELAYED:
            signal.signal(signum, lambda signum, _: os.kill(pid, signum))
        status = _read_number(client)
    if status is None:
        print(f"mvemo: the served command (process {pid}) ended without an exit status; see `mvemo serve`'s output", file=sys.stderr)  # fmt: skip
        return 1
    return status


def serve(path: Path, run: Callable[[list[str]], int], *, idle_s: float | None = None, ready: Callable[[], None] = lambda: None) -> None:  # fmt: skip
    """Listen at ``path`` and run each request's ``run(argv)`` (its exit status) in a fork of this process, until
    ``idle_s`` seconds pass without a request and none runs (``None``: until stopped). ``ready`` is called once the
    socket listens. The socket is removed on the way out; forks still running finish their commands."""
    listener = _listen(path)
    running: set[int] = set()
    last = time.monotonic()
    try:
        ready()
        while True:
            running -= {pid for pid in running if os.waitpid(pid, os.WNOHANG)[0] == pid}
            if idle_s is not None and not running and time.monotonic() - last > idle_s:
                return
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                request = _request(connection)
                if request is None:
                    continue
                fields, streams = request
                signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)  # the fork's own handlers go in before any lands
                pid = os.fork()
                if pid == 0:
                    try:
                        listener.close()
                        _run_request(connection, fields, streams, run)
                    finally:
                        os._exit(1)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
                for fd in streams:
                    os.close(fd)
                running.add(pid)
                last = time.monotonic()
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def _listen(path: Path) -> socket.socket:
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise ServeError(f"{folder}: the server's folder must be yours alone (chmod 700 {folder})")
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe:
            try:
                probe.connect(str(path))
            except OSError:  # a server that died left it
                path.unlink()
            else:
                raise ServeError(f"a server of this mvemo already listens at {path}; stop it first (Ctrl-C where it runs)")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.settimeout(POLL_S)
    return listener


def _request(connection: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The request's fields and its three streams, or ``None`` for a peer of another user or a broken request."""
    peer_uid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
    if peer_uid != os.getuid():
        return None
    connection.settimeout(POLL_S * 10)
    streams: list[int] = []
    try:
        head, streams, _, _ = socket.recv_fds(connection, NUMBER.size, len(STREAMS))
        if len(head) < NUMBER.size or len(streams) != len(STREAMS):
            raise ValueError("no request")
        (size,) = NUMBER.unpack(head)
        body = b""
        while len(body) < size:
            if not (part := connection.recv(size - len(body))):
                raise ValueError("a request cut short")
            body += part
        return json.loads(body), streams
    except (OSError, ValueError) as error:
        for fd in streams:
            os.close(fd)
        print(f"mvemo serve: a request was dropped ({error})", file=sys.stderr)
        return None


def _run_request(connection: socket.socket, fields: dict[str, Any], streams: list[int], run: Callable[[list[str]], int]) -> None:  # fmt: skip
    """In the fork: take the client's streams, folder, environment and umask, run the command, send its exit status
    and end the process (never returns)."""
    status = 1
    try:
        connection.settimeout(None)
        connection.sendall(NUMBER.pack(os.getpid()))
        os.setsid()  # out of the server's terminal: a Ctrl-C there stops the server, not its clients' commands
        for signum in RELAYED:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
        for target, fd in zip(STREAMS, streams):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own stream, for its life)
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(fields["cwd"])
        os.environ.clear()
        os.environ.update(fields["env"])
        os.umask(fields["umask"])
        threading.Thread(target=_stop_when_gone, args=(connection,), daemon=True).start()
        status = run(list(fields["argv"]))
    except SystemExit as exit:
        status = _exit_status(exit)
    except BaseException:
        traceback.print_exc()
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)  # the command is over: nothing may stop the status now
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):
                stream.flush()
        with contextlib.suppress(OSError):
            connection.sendall(NUMBER.pack(status))
        os._exit(status)


def _stop_when_gone(connection: socket.socket) -> None:
    """End the command with SIGTERM once its client has gone (it sends nothing more while it waits)."""
    try:
        gone = connection.recv(1) == b""
    except OSError:
        gone = True
    if gone:
        os.kill(os.getpid(), signal.SIGTERM)


def _exit_status(exit: SystemExit) -> int:
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)
    return 1


def _read_number(connection: socket.socket) -> int | None:
    data = b""
    while len(data) < NUMBER.size:
        if not (part := connection.recv(NUMBER.size - len(data))):
            return None
        data += part
    return int(NUMBER.unpack(data)[0])


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
