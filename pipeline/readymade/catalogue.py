"""``mvemo models list``: each ready-made model with what it labels, reads and scores, and whether its weights are
here."""

from __future__ import annotations

import os
from typing import Any

from mvemo.extract.weights.registry import weights_status
from mvemo.fuse.saved.model import SavedFusionModel, load_fusion_model
from mvemo.manifests.errors import MvemoError
from mvemo.pipeline.predict.inputs import check_recorded_sets, weight_files
from mvemo.pipeline.readymade.recipes import RECIPES, model_card, shipped_folder


def catalogue(weights_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Per ready-made model: its name, what it labels, its inputs, its cross-validated figures in words, the weight
    files its nets read and whether they are here as it was trained with them (``weights``: "all here", else each
    file missing or other than the model's, with what to do), and whether this version computes every set it reads
    as it was trained (``computes``: "as trained", else why not). A problem of one model is marked on its entry."""
    entries = []
    for name in RECIPES:
        folder = shipped_folder(name)
        card, saved = model_card(folder), load_fusion_model(folder)
        model = saved.default_model
        files = weight_files(saved, model)
        entries.append(
            {
                "name": name,
                "labels": card["recipe"]["title"],
                "outputs": saved.outputs,
                "inputs": list(saved.inputs(model)),
                "figures": figures_text(card["figures"]),
                "weight_files": list(files),
                "weights": weights_here(files, weights_dir),
                "computes": computes(saved, model, weights_dir),
                "folder": str(folder),
            }
        )
    return entries


def weights_here(files: dict[str, str], weights_dir: str | os.PathLike[str] | None) -> str:
    """The words "all here" where each weight file is found with the sha256 a model recorded (``files``: file ->
    sha256), else the files missing and those found with another sha256, with the command that brings the right one."""
    found = {file: weights_status(file, weights_dir) for file in files}
    missing = [file for file, state in found.items() if state.path is None]
    other = [file for file, state in found.items() if state.path is not None and state.sha256 != files[file]]
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    problems += [
        f"other than the model's: {f} (sha256 {found[f].sha256[:12]}, the model's {files[f][:12]})" for f in other
    ]
    return "; ".join(problems) + " (`mvemo weights fetch FILE`)" if problems else "all here"


def computes(saved: SavedFusionModel, model: str, weights_dir: str | os.PathLike[str] | None) -> str:
    """The words "as trained" where this version computes every set ``model`` reads with the fingerprint it recorded,
    else why not (``pipeline.predict.inputs.check_recorded_sets``; the weights a set's spec needs looked for in
    ``weights_dir`` first)."""
    try:
        check_recorded_sets(saved, model, None if weights_dir is None else str(weights_dir))
    except MvemoError as err:
        return f"no: {err}"
    return "as trained"


def figures_text(figures: dict[str, Any]) -> str:
    """A model's cross-validated figures in a few words: accuracy with its 95 % interval and macro F1; ROC-AUC macro
    and mAP (means over repeats); or each value's CCC and r, and the quadrants' accuracy."""
    if "accuracy" in figures:
        low, high = figures["accuracy"]["interval"]
        mean = figures["accuracy"]["mean"]
        return f"accuracy {100 * mean:.1f} % ({100 * low:.1f}-{100 * high:.1f}), macro F1 {figures['f1_macro']:.3f}"
    if "map" in figures:
        return f"ROC-AUC macro {figures['roc_auc_macro']['mean']:.3f}, mAP {figures['map']['mean']:.3f}"
    if all(isinstance(m, dict) and ("ccc_valence" in m or "valence_roc_auc" in m) for m in figures.values()):
        return "; ".join(f"{name}: {_set_text(measures)}" for name, measures in figures.items())
    values = [f"{name} CCC {m['ccc']:.3f} (r {m['pearson']:.3f})" for name, m in figures.items() if isinstance(m, dict)]
    quadrants = [f"quadrants {100 * figures['quadrant_accuracy']:.1f} %"] if "quadrant_accuracy" in figures else []
    return ", ".join(values + quadrants)


def _set_text(measures: dict[str, Any]) -> str:
    """One set's figures of a values model of several sets (``fuse.targets.plane``): the rated set's CCCs, the placed
    set's ROC-AUCs; the quadrants' accuracy of both."""
    if "ccc_valence" in measures:
        parts = [f"{v} CCC {measures[f'ccc_{v}']['mean']:.3f}" for v in ("valence", "arousal")]
    else:
        parts = [f"{v} ROC-AUC {measures[f'{v}_roc_auc']['mean']:.3f}" for v in ("valence", "arousal")]
    return ", ".join([*parts, f"quadrants {100 * measures['quadrant_accuracy']['mean']:.1f} %"])
