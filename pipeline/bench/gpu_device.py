"""What ``make gpu-check`` reads of the device: its name and versions, and its utilisation and memory sampled from
``nvidia-smi`` while a part runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mvemo.cache.h5file import mvemo_version


def device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "mvemo": mvemo_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        facts |= {
            "device": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1),
        }
        driver = nvidia_smi("driver_version")
        if driver:
            facts["driver"] = driver[0][0]
    return facts


def nvidia_smi(*fields: str) -> list[list[str]]:
    """One row per GPU of ``nvidia-smi --query-gpu`` (empty when nvidia-smi is absent or fails)."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run([*query(fields)], capture_output=True, text=True, check=False)
    return rows_of(done.stdout)


def query(fields: tuple[str, ...]) -> list[str]:
    return ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def rows_of(output: str) -> list[list[str]]:
    return [[v.strip() for v in line.split(",")] for line in output.splitlines() if line.strip()]


@contextmanager
def gpu_samples(device: torch.device, into: dict[str, Any]) -> Iterator[None]:
    """``nvidia-smi``'s utilisation and memory, sampled every 100 ms while the block runs (one process streaming
    them); their summary goes into ``into["gpu"]``, with torch's own peak allocation. Nothing on a CPU."""
    if device.type != "cuda" or shutil.which("nvidia-smi") is None:
        yield
        return
    torch.cuda.reset_peak_memory_stats(device)
    sampler = subprocess.Popen(
        [*query(("utilization.gpu", "memory.used")), "-lms", "100"], stdout=subprocess.PIPE, text=True
    )
    try:
        yield
    finally:
        sampler.terminate()
        output, _ = sampler.communicate()
        use = np.array([[float(v) for v in row] for row in rows_of(output) if len(row) == 2] or np.zeros((0, 2)))
        into["gpu"] = {
            "samples": len(use),
            "utilization_mean_pct": round(float(use[:, 0].mean()), 1) if len(use) else None,
            "utilization_max_pct": round(float(use[:, 0].max()), 1) if len(use) else None,
            "memory_used_max_mib": round(float(use[:, 1].max())) if len(use) else None,
            "torch_peak_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20),
        }


# --- tests ------------------------------------------------------------------------------------------------------------
