"""The report of a values model learning from several sets (``fuse.targets.plane``): per set a table of each method's
measures, and where several methods ran, each one's paired difference against the others."""

from __future__ import annotations

from typing import Any

PLANE_MEASURES = {
    "rated": (
        ("ccc_valence", "valence CCC"),
        ("pearson_valence", "r"),
        ("r2_valence", "R²"),
        ("rmse_valence", "RMSE"),
        ("ccc_arousal", "arousal CCC"),
        ("pearson_arousal", "r"),
        ("r2_arousal", "R²"),
        ("rmse_arousal", "RMSE"),
        ("quadrant_accuracy", "quadrant %"),
    ),
    "placed": (
        ("valence_roc_auc", "valence ROC-AUC"),
        ("arousal_roc_auc", "arousal ROC-AUC"),
        ("calm_over_sad_roc_auc", "calm over sad"),
        ("quadrant_accuracy", "quadrant % (signs)"),
    ),
}
DEFINITIONS = (
    "Each figure is pooled over the set's clips and averaged over the repeats; the interval beside a headline is the"
    " 95 % interval of its per-fold mean, corrected for overlapping training rows (Nadeau and Bengio). On a rated set:"
    " Lin's CCC, Pearson's r, R² and RMSE on the rated scale, and the share of clips whose predicted signs give their"
    " rated quadrant. On a placed set: the ROC-AUC of predicted valence for the positive-valence classes against the"
    " others (arousal likewise), of valence for Q4 (calm) against Q3 (sad), and the share of clips whose predicted"
    " signs give their class's quadrant."
)


def plane_tables(document: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per set, the header and rows of its table: a row per method."""
    tables = {}
    for name, info in document["sets"].items():
        columns = PLANE_MEASURES[info["kind"]]
        rows = []
        for method, per_set in document["methods"].items():
            measures = per_set[name]
            rows.append([method, *(_cell(measures.get(key), percent=key == "quadrant_accuracy") for key, _ in columns)])
        tables[name] = (["method", *(label for _, label in columns)], rows)
    return tables


def _cell(summary: dict[str, Any] | None, *, percent: bool) -> str:
    if not summary or summary.get("mean") is None:
        return "-"
    scale = 100 if percent else 1
    text = f"{scale * summary['mean']:.1f}" if percent else f"{summary['mean']:.3f}"
    if "per_fold" in summary:
        low, high = (scale * v for v in summary["per_fold"]["interval"])
        text += f" ({low:.1f}-{high:.1f})" if percent else f" ({low:.3f}-{high:.3f})"
    return text


def plane_markdown(document: dict[str, Any]) -> str:
    """``report.md``: what learnt from what, each set's table, the paired differences and the choices made."""
    sets = ", ".join(f"{name} ({info['kind']}, {info['clips']} clips)" for name, info in document["sets"].items())
    lines = [
        "# A values model learning from several sets",
        "",
        f"Sets: {sets}; the scale {document['scale']}; inputs: {', '.join(document['inputs'])}.",
        f"Repeats: {document['repeats']}; each set scored on its own folds, the other sets' rows in every training fold"
        " of a method that reads them.",
        "",
        DEFINITIONS,
        "",
    ]
    for name, (header, rows) in plane_tables(document).items():
        lines += [f"## {name}", "", _table(header, rows), ""]
        weights = {m: w[name] for m, w in document["placed_weights"].items() if any(k != "None" for k in w[name])}
        for method, tally in weights.items():
            chosen = ", ".join(f"{w} in {n} folds" for w, n in tally.items())
            lines += [f"{method}: the placed songs' weight chosen on inner folds: {chosen}.", ""]
    for method, per_set in document.get("paired", {}).items():
        for name, per_measure in per_set.items():
            for measure, against in per_measure.items():
                for other, d in against.items():
                    low, high = d["interval"]
                    lines.append(
                        f"- {method} against {other}, {name} {measure}: {d['mean']:+.3f} ({low:+.3f}, {high:+.3f}),"
                        f" {d['won']}-{d['lost']}"
                    )
    return "\n".join(lines).rstrip() + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
