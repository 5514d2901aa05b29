"""``mvemo serve``: a process that imported mvemo's stack and loaded its models once runs each ``mvemo predict`` of
its user's shells in a fork of itself, so that a song's label costs the song, not the start-up.

Standard library only: the client's side (``forward``) runs in every ``mvemo predict`` before anything else is
imported. The exchange on the socket, each message from the server a tag and a number:
- the client sends its arguments, working folder, environment, umask and its streams' encodings, with its standard
  streams as file descriptors;
- the server forks; the fork says it started (``STARTED``, its process id), and the client answers ``GO``. A client
  that gave up waiting has closed, and the fork ends without running anything: a command never runs twice;
- the client sends on each signal it gets (Ctrl-C) as one byte, and the fork raises it in itself; a client that
  closes (dies) ends the command with SIGTERM;
- the fork sends its exit status (``STATUS``), and the server, once it has reaped the fork, sends the status it saw
  (128 + the signal that killed it, as a shell says); the client reads the first. A status before any start means
  the command never ran, and the client runs it itself.
The socket lies in a folder only its user may enter, and each side checks that the other is that user. Its name holds
the Python, the mvemo folder and the newest change of mvemo's code, so that a client never reaches a server that runs
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
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORWARDED = ("predict",)  # the commands a server runs
NO_SERVE = "MVEMO_NO_SERVE"  # set (to anything but "") to run every command in its own process
RELAYED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
STREAMS = (0, 1, 2)
CODE_FOLDERS = ("manifests", "cache", "extract", "fuse", "pipeline")  # mvemo's code, under its package folder
MESSAGE = struct.Struct("!cq")  # a tag and a number
STARTED, STATUS = b"P", b"S"
SIZE = struct.Struct("!q")
GO = b"\0"
NOT_RUN = 254  # the exit of a fork whose client gave up waiting for it
POLL_S = 0.5
REQUEST_WAIT_S = 5.0  # how long the server waits for a connected client's request
START_WAIT_S = (
    15.0  # how long a client waits for its fork to start (else it runs the command itself), and the fork for its go
)
FINISHING_S = 1.0  # how long a server that stops waits for its forks' ends, to log them


class ServeError(Exception):
    """A server cannot start: another serves the same code, or its folder is not this user's alone."""


def socket_path() -> Path:
    """Where the server of this Python and this mvemo code listens: ``$XDG_RUNTIME_DIR/mvemo`` (else
    ``~/.cache/mvemo/serve``), named after the interpreter, the package's folder and its newest source file's time."""
    package = Path(__file__).resolve().parents[1]  # mvemo's folder, or a checkout's where it is installed editable
    newest = max(path.stat().st_mtime_ns for folder in CODE_FOLDERS for path in (package / folder).rglob("*.py"))
    key = hashlib.sha256(json.dumps([sys.executable, str(package), newest]).encode()).hexdigest()[:16]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "mvemo" if runtime else Path.home() / ".cache" / "mvemo" / "serve"
    return folder / f"serve-{key}.sock"


def forward(argv: list[str]) -> int | None:
    """Run the command ``argv`` (the arguments after ``mvemo``) in the server of this code, on this process's
    streams, folder and environment, and return its exit status; ``None`` where no server ran it (another command,
    no server, ``$MVEMO_NO_SERVE``, a standard stream closed, no Unix sockets): the caller then runs it itself."""
    if not argv or argv[0] not in FORWARDED or os.environ.get(NO_SERVE) or not _can_pass_streams():
        return None
    path = socket_path()
    if not _private(path.parent):
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with client:
        try:
            client.connect(str(path))
        except OSError:  # none listening (none started, or one that died and left its socket)
            return None
        if not _same_user(client):
            return None
        with _relaying(client):
            if not _start(client, argv):
                return None
            signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)  # the command runs: a signal from now on reaches it
            reply = _receive_message(client, STATUS)
    if reply is None:
        print("mvemo: the served command ended without an exit status; see `mvemo serve`'s output", file=sys.stderr)
        return 1
    return reply


def serve(
    path: Path,
    run: Callable[[list[str]], int | None],
    *,
    idle_s: float | None = None,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Listen at ``path`` and run each request's ``run(argv)`` (its exit status, or ``SystemExit``) in a fork of this
    process, until ``idle_s`` seconds pass with none running (``None``: until stopped); ``ready`` is called once the
    socket listens. ``run`` starts with the relayed signals blocked and calls ``accept_signals`` once its handlers are
    in. Each command's end is logged on stderr. The socket is removed on the way out; forks still running finish."""
    listener = _listen(path)
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
            argv, pid = request[0]["argv"], _fork(listener, connection, *request, run, running)
            if pid is not None:
                running[pid] = _Running(connection, argv, time.monotonic())
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


def _fork(
    listener: socket.socket,
    connection: socket.socket,
    fields: dict[str, Any],
    streams: list[int],
    run: Callable[[list[str]], int | None],
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
            _run_request(connection, fields, streams, run)
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
    if not _private(folder):
        raise ServeError(f"{folder}: the server's folder must be yours alone (chmod 700 {folder})")
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe:
            try:
                probe.connect(str(path))
            except OSError:  # a server that died left it
                path.unlink()
            else:
                raise ServeError(f"a server of this mvemo already listens at {path}; stop it first (Ctrl-C or kill)")
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
    if not _same_user(connection):
        return None
    connection.settimeout(REQUEST_WAIT_S)
    streams: list[int] = []
    try:
        head, streams, _, _ = socket.recv_fds(connection, SIZE.size, len(STREAMS))
        if not head:
            return None
        if len(head) < SIZE.size or len(streams) != len(STREAMS):
            raise ValueError("no request")
        body = _receive(connection, SIZE.unpack(head)[0])
        if body is None:
            raise ValueError("a request cut short")
        fields = json.loads(body)
        if not isinstance(fields, dict) or not {"argv", "cwd", "env", "umask", "streams"} <= fields.keys():
            raise ValueError("a request without its fields")
        return fields, streams
    except (OSError, ValueError) as error:
        for fd in streams:
            os.close(fd)
        _log(f"a request was dropped ({error})")
        return None


def _run_request(
    connection: socket.socket, fields: dict[str, Any], streams: list[int], run: Callable[[list[str]], int | None]
) -> None:
    """In the fork: tell the client it started and wait for its go, take its streams, folder, environment and umask,
    run the command, send its exit status and end the process (never returns)."""
    status = 1
    try:
        if not _started(connection):  # the client gave up waiting: it runs the command itself
            os._exit(NOT_RUN)
        os.setsid()  # out of the server's terminal: a Ctrl-C there stops the server, not its clients' commands
        for signum in RELAYED:
            signal.signal(signum, signal.SIG_DFL)
        _take_over(fields, streams)
        threading.Thread(target=_relay_signals, args=(connection,), daemon=True).start()
        status = run(list(fields["argv"])) or 0
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
    sys.stdin = open(0, encoding=stdin[0], errors=stdin[1], closefd=False)  # noqa: SIM115 (the process's own)
    buffering = 1 if os.isatty(1) else -1
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
    """In the fork: raise each signal its client sends on, and SIGTERM once the client has gone."""
    while True:
        try:
            sent = connection.recv(1)
        except OSError:
            sent = b""
        os.kill(os.getpid(), sent[0] if sent else signal.SIGTERM)
        if not sent:
            return


def _start(client: socket.socket, argv: list[str]) -> bool:
    """In the client: send the request and say go once its fork started; whether it did (else nothing runs)."""
    client.settimeout(START_WAIT_S)
    body = json.dumps(_request_fields(argv)).encode()
    framed = SIZE.pack(len(body)) + body
    try:
        sent = socket.send_fds(client, [framed], list(STREAMS))
        client.sendall(framed[sent:])
        if _receive_message(client, STARTED) is None:  # the server stopped, or the fork died, before the command
            return False
        client.sendall(GO)
    except OSError:  # timed out: the fork that reads no go runs nothing
        return False
    client.settimeout(None)
    return True


@contextlib.contextmanager
def _relaying(client: socket.socket) -> Iterator[None]:
    """In the client: the relayed signals blocked, to be sent on to the command once the caller unblocks them (it
    started: a signal before waits in the mask); the process's own handling of them after."""

    def relay(signum: int, _: object) -> None:
        with contextlib.suppress(OSError):  # the command has ended meanwhile
            client.send(bytes([signum]))

    previous = {signum: signal.getsignal(signum) for signum in RELAYED}
    signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)
    try:
        for signum in RELAYED:
            signal.signal(signum, relay)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, RELAYED)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)


def _receive_message(connection: socket.socket, expected: bytes) -> int | None:
    """The number of the next message if it has tag ``expected``; ``None`` for another tag or a closed connection."""
    data = _receive(connection, MESSAGE.size)
    if data is None:
        return None
    tag, number = MESSAGE.unpack(data)
    return int(number) if tag == expected else None


def _receive(connection: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or ``None`` where the connection closed first."""
    data = b""
    while len(data) < size:
        if not (part := connection.recv(size - len(data))):
            return None
        data += part
    return data


def _request_fields(argv: list[str]) -> dict[str, Any]:
    umask = os.umask(0)
    os.umask(umask)
    streams = [[stream.encoding, stream.errors] for stream in (sys.stdin, sys.stdout, sys.stderr)]
    return {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask, "streams": streams}


def _exit_status(exit: SystemExit) -> int:
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)
    return 1


def _private(folder: Path) -> bool:
    """Whether ``folder`` is this user's, and no one else's to enter."""
    try:
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


def _same_user(connection: socket.socket) -> bool:
    """Whether the peer runs as this user (where the system tells: Linux; elsewhere the folder's mode guards)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1] == os.getuid()


def _can_pass_streams() -> bool:
    """Unix sockets that pass file descriptors, and three standard streams open to pass."""
    if not hasattr(socket, "send_fds") or None in (sys.stdin, sys.stdout, sys.stderr):
        return False
    try:
        for fd in STREAMS:
            os.fstat(fd)
    except OSError:
        return False
    return True
