"""``make gpu-check``: its parts' bookkeeping, and its dry run on the CPU (the whole script on a tiny set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from mvemo.pipeline.bench import gpu
from mvemo.pipeline.bench.gpu import gpu_check
from mvemo.pipeline.bench.gpu_device import gpu_samples, nvidia_smi
from mvemo.pipeline.bench.gpu_parts import FINETUNED, CheckConfig, junit_outcomes
from tests.conftest import SHARED

# Over half a second a test (end-to-end runs, trained nets): left out of `make test-quick`.
pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parents[2]


def test_each_tests_outcome_seconds_and_recorded_figures_are_read_from_pytests_report(tmp_path: Path) -> None:
    (tmp_path / "test_three.py").write_text(
        "import pytest\n"
        "def test_fine(record_property):\n    record_property('error', 0.25)\n"
        "def test_broken():\n    assert 1 == 2, 'one is not two'\n"
        "def test_elsewhere():\n    pytest.skip('needs a GPU')\n"
    )
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1"]
    subprocess.run([*command, f"--junitxml={report}", "test_three.py"], cwd=tmp_path, capture_output=True, check=False)
    outcomes = junit_outcomes(report)
    assert outcomes["counts"] == {"passed": 1, "failure": 1, "error": 0, "skipped": 1}
    assert outcomes["tests"]["test_fine"]["error"] == 0.25
    assert "one is not two" in outcomes["tests"]["test_broken"]["message"]
    assert outcomes["tests"]["test_elsewhere"]["message"].endswith("needs a GPU")


def config_in(folder: Path, budget_s: float = 540.0) -> CheckConfig:
    return CheckConfig(device=torch.device("cpu"), shared=folder, folder=folder, generated=folder, budget_s=budget_s)


# Parts run in processes of their own: the stand-ins are module functions, which a spawned process can import.
def broken_part(config: CheckConfig) -> dict[str, Any]:
    raise RuntimeError("CUDA error: an illegal memory access")


def hung_part(config: CheckConfig) -> dict[str, Any]:
    time.sleep(600)
    return {}


def dying_part(config: CheckConfig) -> dict[str, Any]:
    os._exit(9)


def quick_part(config: CheckConfig) -> dict[str, Any]:
    return {"ran": True}


@pytest.mark.slow(reason="four parts in processes of their own, each importing torch, one hung until stopped")
def test_a_failing_hung_or_dead_part_is_recorded_and_the_next_one_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part that raises, one that hangs past its share of the budget (stopped), one whose process dies: each is
    that part's figure; the document so far lands in the JSON file after every part."""
    monkeypatch.setitem(gpu.PART_RUNS, "tests", broken_part)
    monkeypatch.setitem(gpu.PART_RUNS, "throughput", hung_part)
    monkeypatch.setitem(gpu.PART_RUNS, "finetune", dying_part)
    monkeypatch.setitem(gpu.PART_RUNS, "leak", quick_part)
    monkeypatch.setattr(gpu, "RESERVE_S", 0.0)
    monkeypatch.setattr(gpu, "MIN_PART_S", 12.0)  # a spawned part imports torch: seconds on a loaded machine
    monkeypatch.setattr(gpu, "LEAK_MIN_LEFT_S", -float("inf"))  # the budget is spent: the leak still runs here
    written = tmp_path / "out" / "gpu-check.json"
    parts = ("tests", "throughput", "finetune", "leak")
    document = gpu_check(config_in(tmp_path, budget_s=5.0), parts, json_out=written)
    assert document["tests"]["error"] == "RuntimeError: CUDA error: an illegal memory access"
    assert document["throughput"]["error"].startswith("stopped after 12 s") and document["throughput"]["seconds"] < 27
    assert document["finetune"]["error"] == "its process died (exit code 9)"
    assert document["leak"]["ran"] is True and document["device"]["device"] == "cpu"
    assert json.loads(written.read_text()) == document


def test_the_leak_is_left_out_when_too_little_of_the_budget_remains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(gpu.PART_RUNS, "leak", lambda config: pytest.fail("the leak ran"))
    document = gpu_check(config_in(tmp_path, budget_s=gpu.LEAK_MIN_LEFT_S - 1), ("leak",))
    assert document["leak"]["not_run"].endswith(f"(needs {gpu.LEAK_MIN_LEFT_S:.0f})")


def test_without_nvidia_smi_nothing_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert nvidia_smi("utilization.gpu") == []
    figures: dict[str, Any] = {}
    with gpu_samples(torch.device("cpu"), figures):
        pass
    assert figures == {}


@pytest.mark.slow(reason="the GPU check end to end on the CPU: its tests, nets, fine-tuning and the leak")
def test_the_dry_run_checks_every_part_on_the_cpu() -> None:
    """``make gpu-check DEVICE=cpu``: the script end to end on a tiny set, so a GPU's short loan goes to measuring."""
    if not (SHARED / "weights" / "musicnn_msd_musicnn.npz").is_file():
        pytest.skip(f"{SHARED / 'weights'} is absent: the check's nets run with their published weights")
    done = subprocess.run(
        ["make", "-s", "gpu-check", "DEVICE=cpu", f"SHARED={SHARED}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(done.stdout)
    assert document["tiny"] is True and document["device"]["device"] == "cpu"
    assert not [part for part in gpu.PARTS if "error" in document[part] or "not_run" in document[part]], document
    tests = document["tests"]
    assert tests["exit_code"] == 0 and tests["counts"]["failure"] == tests["counts"]["error"] == 0
    assert tests["counts"]["passed"] >= 3, "the float32 parity tests run on the CPU too"
    throughput = document["throughput"]
    decode = throughput["decode"]
    assert decode["clips_per_s"] > 0 and not any(decode["failed"].values())
    assert decode["startup_s"] > 0 and decode["writer_ms_per_clip"] > 0, (
        "the start-up apart, the writer's cost measured"
    )
    assert sum(v for k, v in decode["shares"].items() if k.startswith("workers: ")) == pytest.approx(1.0, abs=0.01)
    for key in ("i3d_float32", "i3d_bf16", "musicnn_float32", "musicnn_bf16"):
        assert throughput[key]["clips_per_s"] > 0 and throughput[key]["weights"].endswith(".npz")
    assert throughput["decode_one_worker"]["workers"] == 1 and throughput["decode_efficiency"] > 0
    assert throughput["pool_startup_s"] > 0 and "decode_nvdec" not in throughput, "no NVDEC on the CPU"
    assert document["decoders"]["nvdec"].startswith("does not work here: ")
    whole = document["extract"]
    assert whole["random_weights"] == [] and "640x360_cpu" in whole
    for run in ("640x360_cpu",):
        assert (
            whole[run]["clips"] == throughput["clips"] == 4
            and whole[run]["clips_per_s"] > 0
            and not any(whole[run]["failed"].values())
        )
        assert set(whole[run]["stages_s"]) == {"features", "embeddings"} and 0 <= whole[run]["nets_share"] < 1
    finetune = document["finetune"]
    assert finetune["per_fold_embeddings_written"] is True and not finetune["failed"]
    assert sorted((u["net"], u["fold"] is None) for u in finetune["units"]) == sorted(
        (net, fold == "all") for net in FINETUNED for fold in (0, 1, "all")
    )
    leak = document["leak"]
    for net in FINETUNED:
        paper, leakfree = leak["accuracy_pct"]["paper"][net], leak["accuracy_pct"]["leakfree"][net]
        assert leak["paper_minus_leakfree_points"][net] == pytest.approx(paper - leakfree, abs=0.11)
