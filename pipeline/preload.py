"""What the local worker pool's fork server imports once, so that each worker forks with it (``executors``): torch
and stage one's modules. A module that fails to import here is imported again, and fails with its own error, in the
job that needs it; the fork server itself never dies of it."""

import contextlib
import importlib

for module in ("torch", "mvemo.extract.features"):
    with contextlib.suppress(Exception):
        importlib.import_module(module)
