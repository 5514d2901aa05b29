"""SIGTERM (a scheduler's timeout or preemption) and SIGINT (Ctrl-C) stop a command, whatever it is doing when they
arrive. Standard library only: the console scripts install the handlers before they import anything else."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
SEND_AGAIN_AFTER_S = 0.01  # a signal that landed where it cannot stop the command is sent again this much later


class Interrupted(BaseException):
    """SIGTERM or SIGINT in a command: it unwinds like Ctrl-C, so every executor stops its workers and every writer
    closes on its way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT end the command by raising ``Interrupted``; a second signal while it unwinds ends the
    process at once.

    A signal handler runs in whatever Python code is running, and two places cannot take the exception:
    - a finalizer (a ``__del__``, a weak reference's callback): Python ignores what it raises, and the command went on
      ("Exception ignored in ... WeakValueDictionary"). ``sys.unraisablehook`` sees it;
    - an import: torch's imports run Python code from C++, where an exception aborts the process (exit -6).
    From either, the signal is sent again by another thread a moment later (sent at once, its handler would run right
    there again), to land in the command's own code. A third, C code that called Python back (matplotlib's drawing),
    raises an error of its own in place of ``Interrupted``: ``stopping`` tells the command that a signal is behind it.
    """
    unwinding = _UNWINDING
    send_again, start_resending = _resender()

    def stop(signum: int, frame: Any) -> None:
        if unwinding:  # the command is already stopping: this one ends it now
            for name in SIGNALS:
                signal.signal(name, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if _importing(frame):
            send_again(signum)
            return
        unwinding.append(signum)
        raise Interrupted(signum)

    def ignored(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            unwinding.clear()  # it did not unwind anything
            send_again(unraisable.exc_value.signum)
        else:
            previous(unraisable)

    previous = sys.unraisablehook
    sys.unraisablehook = ignored
    for name in SIGNALS:
        signal.signal(name, stop)
    start_resending()  # after the handlers: a signal while the thread starts (a wait) unwinds as any other


_UNWINDING: list[int] = []  # the signal that is stopping the command, once its handler raised


def run_stopping(name: str, command: Callable[[], object]) -> None:
    """Run console script ``name``'s ``command`` with the handlers in: a signal at any moment of it ends the process
    with one line and exit 128 + its number."""
    try:
        stop_on_signals()
        command()
    except Interrupted as stopped:  # before or after a command ran (a command says what it was itself)
        _interrupted(name, stopped)
    except Exception:
        signalled = stopping()  # the signal, turned into another error where it landed
        if signalled is None:
            raise
        _interrupted(name, signalled)


def _interrupted(name: str, stopped: Interrupted) -> None:
    print(f"{name}: interrupted by {stopped}", file=sys.stderr)
    sys.exit(128 + stopped.signum)


def stopping() -> Interrupted | None:
    """The signal that is stopping the command, if one is: an error that reaches the command's end then is what the
    signal became in code that could not pass ``Interrupted`` on."""
    return Interrupted(_UNWINDING[0]) if _UNWINDING else None


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _resender() -> tuple[Callable[[int], None], Callable[[], None]]:
    """A function that has a signal sent again ``SEND_AGAIN_AFTER_S`` later, by a thread that waits on a pipe (a
    handler may not start a thread itself: ``threading`` takes locks the code it interrupted may hold), and the function
    that starts that thread (a signal asked for before it is sent once it runs)."""
    read_end, write_end = os.pipe()

    def resend() -> None:
        while signum := os.read(read_end, 1):
            time.sleep(SEND_AGAIN_AFTER_S)
            os.kill(os.getpid(), signum[0])

    def send_again(signum: int) -> None:
        os.write(write_end, bytes([signum]))

    return send_again, threading.Thread(target=resend, name="mvemo-signals", daemon=True).start
