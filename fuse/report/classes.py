"""``report.md``, ``report.html``, ``report.json``, ``oof_predictions.csv`` and the PNGs of a cross-validation."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mvemo.fuse.cv import CvResult
from mvemo.fuse.metrics import METRIC_DEFINITIONS
from mvemo.fuse.report.pages import Markdown, markdown_page, md_table, md_text
from mvemo.fuse.report.plots import comparison_png, confusion_png, roc_curves, roc_png

PAPER_BANNER = (
    "> **WARNING: protocol `paper`.** The nets were fine-tuned once on every clip, test folds included,"
    " as papers 001 and 003 did. These accuracies are inflated; rerun `mvemo extract --protocol leakfree`"
    " for honest figures."
)
OOF_CSV = "oof_predictions.csv"
TAGS_CSV = "tags.csv"


def write_report(
    result: CvResult,
    out: str | os.PathLike[str],
    *,
    header: dict[str, Any],
    tags: dict[str, list[list[str]]] | None = None,
) -> dict[str, Any]:
    """Write the report files into ``out`` and return the JSON document.

    ``tags`` (``fuse.provenance.top_tags``) gives ``tags.csv``: each clip's top tags per set of tag probabilities.

    ``header`` holds ``cache_fingerprint``, ``config`` (with ``selection``), ``version``, ``versions`` and
    ``provenance`` (per net: ``weights``, ``finetune``, ``protocol``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = {m.name: (m.kind, m.node.expr) for m in result.models}
    repeats = len(result.repeats)
    document = {
        "protocol": result.protocol,
        "fine_tuned_nets": list(result.fine_tuned),
        "folds": result.n_folds,
        "repeats": repeats,
        **header,
        "classes": list(result.classes),
        "clips": result.clips,
        "metric_definitions": METRIC_DEFINITIONS,
        "models": {
            name: {"kind": kinds[name][0], "expression": kinds[name][1]}
            | metrics
            | {
                "choices": [rep[name].choices for rep in result.repeats],
                "described": result.predictions[name].described,
                "inner_accuracy_per_fold": [rep[name].inner_accuracy for rep in result.repeats],
            }
            for name, metrics in result.metrics.items()
        },
        "unscored": result.unscored,
        "fine_tuned_models": [name for name in result.fine_tuned_models if name in result.metrics],
        "comparison": result.comparison,
        "notes": result.notes,
    }
    pooled = f"{repeats} repeats pooled" if repeats > 1 else f"{result.n_folds} folds"
    pngs = {}
    for name, file in figure_names(result.metrics, "confusion").items():
        pngs[name] = confusion_png(
            result.metrics[name]["confusion"], result.classes, f"{name}: confusion, {pooled}", out / file
        )
    curves = roc_curves(
        {n: [(rep[n].y, rep[n].proba) for rep in result.repeats] for n in result.metrics},
        {n: m["roc_auc_macro"] for n, m in result.metrics.items()},
    )
    roc = roc_png(curves, out / "roc.png", repeats=repeats)
    comparison = comparison_png(result.metrics, out / "models.png")
    document["figures"] = {
        "confusion": {n: p.name for n, p in pngs.items()},
        "roc": roc.name,
        "models": comparison.name,
    }
    document["oof_predictions"] = write_oof_csv(result, out / OOF_CSV).name
    if tags:
        document["tags"] = write_tags_csv(result.clip_ids, tags, out / TAGS_CSV).name
    remove_stale_figures(out, document)
    (out / "report.json").write_text(json.dumps(document, indent=2))
    text = markdown(document)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(
        markdown_page(text, out, f"mvemo cross-validation: {out.name}", figure_files(document))
    )
    return document


def figure_files(document: dict[str, Any]) -> list[str]:
    """The PNG files a report's document says it drew (``figures``, nested by kind)."""
    figures = document["figures"]
    return [name for value in figures.values() for name in (value.values() if isinstance(value, dict) else [value])]


def remove_stale_figures(out: Path, document: dict[str, Any]) -> None:
    """Remove the plots an earlier report in ``out`` drew (as its ``report.json`` lists them) that ``document``'s does
    not draw again: a confusion matrix of a model no longer run would read as this run's."""
    try:
        earlier = set(figure_files(json.loads((out / "report.json").read_text(encoding="utf-8"))))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):  # none, or not a report mvemo wrote
        return
    for name in earlier - set(figure_files(document)):
        if Path(name).name == name and name.endswith(".png"):  # a plot of the folder itself, nothing else
            (out / name).unlink(missing_ok=True)


def safe_name(name: str) -> str:
    """A model's name as a file name: its expression's punctuation made underscores."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name).strip("_")


def figure_names(models: Iterable[str], prefix: str) -> dict[str, str]:
    """Each model's figure file, ``{prefix}_{safe_name}.png``; names that slug alike (``a_b`` and ``a+b``; ``A`` and
    ``a`` on a case-blind file system) each end in a digest of the model's own name, so no two share a file."""
    slugs = {name: safe_name(name) for name in models}
    taken = Counter(slug.lower() for slug in slugs.values())
    digests = {
        name: "" if taken[slug.lower()] == 1 else "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
        for name, slug in slugs.items()
    }
    return {name: f"{prefix}_{slug}{digests[name]}.png" for name, slug in slugs.items()}


def write_oof_csv(result: CvResult, path: Path) -> Path:
    """One row per (model, repeat, clip): its group and test fold, true and predicted class, a probability per class."""
    classes = list(result.classes)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "repeat", "clip_id", "group", "fold", "true", "predicted", *(f"p_{c}" for c in classes)]
        )
        for r, predictions in enumerate(result.repeats):
            for name, p in predictions.items():
                predicted = np.argmax(p.proba, axis=1)
                for row, fold, true, pred, proba in zip(p.rows, p.folds, p.y, predicted, p.proba):
                    writer.writerow(
                        [
                            name,
                            r,
                            result.clip_ids[row],
                            result.groups[row],
                            int(fold),
                            classes[true],
                            classes[pred],
                            *(f"{v:.6f}" for v in proba),
                        ]
                    )
    return path


def write_tags_csv(clip_ids: list[str], tags: dict[str, list[list[str]]], path: Path) -> Path:
    """One row per clip: its id, then its top tags in each set of tag probabilities ("tag probability; ...")."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", *tags])
        for row, clip_id in enumerate(clip_ids):
            writer.writerow([clip_id, *("; ".join(per_clip[row]) for per_clip in tags.values())])
    return path


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def summary_header(document: dict[str, Any]) -> list[str]:
    reference = (document.get("comparison") or {}).get("reference", "the reference")
    return [
        "model",
        "acc %",
        "95% interval",
        "folds min-max",
        "pooled acc %",
        "F1 macro",
        "ROC-AUC",
        f"vs {reference}: points (95%), won-lost",
    ]


def summary_rows(document: dict[str, Any]) -> list[list[Any]]:
    """One row per model: accuracy mean, 95 % interval and fold range (%), pooled accuracy, macro F1, macro ROC-AUC,
    and the paired difference from the reference (points, interval, folds won-lost); a model that no fold scored
    says so, with no figure."""
    comparison = document.get("comparison") or {"reference": None, "models": {}}
    rows = []
    for name, m in document["models"].items():
        acc = m["accuracy"]
        auc = "-" if m["roc_auc_macro"] is None else f"{m['roc_auc_macro']:.3f}"
        versus = comparison["models"].get(name)
        if name == comparison["reference"]:
            difference = "reference"
        elif versus is None:
            difference = "-"
        else:
            low, high = versus["interval"]
            difference = (
                f"{100 * versus['mean']:+.1f} ({100 * low:+.1f}, {100 * high:+.1f}) {versus['won']}-{versus['lost']}"
            )
        rows.append(
            [
                name,
                percent(acc["mean"]),
                f"{percent(acc['interval'][0])}-{percent(acc['interval'][1])}",
                f"{percent(acc['min'])}-{percent(acc['max'])}",
                percent(m["accuracy_pooled"]["mean"]),
                f"{m['f1_macro']:.3f}",
                auc,
                difference,
            ]
        )
    for name, why in document.get("unscored", {}).items():
        rows.append([name, f"not scored: {why}", *["-"] * 6])
    return rows


def _training_note(document: dict[str, Any]) -> str:
    """What the heads trained on: embeddings of nets fine-tuned per fold, or of nets used as they are."""
    tuned = document.get("fine_tuned_nets", [])
    if document["protocol"] == "paper":
        return f"The nets ({', '.join(tuned)}) were fine-tuned on every clip, each fold's test clips included."
    if not tuned:
        random = [net for net, p in document.get("provenance", {}).items() if p["weights"] == "random init"]
        weights = f" ({', '.join(random)} from seeded random weights: see Provenance)" if random else ""
        return (
            f"The nets were used as they are{weights}, fine-tuned on no clip; each fold's heads train on the other"
            " folds' clips, every choice is made on inner folds of those clips, and the test fold's clips fitted no"
            " weight, epoch, scaler or choice."
        )
    return (
        f"Each fold's heads train on embeddings of the other folds' clips, which that fold's fine-tuned nets"
        f" ({', '.join(tuned)}) have seen in training; every choice is made on inner folds of those clips, and the"
        " test fold's clips trained no weight, epoch, scaler or choice."
    )


def markdown(document: dict[str, Any]) -> str:
    folds, repeats = document["folds"], document["repeats"]
    selection = document["config"].get("selection", {})
    reference = (document.get("comparison") or {}).get("reference")
    plural = "s" if repeats > 1 else ""
    lines = [
        f"# mvemo cross-validation ({folds} folds x {repeats} repeat{plural}, protocol `{document['protocol']}`)",
        "",
    ]
    if document["protocol"] == "paper":
        lines += [PAPER_BANNER, ""]
    later_folds = ", later repeats folds drawn with seeds 1, 2, ..." if repeats > 1 else ""
    lines += [
        f"mvemo {document.get('version', '?')}, cache fingerprint `{str(document.get('cache_fingerprint', ''))[:16]}`."
        f" Repeat 0 uses the manifest's folds{later_folds}."
        f" {_training_note(document)}",
        "",
        f"Choices are made on {selection.get('inner_folds', '?')} grouped, stratified inner folds, scored by"
        f" {selection.get('scoring', '?')}. Every figure below covers all {repeats} repeat(s) unless its heading names"
        f" one. Each model is compared with {md_text(reference or 'no model')}, named before scoring"
        " (`--reference`, else the first unimodal model listed), on the clips both score.",
        "",
        *md_table(summary_header(document), _linked_to_confusion(summary_rows(document), document)),
        f"![models]({document['figures']['models']}) ![ROC]({document['figures']['roc']})",
        "",
        "## How each figure is computed",
        "",
        *(f"- **{name}**: {text}." for name, text in document["metric_definitions"].items()),
        "",
    ]
    lines += _choices(document)
    lines += _inner_outer(document)
    lines += clips_section(document)
    lines += provenance_section(document)
    if document.get("notes"):
        lines += ["## Notes (every repeat)", "", *(f"- {md_text(note)}" for note in document["notes"]), ""]
    lines += _per_class(document)
    oof_file = document["oof_predictions"]
    lines += [f"Out-of-fold probabilities of every model, repeat and clip: [{oof_file}]({oof_file}).", ""]
    if document.get("tags"):
        lines += [f"Each clip's top Million Song Dataset tags: [{document['tags']}]({document['tags']}).", ""]
    return "\n".join(lines)


def _linked_to_confusion(rows: list[list[Any]], document: dict[str, Any]) -> list[list[Any]]:
    """The summary's rows, each scored model's name a link to its confusion matrix."""
    figures = document["figures"]["confusion"]
    return [
        [Markdown(f"[{md_text(row[0])}]({figures[row[0]]})") if row[0] in figures else row[0], *row[1:]] for row in rows
    ]


def _choices(document: dict[str, Any]) -> list[str]:
    folds, repeats = document["folds"], document["repeats"]
    rows = [[name, m["kind"], *m["described"]] for name, m in document["models"].items()]
    rows = [row + ["-"] * (folds + 2 - len(row)) for row in rows]
    heading = "repeat 0" if repeats == 1 else f"repeat 0 of {repeats}; report.json holds every repeat's"
    lines = [
        f"## Chosen on inner folds ({heading})",
        "",
        *md_table(["model", "kind", *(f"fold {k}" for k in range(folds))], rows),
    ]
    tallies = [[name, _tally(m["choices"])] for name, m in document["models"].items() if m["kind"] == "selected"]
    if tallies:
        lines += [
            f"Members chosen in the {repeats * folds} folds of every repeat:",
            "",
            *md_table(["model", "chosen"], tallies),
        ]
    families = [[name, heads] for name, m in document["models"].items() if (heads := _head_tally(m["choices"]))]
    if families:
        lines += [
            f"Head families chosen in the {repeats * folds} folds of every repeat"
            " ([fuse] heads; each head of a fusion counted):",
            "",
            *md_table(["model", "heads"], families),
        ]
    return lines


def _head_tally(choices: Any) -> str:
    """How often each head family was chosen, over every head within ``choices`` (nested: a fusion's members)."""
    counts: Counter[str] = Counter()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("head"), str):
                counts[node["head"]] += 1
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(choices)
    return ", ".join(f"{name} in {n}" for name, n in counts.most_common())


def _tally(choices: list[list[dict[str, Any]]]) -> str:
    counts = Counter(c["chosen"] for rep in choices for c in rep if "chosen" in c)
    return ", ".join(f"{expr} in {n}" for expr, n in counts.most_common())


def _inner_outer(document: dict[str, Any]) -> list[str]:
    """Each model's inner against its outer accuracy. The inner folds' accuracy at the setting they chose is optimistic
    by that choice; a model over nets fine-tuned per fold is optimistic by more, its nets having trained on the rows
    its inner folds validate: the other models' gaps are the baseline its gap is read against."""
    tuned = set(document.get("fine_tuned_models", []))
    rows = []
    for name, m in document["models"].items():
        inner, outer = m.get("inner_accuracy"), m["accuracy"]["mean"]
        if inner is not None:
            rows.append(
                [
                    name,
                    "yes" if name in tuned else "no",
                    percent(inner),
                    percent(outer),
                    f"{100 * (inner - outer):+.1f}",
                ]
            )
    if not rows:
        return []
    return [
        "## Inner and outer accuracy",
        "",
        "The inner folds' accuracy at the setting they chose leans optimistic by that choice. A model over nets"
        " fine-tuned per fold leans more: its nets trained on the rows its inner folds validate. Read its gap"
        " against the others'.",
        "",
        *md_table(
            ["model", "nets fine-tuned per fold", "inner acc % (chosen setting)", "outer acc %", "gap (points)"], rows
        ),
    ]


def clips_section(document: dict[str, Any]) -> list[str]:
    """The clips each model used (per class or quadrant, where ``clips`` counts them so) and those it left out,
    with why: every figure of a report rests on its model's clips here."""
    clips = document["clips"]
    per_class = clips.get("per_class")
    classes = list(per_class or [])
    total = f"{clips['total']} clips in the cache" + (
        ": " + ", ".join(f"{c} {n}" for c, n in per_class.items()) if per_class else ""
    )
    rows = [
        [name, m["used"], *(m["used_per_class"][c] for c in classes), len(m["left_out"])]
        for name, m in clips["models"].items()
    ]
    lines = ["## Clips", "", md_text(total + "."), "", *md_table(["model", "used", *classes, "left out"], rows)]
    left_out: dict[tuple[str, str], list[str]] = {
        (item["clip_id"], item["reason"]): [] for m in clips["models"].values() for item in m["left_out"]
    }
    for name, m in clips["models"].items():
        for item in m["left_out"]:
            left_out[(item["clip_id"], item["reason"])].append(name)
    if left_out:
        lines += [
            "Left out:",
            "",
            *md_table(["clip", "models", "reason"], [[c, ", ".join(n), r] for (c, r), n in left_out.items()]),
        ]
    return lines


def provenance_section(document: dict[str, Any]) -> list[str]:
    """A report's provenance: each net's or set's weights (sha256 or random init), fine-tuning and protocol, the
    config and the package versions."""
    rows = [[net, p["weights"], p["finetune"], p["protocol"]] for net, p in document.get("provenance", {}).items()]
    versions = ", ".join(f"{name} {version}" for name, version in document.get("versions", {}).items())
    lines = ["## Provenance", ""]
    if rows:
        lines += md_table(["net or set", "weights (sha256)", "fine-tuning", "protocol"], rows)
    lines += [
        f"Config: {md_text(json.dumps(document['config'], sort_keys=True))}",
        "",
        f"Versions: {md_text(versions)}.",
        "",
    ]
    return lines


def _per_class(document: dict[str, Any]) -> list[str]:
    classes, repeats = document["classes"], document["repeats"]
    pooled = f"all {repeats} repeats pooled, each clip counted once per repeat" if repeats > 1 else "summed over folds"
    lines = [f"## Per class and confusion matrices ({pooled}; rows true, columns predicted)", ""]
    for name, m in document["models"].items():
        scores = m["per_class"]
        rows = [
            [
                c,
                f"{scores['precision'][i]:.2f}",
                f"{scores['recall'][i]:.2f}",
                f"{scores['f1'][i]:.2f}",
                scores["support"][i],
            ]
            for i, c in enumerate(classes)
        ]
        lines += [f"### {md_text(name)}", "", *md_table(["class", "precision", "recall", "F1", "clips"], rows)]
        counts = [
            [c, *(f"{n} ({100 * share:.0f}%)" for n, share in zip(row, shares))]
            for c, row, shares in zip(classes, m["confusion"], m["confusion_normalized"])
        ]
        lines += md_table(["true \\ predicted", *classes], counts)
        lines += [f"![{md_text(name)}]({document['figures']['confusion'][name]})", ""]
    return lines
