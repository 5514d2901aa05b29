"""A values model's valence and arousal beside a model of Russell's quadrants: a quadrant model's timeline draws each
window's point on the plane as the values model reads the window (the ready-made ``valence-arousal``, which the
command line names), and reads it from the quadrant probabilities where the values model learnt from no set of
quadrants (its valence would not tell sad from calm) or its weights are not found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mvemo.extract.weights.registry import find_weights
from mvemo.extract.windows.plan import Window, plan_windows
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.manifests.schema import Clip
from mvemo.pipeline.predict.clip_sets import check_fingerprints, fingerprints_of, model_configs
from mvemo.pipeline.predict.inputs import pool_inputs, weight_files, window_inputs

EDGE_S = 1e-3  # a small window lies inside a larger one to this


def values_over(
    folder: Path, clip: Clip, windows: list[Window], duration_s: float, weights_dir: str | None
) -> tuple[dict[str, Any] | None, str]:
    """The valence and arousal that the values model saved in ``folder`` (a model of windows pooled over a file)
    gives each of ``windows`` of the clip (its own windows that lie inside each, pooled as it pools a file) and the
    whole file, on its scale, with its name (the folder's): ``None`` and why where it learnt from no set of quadrants
    (the quadrant model's own probabilities then know sad from calm better) or its weights are not found."""
    saved = load_fusion_model(folder)
    name = saved.default_model
    learnt = saved.document.get("trained_on", {}).values()
    if not any(s["kind"] == "placed" and s["learnt"] for s in learnt):
        return None, f"{folder.name} learnt from no set of quadrants: the plane reads the quadrants"
    missing = sorted(f for f in weight_files(saved, name) if find_weights(f, weights_dir) is None)
    if missing:
        return None, f"{folder.name}'s weights {', '.join(missing)} are not found: the plane reads the quadrants"
    configs, fingerprints = model_configs(saved, name)
    check_fingerprints(fingerprints_of(configs, weights_dir=weights_dir), fingerprints, configs)
    pooled = saved.pooling(name)
    assert pooled is not None, f"{folder.name} reads windows pooled over a file"
    small = plan_windows(duration_s, pooled["length_s"], pooled["hop_s"])
    per_small = window_inputs(saved, name, clip, small, weights_dir)
    rows = []
    for window in windows:
        inside = [
            inputs
            for part, inputs in zip(small, per_small)
            if part.start_s >= window.start_s - EDGE_S and part.end_s <= window.end_s + EDGE_S
        ]
        rows.append(saved.predict(name, pool_inputs(inside or per_small[:1], pooled["pooling"]))[0])
    overall = saved.predict(name, pool_inputs(per_small, pooled["pooling"]))[0]
    values = np.array(rows)
    return {"model": folder.name, "values": values, "overall": overall, "scale": saved.scale}, ""
