"""``mvemo models list``: each ready-made model with what it labels, reads and scores, and whether its weights are here."""

from __future__ import annotations

import os
from typing import Any

from mvemo.extract.nets import pretrained_file
from mvemo.extract.weights.registry import find_weights
from mvemo.fuse.saved.model import load_fusion_model
from mvemo.pipeline.readymade.recipes import RECIPES, model_card, shipped_folder


def catalogue(weights_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Per ready-made model: its name, what it labels, its inputs, its cross-validated figures in words and the weight
    files its nets read, and those missing here with the command that fetches them (``weights``: "all here" or that)."""
    entries = []
    for name in RECIPES:
        folder = shipped_folder(name)
        card, saved = model_card(folder), load_fusion_model(folder)
        model = saved.default_model
        files = [
            f
            for set_name in saved.feature_sets(model)
            if set_name.startswith("emb/") and (f := pretrained_file(set_name.split("/")[1]))
        ]
        missing = [f for f in files if find_weights(f, weights_dir) is None]
        entries.append(
            {
                "name": name,
                "labels": card["recipe"]["title"],
                "outputs": saved.outputs,
                "inputs": list(saved.inputs(model)),
                "figures": figures_text(card["figures"]),
                "weight_files": files,
                "weights": "all here" if not missing else f"missing: {', '.join(missing)} (`mvemo weights fetch FILE`)",
                "folder": str(folder),
            }
        )
    return entries


def figures_text(figures: dict[str, Any]) -> str:
    """A model's cross-validated figures in a few words: accuracy with its 95 % interval and macro F1, or ROC-AUC macro
    and mAP (means over repeats)."""
    if "accuracy" in figures:
        low, high = figures["accuracy"]["interval"]
        return f"accuracy {100 * figures['accuracy']['mean']:.1f} % ({100 * low:.1f}-{100 * high:.1f}), macro F1 {figures['f1_macro']:.3f}"
    return f"ROC-AUC macro {figures['roc_auc_macro']['mean']:.3f}, mAP {figures['map']['mean']:.3f}"
