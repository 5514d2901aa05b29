"""The executor protocol: how a stage fans its jobs out without importing the command line that builds executors.

``mvemo.pipeline.executors`` implements it (serial, local processes, Dask); stage
one and stage two take any object that fits, so a notebook may pass its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypedDict

# ``progress(results, total)`` wraps a stream of results as they arrive (a progress bar) and yields them on.
Progress = Callable[[Iterable[Any], int], Iterable[Any]]
# ``progress_for(description, unit)`` gives the ``Progress`` of one phase of a stage (None: silent).
ProgressFactory = Callable[[str, str], Progress | None]


class Resources(TypedDict, total=False):
    """What one job asks of a cluster's workers, as Dask worker resources (``dask worker --resources GPU=1``)."""

    GPU: float


class Executor(Protocol):
    """Runs jobs and yields, in input order, each job's result or the exception that lost it.

    Attributes
    ----------
    in_process : bool
        Every job runs in this process, one after another (the serial executor).
    own_devices : bool
        Training jobs go to its workers (a Dask cluster, whose GPU workers each take
        one); False keeps them in this process, one after another, as local workers
        would share this machine's one device.
    local_workers : int
        Worker processes sharing this machine's cores (0: none, or not known): each
        decodes with its share of them.

    An executor without these attributes counts as neither: its jobs run elsewhere,
    and training stays in this process.
    """

    in_process: bool
    own_devices: bool
    local_workers: int

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], resources: Resources | None = None
    ) -> Iterator[Any]: ...


# A job whose worker died (Dask gave up on it, or the local pool broke): the job itself may be fine.
LOST_JOB_ERRORS = ("KilledWorker", "BrokenProcessPool")


def is_lost_job(error: BaseException) -> bool:
    return type(error).__name__ in LOST_JOB_ERRORS
