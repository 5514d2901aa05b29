"""What the local worker pool's fork server does once, so that each worker forks with it (``executors``): import torch
and stage one's modules, and compile stage one's numba code (``extract.numba_once``: workers that compiled it each on
their own could corrupt numba's cache). What fails here is done again, and fails with its own error, in the job that
needs it; the fork server itself never dies of it, nor of a Ctrl-C meanwhile (a terminal sends it to the whole
process group: the run it serves decides, and stops the workers)."""

import contextlib
import importlib
import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)

for module in ("torch", "mvemo.extract.features"):
    with contextlib.suppress(Exception):
        importlib.import_module(module)

with contextlib.suppress(Exception):
    from mvemo.extract.numba_once import compile_numba_once

    compile_numba_once()
