"""The default demo's point: its integrated model beats every unimodal one, over seeds."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mvemo.manifests.synthetic import SyntheticConfig
from mvemo.pipeline.demo import DEMO_NETS, run_demo
from tests.pipeline.test_demo import INTEGRATED


def margin(out: Path, seed: int) -> float:
    """The integrated model's accuracy above the best unimodal model's, in the default demo of ``seed``, classes
    alone (its tags, values, command line and files are the tiny demo's tests)."""
    result = run_demo(out, SyntheticConfig(seed=seed), targets=())
    assert len(result.manifest) == 72 and not result.features.failures
    accuracy = {name: m["accuracy"]["mean"] for name, m in result.report["models"].items()}
    return accuracy[INTEGRATED] - max(accuracy[name] for name in (*DEMO_NETS, "lldstats", "descriptors"))


@pytest.mark.slow(reason="three demos at the default size: 72 clips of 10 s each through five nets")
def test_default_demo_fusion_beats_every_unimodal_model_over_seeds(tmp_path: Path) -> None:
    """Each modality alone confuses class pairs that the other tells apart, so the integrated model must win, by a
    margin on the mean over seeds (one run's 72 clips are too few to decide alone). The seeds run side by side."""
    seeds = (0, 1, 2)
    with ProcessPoolExecutor(len(seeds), mp_context=multiprocessing.get_context("forkserver")) as pool:
        margins = list(pool.map(margin, [tmp_path / f"demo{seed}" for seed in seeds], seeds))
    assert np.mean(margins) > 0.05, margins
