"""The default demo's point, its integrated model beating every unimodal one, in the README's first command,
`make demo`, as a new user runs it: numba's cache empty, which no earlier test can warm.

Workers that compiled numba's code each on their own wrote its cache from several processes at once; a gufunc whose two
entries two processes wrote segfaults every later process that loads it (numba issue #10128): a fresh clone's
`make demo` failed each of its clips. Its process pool must compile numba's code before its workers fork (in the process
they fork from), and no worker may write the cache: a probe loaded by every process the demo starts logs each write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mvemo.pipeline.demo import DEMO_NETS
from tests.pipeline.test_demo import INTEGRATED

MVEMO = Path(sys.executable).parent / "mvemo"

# Loaded by every Python process the demo starts (a `sitecustomize` on PYTHONPATH): logs which process writes each entry
# of numba's cache.
CACHE_WRITES_PROBE = textwrap.dedent(
    r"""
    import multiprocessing, os
    from numba.core import caching

    _save = caching.Cache.save_overload

    def save_overload(self, sig, data):
        with open(os.environ["CACHE_WRITES_LOG"], "a") as log:
            log.write(f"{os.getpid()}\t{multiprocessing.current_process().name}\t{self._name}\n")
        return _save(self, sig, data)

    caching.Cache.save_overload = save_overload
    """
)


def margin(report: dict[str, Any]) -> float:
    """The integrated model's accuracy above the best unimodal model's, in one demo's report."""
    accuracy = {name: m["accuracy"]["mean"] for name, m in report["models"].items()}
    return accuracy[INTEGRATED] - max(accuracy[name] for name in (*DEMO_NETS, "lldstats", "descriptors"))


@pytest.mark.slow(reason="the default demo (72 clips of 10 s each through five nets) from an empty numba cache")
def test_the_readmes_demo_from_an_empty_numba_cache_fuses_better_than_every_unimodal_model(tmp_path: Path) -> None:
    """Each modality alone confuses class pairs that the other tells apart, so the integrated model must win, by a
    margin. `make demo`'s command, run as on a fresh install: its process pool compiles numba's code from an empty
    cache (which crashed every worker once)."""
    (tmp_path / "numba").mkdir()
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "sitecustomize.py").write_text(CACHE_WRITES_PROBE)
    log = tmp_path / "writes.tsv"
    cold = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        "PYTHONPATH": str(tmp_path / "probe"),
        "CACHE_WRITES_LOG": str(log),
        "PYTHONFAULTHANDLER": "1",
    }
    readme = subprocess.run(
        [MVEMO, "demo", "--out", tmp_path / "demo"],
        env=cold,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = readme.stdout
    assert readme.returncode == 0, output[-3000:]
    assert (tmp_path / "demo" / "model" / "model.json").is_file() and "final model:" in output
    assert "Error in sitecustomize" not in output, "the probe did not load"
    writes = [line.split("\t") for line in log.read_text().splitlines()]
    assert writes, "the probe saw no write to numba's cache: it was not cold"
    assert {process for _, process, _ in writes} == {"MainProcess"}, f"a pool's worker wrote numba's cache: {writes}"
    assert list((tmp_path / "numba").glob("mvemo-compiled-*")), "the warm cache is marked"
    assert margin(json.loads((tmp_path / "demo" / "report.json").read_text())) > 0.05
