"""The client's side of ``mvemo serve``, in every ``mvemo predict`` before anything else is imported: send the command
to the server of this code where the caller asks for it (``MVEMO_SERVE=1``), else say why it runs here."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

from mvemo.pipeline.serving.match import process_settings
from mvemo.pipeline.serving.wire import (
    GO,
    REFUSED,
    RELAYED,
    SERVE,
    SERVED_COMMANDS,
    SIZE,
    START_WAIT_S,
    STARTED,
    STATUS,
    STREAMS,
    private,
    receive_message,
    same_user,
    socket_path,
)

# How the command of this process runs, for ``mvemo predict --verbose``: where a server ran it, or why it runs here
_how = ["in a process of its own"]


def how_this_runs() -> str:
    """Where this process's command runs, and why: ``forward`` and a served fork say it."""
    return _how[0]


def say_how_this_runs(how: str) -> None:
    _how[0] = how


def forward(argv: list[str]) -> int | None:
    """Run the command ``argv`` (the arguments after ``mvemo``) in the server of this code, on this process's
    streams, folder and environment, and return its exit status; ``None`` where no server ran it (another command, no
    ``$MVEMO_SERVE``, no server, a server that refused it, a standard stream closed, no Unix sockets): the caller
    then runs it itself, and ``how_this_runs`` says why."""
    if not argv or argv[0] not in SERVED_COMMANDS:
        return None
    outcome = _served(argv)
    if isinstance(outcome, str):
        say_how_this_runs(f"in a process of its own: {outcome}")
        return None
    return outcome


def _served(argv: list[str]) -> int | str:
    """The exit status of ``argv`` run by the server, or why it did not run there."""
    if os.environ.get(SERVE) != "1":
        return f"${SERVE} is not 1 (set it where `mvemo serve` should run predict)"
    if not _can_pass_streams():
        return "a standard stream is closed, or the system passes none over a socket"
    path = socket_path()
    if not private(path.parent):
        return f"no server of this mvemo's code and packages: {path.parent} is not a folder of yours alone"
    request = json.dumps(_request_fields(argv)).encode()  # before connecting: the server waits for it
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with client:
        try:
            client.connect(str(path))
        except OSError:  # none listening (none started, or one that died and left its socket)
            return f"no server of this mvemo's code and packages listens at {path} (`mvemo serve`)"
        if not same_user(client):
            return f"the server at {path} runs as another user"
        with _relaying(client):
            refused = _start(client, request)
            if refused is not None:
                return refused
            signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)  # the command runs: a signal from now on reaches it
            reply = receive_message(client)
    if reply is None or reply[0] != STATUS:
        print("mvemo: the served command ended without an exit status; see `mvemo serve`'s output", file=sys.stderr)
        return 1
    return int(reply[1])


def _start(client: socket.socket, request: bytes) -> str | None:
    """Send the ``request`` (its fields as JSON) and say go once its fork started; ``None`` where it did, else why
    nothing runs there."""
    client.settimeout(START_WAIT_S)
    framed = SIZE.pack(len(request)) + request
    try:
        sent = socket.send_fds(client, [framed], list(STREAMS))
        if sent < len(framed):  # never a send of nothing: the server may have read it all, refused and closed
            client.sendall(framed[sent:])
        reply = receive_message(client)
        if reply is not None and reply[0] == REFUSED:
            return f"the server refused it: {reply[1]}"
        if reply is None or reply[0] != STARTED:
            return "the server stopped before the command started"
        client.sendall(GO)
    except TimeoutError:  # the fork that reads no go runs nothing
        return f"the server did not start it within {START_WAIT_S:g} s"
    except OSError as error:
        return f"the connection to the server broke ({error})"
    client.settimeout(None)
    return None


@contextlib.contextmanager
def _relaying(client: socket.socket) -> Iterator[None]:
    """The relayed signals blocked, to be sent on to the command once the caller unblocks them (it started: a signal
    before waits in the mask); the process's own handling of them after."""

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


def _request_fields(argv: list[str]) -> dict[str, Any]:
    umask = os.umask(0)
    os.umask(umask)
    streams = [[stream.encoding, stream.errors] for stream in (sys.stdin, sys.stdout, sys.stderr)]
    fields = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask, "streams": streams}
    return fields | {"process": process_settings()}


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
