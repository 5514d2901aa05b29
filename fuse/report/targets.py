"""Reports of the other target kinds: tags (per-tag AP bars) and valence/arousal (predicted-vs-true scatters).

Each writes ``report.json``, ``report.md`` (tables, with every metric defined), ``report.html`` (the same, its
tables sortable and its PNGs inlined) and its PNGs into ``out``, as the class report does (``fuse.report.classes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mvemo.fuse.report.classes import (
    PAPER_BANNER,
    clips_section,
    figure_files,
    figure_names,
    provenance_section,
    remove_stale_figures,
)
from mvemo.fuse.report.pages import markdown_page, md_table, md_text
from mvemo.fuse.report.plots import model_styles
from mvemo.fuse.targets.tags import TAG_METRIC_DEFINITIONS, TagResult
from mvemo.fuse.targets.values import VALUE_METRIC_DEFINITIONS, ValuesResult
from mvemo.manifests.targets import QUADRANT_MEANING, QUADRANTS

TAG_COLUMNS = [
    ("ROC-AUC macro", "roc_auc_macro"),
    ("ROC-AUC micro", "roc_auc_micro"),
    ("mAP", "map"),
    ("AP micro", "ap_micro"),
    ("F1 macro", "f1_macro"),
    ("LRAP", "lrap"),
]


def tags_document(result: TagResult) -> dict[str, Any]:
    """The tag report: per model the metrics over repeats, per tag and model the per-fold choices."""
    return {
        "target": "tags",
        "tags": list(result.tags),
        "n_folds": result.n_folds,
        "metrics": result.metrics,
        "unscored": result.unscored,
        "unscored_models": result.unscored_models,
        "clips": result.clips,
        "choices": result.choices(),
        "definitions": TAG_METRIC_DEFINITIONS,
        "notes": result.notes,
        "figures": {"average_precision": "tag_ap.png"},
    }


def values_document(result: ValuesResult) -> dict[str, Any]:
    """The valence/arousal report: per model the metrics over repeats and the per-fold choices."""
    return {
        "target": ",".join(result.names),
        "names": list(result.names),
        "scale": list(result.scale),
        "n_folds": result.n_folds,
        "metrics": result.metrics,
        "unscored_models": result.unscored,
        "clips": result.clips,
        "choices": {m: p.described for m, p in result.repeats[0].items()},
        "definitions": VALUE_METRIC_DEFINITIONS,
        "notes": result.notes,
        "figures": figure_names(result.repeats[0], "scatter"),
    }


def summary_table(document: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of a report's summary table: a row per model."""
    rows: list[list[Any]] = []
    unscored = [[model, f"not scored: {why}"] for model, why in document.get("unscored_models", {}).items()]
    if document["target"] == "tags":
        for model, m in document["metrics"].items():
            rows.append([model, m["n_rows"], *(_spread(m[key]) for _, key in TAG_COLUMNS)])
        return ["model", "clips", *(name for name, _ in TAG_COLUMNS)], rows + unscored
    names = document["names"]
    for model, m in document["metrics"].items():
        cells = []
        for name in names:
            fold = m[name]["ccc_per_fold"]
            cells += [
                f"{m[name]['ccc']:.3f}",
                f"{fold['mean']:.3f} [{fold['interval'][0]:.3f}, {fold['interval'][1]:.3f}]",
                f"{m[name]['r2']:.3f}",
                f"{m[name]['pearson']:.3f}",
                f"{m[name]['rmse']:.3f}",
            ]
        quadrant = m.get("quadrants")
        rows.append([model, m["n_rows"], *cells, *([f"{100 * quadrant['accuracy']:.1f}"] if quadrant else [])])
    header = [f"{name} {metric}" for name in names for metric in ("CCC", "CCC per fold [95%]", "R²", "r", "RMSE")]
    return ["model", "clips", *header, *(["quadrant acc %"] if len(names) == 2 else [])], rows + unscored


def write_target_report(document: dict[str, Any], result: TagResult | ValuesResult, out: Path) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``report.html`` and the plots of a tag or value report into ``out``;
    returns the document."""
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(result, TagResult):
        tag_ap_png(document, out / document["figures"]["average_precision"])
    else:
        for model, name in document["figures"].items():
            scatter_png(result, model, out / name)
    text = markdown(document)
    remove_stale_figures(out, document)
    (out / "report.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    (out / "report.md").write_text(text, encoding="utf-8")
    title = f"mvemo cross-validation of {document['target']}: {out.name}"
    (out / "report.html").write_text(markdown_page(text, out, title, figure_files(document)))
    return document


def markdown(document: dict[str, Any]) -> str:
    header, rows = summary_table(document)
    kind = "Emotion tags" if document["target"] == "tags" else f"{' and '.join(document['names']).capitalize()}"
    lines = [
        f"# {md_text(kind)}: {document['n_folds']}-fold nested cross-validation, protocol `{document['protocol']}`",
        "",
    ]
    if document["protocol"] == "paper":
        lines += [PAPER_BANNER, ""]
    lines += md_table(header, rows)
    if document["target"] == "tags":
        per_tag = [
            [model, tag, f"{t['n_rows']['mean']:.0f}"]
            + [_spread(t[k], detail=False) for k in ("prevalence", "roc_auc", "average_precision", "f1")]
            for model, m in document["metrics"].items()
            for tag, t in m["per_tag"].items()
        ]
        header = ["model", "tag", "clips scored", "prevalence", "ROC-AUC", "AP", "F1"]
        lines += ["## Per tag (mean over repeats)", "", *md_table(header, per_tag)]
        lines += [f"![average precision per tag]({document['figures']['average_precision']})"]
    else:
        if len(document["names"]) == 2:
            lines += ["Quadrants: " + "; ".join(f"{q} {QUADRANT_MEANING[q]}" for q in QUADRANTS) + "."]
        lines += [""] + [f"![{md_text(model)}]({name})" for model, name in document["figures"].items()]
    lines += ["", "## Definitions", ""] + [f"- **{name}**: {text}" for name, text in document["definitions"].items()]
    lines += [""] + [f"- note: {md_text(note)}" for note in document["notes"]] + [""]
    lines += clips_section(document)
    lines += provenance_section(document)
    return "\n".join(lines) + "\n"


def _spread(value: dict[str, float] | None, *, detail: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value['mean']:.3f}" + (
        f" ({value['min']:.3f}-{value['max']:.3f})" if detail and value["max"] > value["min"] else ""
    )


def tag_ap_png(document: dict[str, Any], path: Path) -> Path:
    """Average precision per tag, one row per tag (read at a glance for any number of tags), a bar per model, the
    tag's prevalence (a random ranking's AP) marked on its row."""
    tags, models = document["tags"], list(document["metrics"])
    styles = model_styles(models)
    height = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(7.0, 1.0 + len(tags) * max(0.28, 0.16 * len(models))), dpi=100)
    rows = np.arange(len(tags))
    for i, model in enumerate(models):
        per_tag = document["metrics"][model]["per_tag"]
        widths = [((per_tag.get(t) or {}).get("average_precision") or {"mean": 0.0})["mean"] for t in tags]
        ax.barh(rows - 0.4 + (i + 0.5) * height, widths, height, label=model, color=styles[model]["color"])
    first = document["metrics"][models[0]]["per_tag"]
    for j, tag in enumerate(tags):
        prevalence = (first.get(tag) or {}).get("prevalence")
        if prevalence:
            ax.vlines(prevalence["mean"], j - 0.45, j + 0.45, colors="black", linestyles=":")
    ax.set_yticks(rows, tags)
    ax.set_ylim(len(tags) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision (dotted: the tag's prevalence, a random ranking's)")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(models), 3), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter_png(result: ValuesResult, model: str, path: Path) -> Path:
    """Predicted against true values of the first repeat, a panel per dimension, with its CCC and the diagonal."""
    predictions = result.repeats[0][model]
    low, high = result.scale
    fig, axes = plt.subplots(1, len(result.names), figsize=(3.4 * len(result.names), 3.4), dpi=100, squeeze=False)
    for d, (ax, name) in enumerate(zip(axes[0], result.names)):
        ax.scatter(predictions.values[:, d], predictions.pred[:, d], s=10, alpha=0.7)
        ax.plot([low, high], [low, high], color="grey", linestyle=":")
        ax.set(xlim=(low, high), ylim=(low, high), xlabel=f"true {name}", ylabel=f"predicted {name}")
        ax.set_title(f"{name}: CCC {result.metrics[model][name]['ccc']:.2f}")
    fig.suptitle(model, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
