"""Seconds per named step of a run, summed where the work is done: a worker's decoding and computing of one clip,
the single writer's checksums and writes. A step outside ``recording`` costs one lookup and records nothing.

``recording()`` holds the record of the code it wraps (a ``ContextVar``: each thread and task its own), and
``step(name)`` adds a block's wall seconds to it, so the stages time themselves without passing a timer down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_record: ContextVar[dict[str, float] | None] = ContextVar("mvemo_steps", default=None)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """A fresh record of step -> seconds for the block (nested: the inner block's steps are its own)."""
    record: dict[str, float] = {}
    token = _record.set(record)
    try:
        yield record
    finally:
        _record.reset(token)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Add the block's wall seconds to ``name`` in the record being kept, if any."""
    record = _record.get()
    if record is None:
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        record[name] = record.get(name, 0.0) + time.perf_counter() - began


def add(total: dict[str, float], record: dict[str, float]) -> None:
    """Sum ``record`` into ``total``, step by step."""
    for name, seconds in record.items():
        total[name] = total.get(name, 0.0) + seconds
