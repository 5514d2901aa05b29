"""A server whose command prints what it was given (``tests/pipeline/test_server.py``): its arguments, folder, the
environment's ``$ECHO``, umask, process id and the sizes of its thread pools; ``exit N`` exits with N, ``sleep`` waits
for a Ctrl-C (exit 130), ``spawn`` starts a process that waits for one too and prints its id first, ``die`` kills
itself with SIGKILL. Its main runs it with the console script's signal handlers, as ``mvemo serve``; the server
started with thread pools of ``STARTED`` sizes."""

import os
import signal
import subprocess
import sys
import time

from mvemo.pipeline.cli.interrupt import stop_on_signals
from mvemo.pipeline.serving.server import Serving, accept_signals, serve
from mvemo.pipeline.serving.wire import socket_path

STARTED = {"torch": 3, "blas": 5}
WAITS_FOR_CTRL_C = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    pass"


def echo(argv: list[str], threads: dict[str, int]) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    accept_signals()
    umask = os.umask(0)
    try:  # a client may send its Ctrl-C as soon as it reads the process id, before this print returns
        if argv[1:2] == ["spawn"]:
            child = subprocess.Popen([sys.executable, "-c", WAITS_FOR_CTRL_C])
            print(f"child={child.pid}", flush=True)
        print(
            f"argv={argv} cwd={os.getcwd()} echo={os.environ.get('ECHO')} umask={umask:o} threads={threads}"
            f" pid={os.getpid()}",
            flush=True,
        )
        print("on stderr", file=sys.stderr)
        if argv[1:2] in (["sleep"], ["spawn"]):
            time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    if argv[1:2] == ["die"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return int(argv[2]) if argv[1:2] == ["exit"] else 0


if __name__ == "__main__":
    stop_on_signals()  # as the console script: SIGTERM unwinds, and the server removes its socket
    idle_s = float(sys.argv[1]) if len(sys.argv) > 1 else None
    serve(socket_path(), Serving(echo, STARTED), idle_s=idle_s, ready=lambda: print("listening at", file=sys.stderr))
