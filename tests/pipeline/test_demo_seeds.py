"""The default demo's point: its integrated model beats every unimodal one, over seeds; and the README's first command,
`make demo`, as a new user runs it: numba's cache empty, which no earlier test can warm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvemo.manifests.synthetic import SyntheticConfig
from mvemo.pipeline.demo import DEMO_NETS, run_demo
from tests.pipeline.test_demo import INTEGRATED

MVEMO = Path(sys.executable).parent / "mvemo"


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
    cold = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    (tmp_path / "numba").mkdir()
    readme = subprocess.Popen(
        [MVEMO, "demo", "--out", tmp_path / "demo0"], env=cold, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    margins = [demo_margin(tmp_path / "demo1", 1)]
    output, _ = readme.communicate()
    assert readme.returncode == 0, output[-3000:]
    assert (tmp_path / "demo0" / "model" / "model.json").is_file() and "final model:" in output
    margins.insert(0, margin(json.loads((tmp_path / "demo0" / "report.json").read_text())))
    assert np.mean(margins) > 0.05, margins
