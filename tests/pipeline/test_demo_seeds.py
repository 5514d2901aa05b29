"""The default demo's point: its integrated model beats every unimodal one, over seeds; and the README's first command,
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

import numpy as np
import pytest

from mvemo.manifests.synthetic import SyntheticConfig
from mvemo.pipeline.demo import DEMO_NETS, run_demo
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


def demo_margin(out: Path, seed: int) -> float:
    """The margin of the default demo of ``seed``, classes alone (its tags, values, command line and files are the
    tiny demo's tests)."""
    result = run_demo(out, SyntheticConfig(seed=seed), targets=())
    assert len(result.manifest) == 72 and not result.features.failures
    return margin(result.report)


@pytest.mark.slow(reason="two demos at the default size (72 clips of 10 s each through five nets), one of them cold")
def test_default_demo_fusion_beats_every_unimodal_model_over_seeds(tmp_path: Path) -> None:
    """Each modality alone confuses class pairs that the other tells apart, so the integrated model must win, by a
    margin on the mean over seeds (one run's 72 clips are too few to decide alone). Seed 0 is `make demo`'s command,
    run as on a fresh install (its process pool compiling numba's code from an empty cache, which crashed every
    worker once); seed 1 runs beside it."""
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
    readme = subprocess.Popen(
        [MVEMO, "demo", "--out", tmp_path / "demo0"], env=cold, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    margins = [demo_margin(tmp_path / "demo1", 1)]
    output, _ = readme.communicate()
    assert readme.returncode == 0, output[-3000:]
    assert (tmp_path / "demo0" / "model" / "model.json").is_file() and "final model:" in output
    assert "Error in sitecustomize" not in output, "the probe did not load"
    writes = [line.split("\t") for line in log.read_text().splitlines()]
    assert writes, "the probe saw no write to numba's cache: it was not cold"
    assert {process for _, process, _ in writes} == {"MainProcess"}, f"a pool's worker wrote numba's cache: {writes}"
    assert list((tmp_path / "numba").glob("mvemo-compiled-*")), "the warm cache is marked"
    margins.insert(0, margin(json.loads((tmp_path / "demo0" / "report.json").read_text())))
    assert np.mean(margins) > 0.05, margins
