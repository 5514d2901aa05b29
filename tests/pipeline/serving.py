"""A ``mvemo serve`` (or a stand-in server) running for the length of a test, and what it logged."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MVEMO = Path(sys.executable).parent / "mvemo"


@dataclass
class Server:
    """A server process and, once it stopped, what it logged after it started listening."""

    process: subprocess.Popen[bytes]
    log: str = ""

    def commands(self, name: str) -> int:
        """How many commands ``name`` it ran to their end."""
        return sum(line.startswith(f"mvemo serve: {name} ") and ": exit " in line for line in self.log.splitlines())


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], *, timeout_s: float = 300) -> Iterator[Server]:
    """The server ``command`` running in ``env`` while the block runs, from the moment it says it listens; stopped
    (SIGTERM) after it, its log then read."""
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    assert process.stderr is not None
    said = b""
    deadline = time.monotonic() + timeout_s
    while b"listening at" not in said:
        waiting = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]
        part = os.read(process.stderr.fileno(), 65536) if waiting else b""
        if not part:  # timed out, or the server ended
            process.kill()
            process.wait()
            raise RuntimeError(f"{' '.join(command[:3])} ... did not start within {timeout_s} s: {said[-500:]!r}")
        said += part
    server = Server(process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            server.log = process.communicate(timeout=30)[1].decode(errors="replace")
        except subprocess.TimeoutExpired:
            process.kill()
            server.log = process.communicate()[1].decode(errors="replace")
