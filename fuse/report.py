"""``report.md``, ``report.json`` and the PNGs of a cross-validation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mvemo.fuse.cv import CvResult
from mvemo.fuse.plots import confusion_png, roc_curves, roc_png

PAPER_BANNER = (
    "> **WARNING: protocol `paper`.** The nets were fine-tuned once on every clip, test folds included,"
    " as papers 001 and 003 did. These accuracies are inflated; rerun `mvemo extract --protocol leakfree`"
    " for honest figures."
)


def write_report(result: CvResult, out: str | os.PathLike[str], *, header: dict[str, Any]) -> dict[str, Any]:
    """Write the report files into ``out`` and return the JSON document.

    ``header`` holds ``cache_fingerprint``, ``config`` and ``version``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "protocol": result.protocol,
        "fine_tuned_nets": list(result.fine_tuned),
        "folds": result.n_folds,
        **header,
        "classes": list(result.classes),
        "models": result.metrics,
        "comparison": result.comparison,
        "notes": result.notes,
    }
    pngs = {}
    for name, metrics in result.metrics.items():
        file = out / f"confusion_{name.replace('+', '_')}.png"
        pngs[name] = confusion_png(metrics["confusion"], result.classes, f"{name}: confusion over {result.n_folds} folds", file)
    curves = roc_curves(
        {n: (p.y, p.proba) for n, p in result.predictions.items()}, {n: m["roc_auc_macro"] for n, m in result.metrics.items()}
    )
    roc = roc_png(curves, out / "roc.png")
    document["figures"] = {"confusion": {n: p.name for n, p in pngs.items()}, "roc": roc.name}
    (out / "report.json").write_text(json.dumps(document, indent=2))
    (out / "report.md").write_text(markdown(document))
    return document


def summary_rows(document: dict[str, Any]) -> list[list[Any]]:
    """One row per model: accuracy min/mean/max/std (%), macro F1, macro ROC-AUC."""
    rows = []
    for name, m in document["models"].items():
        acc = m["accuracy"]
        auc = "-" if m["roc_auc_macro"] is None else f"{m['roc_auc_macro']:.3f}"
        rows.append(
            [
                name,
                f"{100 * acc['min']:.1f}",
                f"{100 * acc['mean']:.1f}",
                f"{100 * acc['max']:.1f}",
                f"{100 * acc['std']:.1f}",
                f"{m['f1_macro']:.3f}",
                auc,
            ]
        )
    return rows


SUMMARY_HEADER = ["model", "acc min %", "acc mean %", "acc max %", "std", "F1 macro", "ROC-AUC"]


def _training_note(document: dict[str, Any]) -> str:
    """What the heads trained on: embeddings of nets fine-tuned per fold, or of nets used as they are."""
    tuned = document.get("fine_tuned_nets", [])
    if document["protocol"] == "paper":
        return f"The nets ({', '.join(tuned)}) were fine-tuned on every clip, each fold's test clips included."
    if not tuned:
        return (
            "The nets were used as they are, fine-tuned on no clip; each fold's head trains on the other folds' clips,"
            " and the test fold's clips fitted no weight, epoch or scaler."
        )
    return (
        f"Each fold's head trains on embeddings of the other folds' clips, which that fold's fine-tuned nets"
        f" ({', '.join(tuned)}) have seen in training; the test fold's clips trained no weight, epoch or scaler."
    )


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# mvemo cross-validation ({document['folds']} folds, protocol `{document['protocol']}`)", ""]
    if document["protocol"] == "paper":
        lines += [PAPER_BANNER, ""]
    lines += [
        f"mvemo {document.get('version', '?')}, cache fingerprint `{str(document.get('cache_fingerprint', ''))[:16]}`."
        f" Folds are the manifest's. {_training_note(document)}",
        "",
        "| " + " | ".join(SUMMARY_HEADER) + " |",
        "|" + "---|" * len(SUMMARY_HEADER),
    ]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in summary_rows(document)]
    comparison = document.get("comparison")
    if comparison:
        test = comparison["mcnemar"]
        diffs = ", ".join(f"{100 * d:+.1f}" for d in comparison["per_fold_accuracy_difference"])
        lines += [
            "",
            f"**{comparison['integrated']} vs best unimodal {comparison['best_unimodal']}**: per-fold accuracy"
            f" differences (points) {diffs}; McNemar on pooled predictions: {test['only_first_right']} clips only"
            f" the integrated model got right, {test['only_second_right']} only the unimodal one, p = {test['p_value']:.3g}.",
        ]
    if document.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in document["notes"])]
    lines += ["", "## Confusion matrices (summed over folds; rows true, columns predicted)", ""]
    classes = document["classes"]
    for name, m in document["models"].items():
        lines += [f"### {name}", "", "| true \\ predicted | " + " | ".join(classes) + " |", "|" + "---|" * (len(classes) + 1)]
        lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(classes, m["confusion"])]
        lines += ["", f"![{name}]({document['figures']['confusion'][name]})", ""]
    lines += ["## ROC", "", f"![ROC]({document['figures']['roc']})", ""]
    return "\n".join(lines)
