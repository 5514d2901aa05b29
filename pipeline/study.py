"""``mvemo study optimizers``: paper 001's Table 2, each net fine-tuned with Adam, SGD and RMSprop.

Every (net, optimizer) is fine-tuned per fold exactly as the ``leakfree`` protocol
does: the other folds train it, and an inner split of them (``manifests.folds.inner_split``)
picks its epoch. In each fold the optimizer of least validation loss on that inner
split is selected, and only the selected one's softmax head labels the test fold:
the outer folds score the selection and choose nothing. Nothing is written to the
cache; ``[optim.<net>]`` in a config then sets the optimizers for ``--finetune``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.cache.read import Cache
from mvemo.extract.finetune.study import OutOfFold, out_of_fold_probabilities
from mvemo.extract.finetune.train import STUDY_OPTIMIZERS, TrainConfig
from mvemo.fuse.loop import check_folds
from mvemo.fuse.metrics import summarize, summarize_repeats
from mvemo.fuse.report.plots import accuracy_bars_png
from mvemo.manifests.errors import ConfigError
from mvemo.pipeline.tables import format_table

COLUMNS = [
    "net",
    "optimizer",
    "lr",
    "momentum",
    "inner val loss",
    "inner val accuracy % (min-max)",
    "selected in folds",
]
SELECTED_COLUMNS = ["net", "selected per fold", "test accuracy % (min-max)", "macro F1", "ROC-AUC"]


def study_folder(cache_path: str | os.PathLike[str]) -> Path:
    """Where the study of a cache is written: ``<cache>.optimizer-study/`` beside it."""
    path = Path(cache_path)
    return path.with_name(path.name + ".optimizer-study")


def run_optimizer_study(
    cache_path: str | os.PathLike[str],
    nets: Iterable[str],
    config: TrainConfig,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Fine-tune every net with each optimizer of ``STUDY_OPTIMIZERS``; write ``optimizer_study.{json,md,png}``."""
    nets = tuple(nets)
    unknown = [n for n in nets if n not in STUDY_OPTIMIZERS]
    if unknown:
        raise ConfigError(
            f"mvemo study optimizers: no optimizer table for {unknown}; nets are {list(STUDY_OPTIMIZERS)}"
        )
    results: dict[str, dict[str, Any]] = {}
    with Cache(cache_path) as cache:
        y, folds, n_folds = cache.y, cache.folds, check_folds(cache, None)
        for name in nets:
            runs = {}
            for label, optimizer in STUDY_OPTIMIZERS[name].items():
                trial = replace(config, optimizers={**config.optimizers, name: optimizer})
                runs[label] = out_of_fold_probabilities(
                    cache, name, trial, weights_dir=weights_dir, device=device, log=log
                )
            results[name] = select_per_fold(runs, y, folds, n_folds)
            for label, optimizer in STUDY_OPTIMIZERS[name].items():
                results[name]["optimizers"][label]["optimizer"] = asdict(optimizer)
    document = {
        "protocol": "leakfree",
        "train": {k: v for k, v in asdict(config).items() if k != "optimizers"},
        "nets": results,
    }
    out = study_folder(cache_path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimizer_study.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "optimizer_study.md").write_text(markdown(document))
    validation = {
        net: {label: r["inner_accuracy"] for label, r in by["optimizers"].items()} for net, by in results.items()
    }
    accuracy_bars_png(
        validation, out / "optimizer_study.png", title="Inner validation accuracy per optimizer (paper 001, Table 2)"
    )
    return document


def select_per_fold(runs: dict[str, OutOfFold], y: np.ndarray, folds: np.ndarray, n_folds: int) -> dict[str, Any]:
    """Per fold the optimizer of least inner validation loss, and the outer scores of those selected alone.

    Each optimizer's inner validation loss and accuracy are summarized over folds (mean, min, max) with the
    folds it was selected in; ``selected`` holds the outer test folds' metrics of the selection."""
    labels = list(runs)
    chosen = {
        k: min(labels, key=lambda label: runs[label].validation[k]["val_loss"]) for k in runs[labels[0]].validation
    }
    rows = runs[labels[0]].rows
    proba = np.zeros_like(runs[labels[0]].proba)
    for k, label in chosen.items():
        in_fold = folds[rows] == k
        proba[in_fold] = runs[label].proba[in_fold]
    optimizers = {}
    for label, run in runs.items():
        accuracy = [v["val_accuracy"] for v in run.validation.values()]
        loss = [v["val_loss"] for v in run.validation.values()]
        optimizers[label] = {
            "inner_loss": float(np.mean(loss)),
            "inner_loss_per_fold": {k: v["val_loss"] for k, v in run.validation.items()},
            "inner_accuracy": {"mean": float(np.mean(accuracy)), "min": min(accuracy), "max": max(accuracy)},
            "selected_in_folds": [k for k, c in chosen.items() if c == label],
        }
    metrics = summarize_repeats([summarize(y[rows], proba, folds[rows], n_folds)], k=n_folds)
    selected = {key: metrics[key] for key in ("accuracy", "f1_macro", "roc_auc_macro")} | {
        "per_fold": chosen,
        "clips": len(rows),
    }
    return {"optimizers": optimizers, "selected": selected}


def table_rows(document: dict[str, Any]) -> list[list[Any]]:
    """One row per (net, optimizer): its inner validation figures and the folds it was selected in."""
    rows = []
    for net, by in document["nets"].items():
        for label, r in by["optimizers"].items():
            a = r["inner_accuracy"]
            rows.append(
                [
                    net,
                    label,
                    f"{r['optimizer']['lr']:g}",
                    f"{r['optimizer']['momentum']:g}",
                    f"{r['inner_loss']:.3f}",
                    f"{100 * a['mean']:.1f} ({100 * a['min']:.1f}-{100 * a['max']:.1f})",
                    ", ".join(str(k) for k in r["selected_in_folds"]) or "-",
                ]
            )
    return rows


def selected_rows(document: dict[str, Any]) -> list[list[Any]]:
    """One row per net: the outer folds' scores of the optimizers selected on inner splits."""
    rows = []
    for net, by in document["nets"].items():
        s = by["selected"]
        a, auc = s["accuracy"], s["roc_auc_macro"]
        per_fold = ", ".join(f"{k}: {label}" for k, label in s["per_fold"].items())
        rows.append(
            [
                net,
                per_fold,
                f"{100 * a['mean']:.1f} ({100 * a['min']:.1f}-{100 * a['max']:.1f})",
                f"{s['f1_macro']:.3f}",
                "-" if auc is None else f"{auc:.3f}",
            ]
        )
    return rows


def markdown(document: dict[str, Any]) -> str:
    train = document["train"]
    lines = [
        "# Optimizer study (paper 001, Table 2)",
        "",
        f"Each net fine-tuned ({train['finetune']}, at most {train['max_epochs']} epochs, patience {train['patience']},"
        f" seed {train['seed']}) per fold on the other folds, with each optimizer."
        " In each fold, the optimizer of least validation loss on an inner split of the training folds is selected;"
        " the test folds score the selection only.",
        "",
        "## Inner validation, per optimizer",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in table_rows(document)),
        "",
        "## Outer test folds, the selected optimizers",
        "",
        "| " + " | ".join(SELECTED_COLUMNS) + " |",
        "|" + "---|" * len(SELECTED_COLUMNS),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in selected_rows(document)),
    ]
    return "\n".join(lines) + "\n"


def console_table(document: dict[str, Any]) -> str:
    return (
        format_table(COLUMNS, table_rows(document)) + "\n\n" + format_table(SELECTED_COLUMNS, selected_rows(document))
    )
