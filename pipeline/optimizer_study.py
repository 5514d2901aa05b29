"""``mvemo extract --optimizer-study``: paper 001's Table 2, each net fine-tuned with Adam, SGD and RMSprop.

Every (net, optimizer) is fine-tuned per fold exactly as the ``leakfree`` protocol
does (the other folds train it, an inner split picks its epoch), and its own
softmax head labels the test fold. Nothing is written to the cache: the study
picks optimizers; ``[optim.<net>]`` in a config then sets them for ``--finetune``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mvemo.cache.read import Cache
from mvemo.extract.finetune import out_of_fold_probabilities
from mvemo.extract.train import STUDY_OPTIMIZERS, TrainConfig
from mvemo.fuse.cv import check_folds
from mvemo.fuse.metrics import summarize
from mvemo.fuse.plots import accuracy_bars_png
from mvemo.manifests.errors import ConfigError
from mvemo.pipeline.tables import format_table

COLUMNS = ["net", "optimizer", "lr", "momentum", "accuracy mean % (min-max)", "macro F1", "ROC-AUC"]


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
        raise ConfigError(f"--optimizer-study: no optimizer table for {unknown}; nets are {list(STUDY_OPTIMIZERS)}")
    with Cache(cache_path) as cache:
        y, folds, n_folds = cache.y, cache.folds, check_folds(cache, None)
    results: dict[str, dict[str, Any]] = {}
    for name in nets:
        results[name] = {}
        for label, optimizer in STUDY_OPTIMIZERS[name].items():
            trial = replace(config, optimizers={**config.optimizers, name: optimizer})
            rows, proba = out_of_fold_probabilities(cache_path, name, trial, weights_dir=weights_dir, device=device, log=log)
            metrics = summarize(y[rows], proba, folds[rows], n_folds)
            results[name][label] = {"optimizer": asdict(optimizer), "clips": len(rows)} | {
                key: metrics[key] for key in ("accuracy", "f1_macro", "roc_auc_macro")
            }
    document = {"protocol": "leakfree", "train": {k: v for k, v in asdict(config).items() if k != "optimizers"}, "nets": results}
    out = study_folder(cache_path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimizer_study.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "optimizer_study.md").write_text(markdown(document))
    accuracy = {net: {label: r["accuracy"] for label, r in by.items()} for net, by in results.items()}
    accuracy_bars_png(accuracy, out / "optimizer_study.png", title="Fine-tuning optimizers (paper 001, Table 2)")
    return document


def table_rows(document: dict[str, Any]) -> list[list[Any]]:
    """One row per (net, optimizer), the net's best mean accuracy marked with *."""
    rows = []
    for net, by in document["nets"].items():
        best = max(by, key=lambda label: by[label]["accuracy"]["mean"])
        for label, r in by.items():
            a, auc = r["accuracy"], r["roc_auc_macro"]
            rows.append(
                [net, label + (" *" if label == best else ""), f"{r['optimizer']['lr']:g}", f"{r['optimizer']['momentum']:g}",
                 f"{100 * a['mean']:.1f} ({100 * a['min']:.1f}-{100 * a['max']:.1f})", f"{r['f1_macro']:.3f}",
                 "-" if auc is None else f"{auc:.3f}"]
            )  # fmt: skip
    return rows


def markdown(document: dict[str, Any]) -> str:
    train = document["train"]
    lines = [
        "# Optimizer study (paper 001, Table 2)",
        "",
        f"Each net fine-tuned ({train['finetune']}, at most {train['max_epochs']} epochs, patience {train['patience']},"
        f" seed {train['seed']}) per fold on the other folds; its own head labels the test fold. * marks each net's best.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in table_rows(document)),
    ]
    return "\n".join(lines) + "\n"


def console_table(document: dict[str, Any]) -> str:
    return format_table(COLUMNS, table_rows(document))
