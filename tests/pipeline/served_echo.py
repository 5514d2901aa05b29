"""A server whose command prints what it was given (``tests/pipeline/test_server.py``): its arguments, folder, the
environment's ``$ECHO``, umask and process id; ``exit N`` exits with N, ``sleep`` waits for a Ctrl-C (exit 130),
``die`` kills itself with SIGKILL. Its main runs it with the console script's signal handlers, as ``mvemo serve``."""

import os
import signal
import sys
import time

from mvemo.pipeline.cli.interrupt import stop_on_signals
from mvemo.pipeline.server import accept_signals, serve, socket_path


def echo(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    accept_signals()
    umask = os.umask(0)
    try:  # a client may send its Ctrl-C as soon as it reads the process id, before this print returns
        print(
            f"argv={argv} cwd={os.getcwd()} echo={os.environ.get('ECHO')} umask={umask:o} pid={os.getpid()}", flush=True
        )
        print("on stderr", file=sys.stderr)
        if argv[1:2] == ["sleep"]:
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
    serve(socket_path(), echo, idle_s=idle_s, ready=lambda: print("listening at", file=sys.stderr, flush=True))
