"""Stage one as on a fresh install: numba's on-disk cache empty, workers compute every audio set that runs numba code.

Workers that compiled numba's code each on their own wrote its cache from several processes at once; a gufunc whose two
entries two processes wrote segfaults every later process that loads it (numba issue #10128): a fresh clone's
`make demo` failed each of its clips. Whatever the executor, one process must write numba's cache.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mvemo.cache.read import Cache
from mvemo.extract.numba_once import NUMBA_SETS
from mvemo.manifests import Clip, Manifest, write_manifest
from mvemo.manifests.synthetic import draw_cues, synthesize_audio, write_media

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

MVEMO = Path(sys.executable).parent / "mvemo"

# Loaded by every Python process the run starts (a `sitecustomize` on PYTHONPATH): logs which process writes each
# entry of numba's cache.
CACHE_WRITES_PROBE = textwrap.dedent(
    """
    import multiprocessing, os
    from numba.core import caching

    _save = caching.Cache.save_overload

    def save_overload(self, sig, data):
        with open(os.environ["CACHE_WRITES_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\t{multiprocessing.current_process().name}\\t{self._name}\\n")
        return _save(self, sig, data)

    caching.Cache.save_overload = save_overload
    """
)


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 6-s songs of chords on a beat, two classes."""
    folder = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(0)
    clips = []
    for i, label in enumerate(("Exciting", "Sad") * 2):
        y = synthesize_audio(draw_cues(label, rng)[0], 6.0, 44100, rng)
        clips.append(Clip(f"s{i}", label, audio=write_media(folder / f"s{i}.m4a", y=y, sr=44100), fold=i % 2))
    return write_manifest(Manifest(("Exciting", "Sad"), tuple(clips)), folder / "m.csv")


def extract_cold(songs: Path, tmp_path: Path, executor: str, run: str = "cache") -> list[tuple[str, str, str]]:
    """`mvemo extract` of every numba set into a new cache ``run``, numba's cache in ``tmp_path / "numba"`` (empty the
    first time): every write to numba's cache so far, as (pid, process, function)."""
    probe = tmp_path / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "sitecustomize.py").write_text(CACHE_WRITES_PROBE)
    log = tmp_path / "writes.tsv"
    env = {
        "PATH": str(MVEMO.parent),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(probe),
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        "CACHE_WRITES_LOG": str(log),
        "PYTHONFAULTHANDLER": "1",
    }
    cache = tmp_path / run
    command = [str(MVEMO), "extract", str(songs), "--cache", str(cache), "--features", ",".join(NUMBA_SETS)]
    run = subprocess.run([*command, "--executor", executor, "--workers", "2"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    with Cache(cache) as done:
        assert all(done.done(name).all() for name in NUMBA_SETS)
    return [tuple(line.split("\t")) for line in log.read_text().splitlines()] if log.exists() else []  # type: ignore[misc]


def test_a_pool_compiles_numba_code_once_in_its_fork_server_and_no_worker_writes_the_cache(songs: Path, tmp_path: Path) -> None:
    writes = extract_cold(songs, tmp_path, "processes")
    assert writes, "the probe saw no cache write: the cache was not cold"
    assert {process for _, process, _ in writes} == {"MainProcess"}, writes
    assert len({pid for pid, _, _ in writes}) == 1, writes
    assert [p.name for p in (tmp_path / "numba").glob("mvemo-compiled-*")], "the warm cache is marked"
    assert extract_cold(songs, tmp_path, "processes", run="again") == writes, "a warm cache is read, never written"
