"""Where a server of this mvemo listens, and the messages on its socket.

The exchange, each message from the server a tag and a number (a refusal's number is the length of its reason, which
follows):
- the client sends its arguments, working folder, environment, umask, its streams' encodings and the settings of its
  process (``match.process_settings``), with its standard streams as file descriptors;
- the server refuses (``REFUSED`` and why: another command than ``predict``, a process that differs from its own), or
  forks; the fork says it started (``STARTED``, its process id), and the client answers ``GO``. A client that gave up
  waiting has closed, and the fork ends without running anything: a command never runs twice;
- the client sends on each signal it gets (Ctrl-C) as one byte, and the fork raises it in its process group; a client
  that closes (dies) ends the command with SIGTERM;
- the fork sends its exit status (``STATUS``), and the server, once it has reaped the fork, sends the status it saw
  (128 + the signal that killed it, as a shell says); the client reads the first. A refusal, or a status before any
  start, means the command never ran, and the client runs it itself.
The socket lies in a folder only its user may enter, and each side checks that the other is that user.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

SERVE = "MVEMO_SERVE"  # set to 1 in a shell whose `mvemo predict` a running `mvemo serve` should run
SERVED_COMMANDS = ("predict",)
MESSAGE = struct.Struct("!cq")  # a tag and a number
STARTED, STATUS, REFUSED = b"P", b"S", b"R"
SIZE = struct.Struct("!q")
GO = b"\0"
STREAMS = (0, 1, 2)
RELAYED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
START_WAIT_S = 15.0  # how long a client waits for its fork to start (else it runs the command itself), the fork for GO
# mvemo's code, under its package folder: the five stages' folders, and the package's own (a checkout's mvemo/)
CODE_FOLDERS = ("manifests", "cache", "extract", "fuse", "pipeline", "mvemo")
PACKAGE = Path(__file__).resolve().parents[2]  # mvemo's folder, or a checkout's where it is installed editable


def socket_path(env: Mapping[str, str] = os.environ) -> Path:
    """Where the server of this Python, this mvemo code and these installed packages listens, for a process of
    environment ``env``: ``$XDG_RUNTIME_DIR/mvemo`` (else ``~/.cache/mvemo/serve``), named after ``code_key``."""
    runtime = env.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "mvemo" if runtime else Path.home() / ".cache" / "mvemo" / "serve"
    return folder / f"serve-{code_key()[:16]}.sock"


def code_key(package: Path = PACKAGE) -> str:
    """sha256 of what a process of mvemo runs: the interpreter and its version, every file of mvemo's code (path, size
    and time of its last change) and the name and version of every installed distribution (mvemo's dependencies and
    theirs). A change to any of them, an upgrade of torch or an edit of a checkout, names another socket: a client
    never reaches a server that runs other code."""
    from importlib import metadata

    files = [
        (str(path.relative_to(package)), info.st_size, info.st_mtime_ns)
        for path in _code_files(package)
        for info in [path.stat()]
    ]
    installed = sorted({(dist.metadata["Name"] or "", dist.version) for dist in metadata.distributions()})
    described = [sys.executable, sys.version, str(package), files, installed]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def _code_files(package: Path) -> list[Path]:
    """Every file of mvemo's code under ``package``, in order: an installed package's ``__init__.py`` and the files
    of its folders (a checkout's ``mvemo/`` holds its ``__init__.py``)."""
    found = [path for folder in CODE_FOLDERS for path in (package / folder).rglob("*") if path.is_file()]
    found += [package / "__init__.py"] if (package / "__init__.py").is_file() else []
    return sorted(path for path in found if "__pycache__" not in path.parts)


def listening(path: Path) -> bool:
    """Whether a server accepts connections at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def send_refusal(connection: socket.socket, reason: str) -> None:
    text = reason.encode()
    connection.sendall(MESSAGE.pack(REFUSED, len(text)) + text)


def receive_message(connection: socket.socket) -> tuple[bytes, int | str] | None:
    """The next message, its tag and number (a refusal: its reason); ``None`` where the connection closed first."""
    data = receive(connection, MESSAGE.size)
    if data is None:
        return None
    tag, number = MESSAGE.unpack(data)
    if tag != REFUSED:
        return tag, int(number)
    reason = receive(connection, number)
    return None if reason is None else (tag, reason.decode(errors="replace"))


def receive(connection: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes, or ``None`` where the connection closed first."""
    data = b""
    while len(data) < size:
        if not (part := connection.recv(size - len(data))):
            return None
        data += part
    return data


def private(folder: Path) -> bool:
    """Whether ``folder`` is this user's, and no one else's to enter."""
    try:
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


def same_user(connection: socket.socket) -> bool:
    """Whether the peer runs as this user (where the system tells: Linux; elsewhere the folder's mode guards)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1] == os.getuid()
