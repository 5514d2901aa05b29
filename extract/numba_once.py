"""Stage one's numba code, compiled in one process before the workers fork from it.

numba compiles a function at its first call and writes the result to its on-disk cache (``cache=True``, librosa's
functions and mvemo's own alike). Two processes that compile the same gufunc at once can leave its two cache entries
written by different processes, whose native names disagree; every process that loads them afterwards segfaults
(numba issue #10128), on every clip, until the cache is removed. A fresh install's worker pool did exactly that.

So the pool's fork server calls ``compile_numba_once`` before it forks a worker (``pipeline.preload``): where numba's
cache is cold it computes every audio set that runs numba code on a short synthetic clip, so that the workers inherit
the compiled code and neither compile nor write the cache. Every feature pass calls it too (a no-op once done), under a
lock that lies in numba's cache beside the warm-up's marker, so that no two processes that compile into that cache do
so at once: the workers of a Dask cluster, two runs, the test workers, and the machines of one CPU on a shared install
(an NFS home, a cluster's venv), which miss the same marker together.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np
from numba.core.registry import cpu_target

from mvemo.extract.audio import audio_configs, compute_audio_features
from mvemo.extract.decode.audio import AudioWindow, Decoded
from mvemo.extract.handcrafted import beats, lpc, spectra, timbre
from mvemo.manifests.synthetic import AudioCues, synthesize_audio

# The sets whose computation calls numba code (mvemo's LPC, spectra, beats and timbre, librosa's beat, pitch and onset
# functions).
NUMBA_SETS = ("mel", "logmel", "lld", "descriptors", "expressive")
# The modules of mvemo's own cached numba functions (``@numba.njit(cache=True)``), which those sets call.
NUMBA_SOURCES = (Path(beats.__file__), Path(lpc.__file__), Path(spectra.__file__), Path(timbre.__file__))
WARMUP_SR_HZ = 44100
WARMUP_S = 4.0

_compiled = False


def compile_numba_once() -> None:
    """Compile every numba function stage one's audio sets call into numba's cache, once per process, unless a run
    before has (``warm_marker``): a warm cache is only read, which any number of processes may do at once, so a worker
    then loads what it calls at its first clip, alongside the others, and a pool starts without the 3 s of loading."""
    global _compiled
    if _compiled:
        return
    _compiled = True  # once, whatever happens: a warm-up that fails leaves each set to compile at its first clip
    marker = warm_marker()
    if marker is not None and marker.exists():
        return
    window = AudioWindow(duration_s=WARMUP_S)
    configs = {name: audio_configs()[name](audio_window=window) for name in NUMBA_SETS}
    with contextlib.suppress(Exception), _compiling_alone():
        if marker is not None and marker.exists():  # compiled by the process that held the lock before
            return
        compute_audio_features(_warmup_clip(), NUMBA_SETS, configs)
        if marker is not None:
            marker.touch()


def warm_marker() -> Path | None:
    """The file that says numba's cache holds stage one's code as this process would compile it: in the folder that
    holds librosa's cached functions (``$NUMBA_CACHE_DIR``, else librosa's own ``__pycache__``), so that clearing that
    cache, or installing librosa again, clears it too; named by what numba keys its cache by (``cache_key``), so that
    a node of another CPU on a shared install, or an upgraded mvemo, finds none and compiles under the lock. None where
    numba caches elsewhere (no ``__pycache__`` to write)."""
    root = _marker_folder()
    if root is None:
        return None
    return root / f"mvemo-compiled-{hashlib.sha256(repr(cache_key()).encode()).hexdigest()[:16]}"


def _marker_folder() -> Path | None:
    """The folder of librosa's cached functions, where the marker and the lock lie: ``$NUMBA_CACHE_DIR``, else
    librosa's own ``__pycache__``; None where it is not a folder."""
    spec = importlib.util.find_spec("librosa")
    if spec is None or spec.origin is None:
        return None
    root = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(spec.origin).parent / "core" / "__pycache__")
    return root if root.is_dir() else None


def cache_key() -> tuple[object, ...]:
    """What numba keys a cached function by, for every function the warm-up compiles: the versions of numba, librosa
    and Python, the CPU (``cpu_key``), and the stamp (modification time and size) of each source of mvemo's own."""
    versions = (numba.__version__, importlib.metadata.version("librosa"), sys.version_info[:2])
    stamps = tuple((path.name, path.stat().st_mtime, path.stat().st_size) for path in NUMBA_SOURCES)
    return versions, cpu_key(), stamps


def cpu_key() -> tuple[str, str, str]:
    """numba's key of this machine's code: the target triple, the CPU's name and its features."""
    return cpu_target.target_context.codegen().magic_tuple()


def lock_path() -> Path:
    """The lock every process takes before compiling: beside the marker (``warm_marker``), in the cache that every
    machine sharing it compiles into; where there is no such folder, or this user cannot write it (numba then caches
    in a folder of the user's), that of every process of this user on this machine."""
    root = _marker_folder()
    if root is None or not os.access(root, os.W_OK):
        return Path(tempfile.gettempdir()) / f"mvemo-numba-{os.getuid()}.lock"
    return root / "mvemo-numba.lock"


def _warmup_clip() -> Decoded:
    """A few bars of chords on a beat: every branch that real music takes (beats found, voiced pitch)."""
    cues = AudioCues(tempo_bpm=120.0, minor=False, loudness=0.5, brightness=0.5, regularity=1.0, dissonance=0.2)
    y = synthesize_audio(cues, WARMUP_S, WARMUP_SR_HZ, np.random.default_rng(0))
    return Decoded(y=y, sr=WARMUP_SR_HZ, valid_s=WARMUP_S)


@contextlib.contextmanager
def _compiling_alone() -> Iterator[None]:
    """Hold the lock that every process compiling into numba's cache takes first (``lock_path``; where locks exist)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: each process compiles as numba does
        yield
        return
    with open(lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
