"""Executors the command line builds and hands down to the stages (which never import ``pipeline``).

Each fits ``mvemo.manifests.executor.Executor``: ``map(fn, *iterables, resources=None)``
yields in input order either a result or the exception that took the job down (a
worker that died, a task the cluster gave up on), so a stage records that clip as
failed and goes on. ``resources`` (e.g. ``{"GPU": 1}``) are Dask worker resources a
job asks for where the cluster's workers advertise them; elsewhere they mean nothing.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mvemo.manifests.errors import ConfigError, MvemoError
from mvemo.manifests.executor import Resources

EXECUTORS = ("serial", "processes", "dask")
PR_SET_PDEATHSIG = 1
WORKER_PRELOAD = ("mvemo.pipeline.preload",)  # stage one and torch, imported once by the fork server
# A task may run twice (once more after its worker died); a clip that kills two workers is failed.
DASK_ALLOWED_FAILURES = 1
JOBS_PER_WORKER = 4  # a local pool's jobs in flight per worker: enough to keep it busy while results wait in order


M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3
HEAP_TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest on 64-bit


def limit_threads() -> None:
    """One compute thread per worker process (two per process collapsed when the other core was busy)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)


def keep_freed_heap() -> None:
    """Keep freed memory in the process for the next clip: blocks up to 32 MiB come from the heap
    (``M_MMAP_THRESHOLD``), and 64 MiB of its free top stay mapped (``M_TOP_PAD``).

    Each clip's feature pass frees tens of MB of numpy temporaries; glibc gave them back
    to the OS and the next clip faulted them in again (4,100 page faults a clip in this
    process: the LLDs of a 30 s clip took 48 ms instead of 42). Both values are set,
    not left to glibc's adaptive mmap threshold: setting either freezes it where it
    stands, which in a fresh Dask worker was 128 KiB (22,000 faults a clip, 116 ms
    instead of 68). A no-op off glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TOP_PAD, HEAP_TOP_PAD_BYTES)


def prepare_worker() -> None:
    """What every process that computes features does first: one thread, the freed heap kept."""
    limit_threads()
    keep_freed_heap()


def _process_worker_init() -> None:
    """A pool worker dies with its parent (a killed ``extract`` leaves no orphans), leaves Ctrl-C to the run that
    stops it (the SIGINT a terminal sends the whole process group would print a traceback per worker), and
    computes on one thread."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: workers still exit when their pipe closes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_worker()


class Executor:
    """The serial executor: every job in this process, in order."""

    in_process = True
    own_devices = False
    local_workers = 0

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], resources: Resources | None = None
    ) -> Iterator[Any]:
        return map(fn, *iterables)

    def close(self, *, stop: bool = False) -> None:
        """Release the workers: after their jobs finish, or, with ``stop``, at once (running jobs stopped, queued ones
        cancelled)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(stop=exc_type is not None)  # an error or a signal (Ctrl-C, SIGTERM) waits for no job


class ProcessExecutor(Executor):
    """Local worker processes (``--executor processes --workers N``)."""

    in_process = False

    def __init__(self, workers: int) -> None:
        self.workers = self.local_workers = workers
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        # The fork server imports the stages' modules once and forks every worker from itself: 16 workers on 2 cores
        # imported them 16 times (23 s to their first jobs' end, against 4 s). Effective when the server starts.
        context.set_forkserver_preload(list(WORKER_PRELOAD))
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_process_worker_init)

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], resources: Resources | None = None
    ) -> Iterator[Any]:
        """Results in order, with ``JOBS_PER_WORKER`` jobs a worker in flight: a consumer that falls behind (the
        writer, the nets alongside) holds the workers back instead of their results piling up in memory."""
        jobs = iter(zip(*iterables))
        futures = collections.deque(
            self._submit(fn, args) for args in itertools.islice(jobs, JOBS_PER_WORKER * self.workers)
        )
        while futures:
            future = futures.popleft()
            try:
                result = future.result()
            except Exception as err:  # a worker that died takes its job (and the pool) down
                result = err
            futures.extend(self._submit(fn, args) for args in itertools.islice(jobs, 1))
            yield result

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future:
        """Submit a job; a pool that a dying worker broke (in an earlier stage) is replaced first, and so is one whose
        fork server died before it forked a worker (killed for memory, or crashed importing stage one: the pool then
        reads an end of file). A fork server that dies again stops the run, saying what to do."""
        try:
            return self.pool.submit(fn, *args)
        except BrokenProcessPool:
            self._replace_pool()
        except (EOFError, ConnectionError):
            self._replace_pool(fork_server_died=True)
        try:
            return self.pool.submit(fn, *args)
        except (EOFError, ConnectionError) as err:
            self._replace_pool(fork_server_died=True)
            raise MvemoError(
                "the worker pool's fork server died twice before it started a worker (its own messages, if any, are "
                "above): the machine may be short of memory (use fewer --workers), or numba's cache may be corrupt "
                "(remove librosa's __pycache__ or $NUMBA_CACHE_DIR); --executor serial runs without a pool. "
                "What is done so far is kept: run the command again to go on"
            ) from err

    def _replace_pool(self, *, fork_server_died: bool = False) -> None:
        """A new pool in place of a broken one, its worker processes stopped. A fork server that died is reaped first:
        its socket closes before the kernel lets it be waited for, so a new pool asking in between found it "still
        running" and was refused a connection (a fork server that died once read as one that died twice)."""
        for process in list((self.pool._processes or {}).values()):
            process.terminate()
        self.pool.shutdown(cancel_futures=True)
        if fork_server_died:
            _stop_fork_server()
        self.pool = self._new_pool()

    def close(self, *, stop: bool = False) -> None:
        if stop:  # the pool has no public way to stop running jobs: its worker processes are terminated
            for process in list((self.pool._processes or {}).values()):
                process.terminate()
            _stop_fork_server()
        self.pool.shutdown(cancel_futures=True)


def _stop_fork_server() -> None:
    """Kill the pool's fork server, and with it every worker it forked (``PR_SET_PDEATHSIG``) or has yet to fork: a
    worker asked for while the server was still preloading starts once it is done, after the stopped run released
    what the worker reads, and printed a traceback. The next pool starts a new server."""
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            server._stop()  # reaped and forgotten: the next pool starts a server of its own, never this dying one


class DaskExecutor(Executor):
    """A Dask cluster: a local one (``--workers N``) or an existing scheduler (``--scheduler ADDR``)."""

    in_process = False
    own_devices = True  # training units fan out; GPU workers each take one (``--resources GPU=1``)

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--executor dask needs Dask: pip install 'mvemo[dask]'") from None
        self.cluster: Any = None
        self.client: Any = None
        self.local = scheduler is None
        self.local_workers = (workers or 2) if self.local else 0
        self.pending: set[Any] = set()  # futures of map's jobs not yet yielded
        try:
            if self.local:
                settings = {
                    "distributed.scheduler.allowed-failures": DASK_ALLOWED_FAILURES,
                    # One task in flight per worker thread: a worker that dies then takes down only the
                    # clip that killed it, not a queued neighbour that would be blamed with it.
                    "distributed.scheduler.worker-saturation": 1.0,
                    # Dask's default MALLOC_TRIM_THRESHOLD_ pins glibc's mmap threshold, so every large
                    # numpy temporary is a fresh mmap with page faults: tasks ran 1.6x slower than in a pool.
                    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                }
                with dask.config.set(settings):
                    self.cluster = LocalCluster(
                        n_workers=workers or 2,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=":0",  # any free port: 8787 warned beside a cluster
                    )
                self.client = Client(self.cluster)
            else:
                self.client = Client(scheduler)
            self.client.register_plugin(_prepare_worker_plugin())
        except BaseException:  # a signal or a failure while starting: what started stops
            self.close(stop=True)
            raise

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], resources: Resources | None = None
    ) -> Iterator[Any]:
        wanted = resources if resources and self.offers(resources) else None
        futures = self.client.map(
            fn, *(list(items) for items in iterables), pure=False, resources=dict(wanted) if wanted else None
        )
        self.pending.update(futures)
        for future in futures:
            try:
                yield future.result()
            except Exception as err:  # KilledWorker: the task took DASK_ALLOWED_FAILURES + 1 workers down
                yield err
            finally:
                self.pending.discard(future)
                future.release()

    def offers(self, resources: Resources) -> bool:
        """Whether some worker advertises every one of ``resources`` (a job asking for them would wait forever else).
        Asked of the scheduler itself: ``scheduler_info`` lists only the first workers of a large cluster."""
        offered = self.client.run_on_scheduler(_scheduler_resources)
        workers = set.union(set(), *(set(by_worker) for by_worker in offered.values()))
        return any(all(offered.get(k, {}).get(w, 0) >= v for k, v in resources.items()) for w in workers)

    def close(self, *, stop: bool = False) -> None:
        if stop and self.local:  # our own workers stop mid-task: missed heartbeats and the nanny's kill are no news
            _quiet_dask_logs()
            with contextlib.suppress(Exception):
                self.client.run(_quiet_dask_logs)
        if stop and self.pending:  # a shared scheduler would otherwise run the abandoned tasks to their end
            self.client.cancel(list(self.pending), force=True)
        self.pending.clear()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _quiet_dask_logs() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _scheduler_resources(dask_scheduler: Any) -> dict[str, dict[str, float]]:
    """Run on the scheduler: each resource's quantity per worker address."""
    return {name: dict(by_worker) for name, by_worker in dask_scheduler.resources.items()}


def _prepare_worker_plugin() -> Any:
    """The plugin applied to every Dask worker, restarted ones included: it computes as a pool worker does, and leaves
    Ctrl-C (sent by a terminal to the whole process group, a local cluster's workers included) to the run that stops
    it. Defined when a cluster starts: importing Dask at module level cost every command 0.2 s."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class PrepareWorker(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            prepare_worker()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return PrepareWorker()


def build_executor(kind: str = "serial", *, workers: int | None = None, scheduler: str | None = None) -> Executor:
    """The executor a command asked for."""
    if scheduler is not None and kind != "dask":
        raise ConfigError(f"--scheduler needs --executor dask (got --executor {kind})")
    if kind == "serial":
        return Executor()
    if kind == "processes":
        return ProcessExecutor(workers or 2)
    if kind == "dask":
        return DaskExecutor(workers=workers, scheduler=scheduler)
    raise ConfigError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
