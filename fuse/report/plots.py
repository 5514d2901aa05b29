"""Pictures of a CV result: a confusion matrix per model and one ROC plot of every model (paper 001 Fig. 6, 7), and
a file's emotion timeline; a class has one colour in all of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects

from mvemo.fuse.metrics import macro_roc
from mvemo.manifests.targets import quadrants, value_categories

TITLE_PX_PER_CHAR = 9  # a 12-point title's mean character width at 100 dpi, with a margin (measured: 8.5)


def confusion_png(confusion: list[list[int]], classes: tuple[str, ...], title: str, path: Path) -> Path:
    """Counts summed over folds with each row's shares (rows true class, columns predicted), shaded by share; each
    class named in its colour, the colour a timeline gives it."""
    matrix = np.asarray(confusion)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.75 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), dpi=100)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(
                j, i, f"{matrix[i, j]}\n{100 * shares[i, j]:.0f}%", ha="center", va="center", color=colour, fontsize=8
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    colours = class_colours(classes)
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        label.set(color=colours[label.get_text()], fontweight="bold", path_effects=outline(colours[label.get_text()]))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    # over the figure, not the axes: the class names widen the left
    fig.suptitle(wrapped(title, int(fig.get_figwidth() * fig.dpi / TITLE_PX_PER_CHAR)))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def outline(colour: str) -> list[patheffects.AbstractPathEffect]:
    """A dark outline for text of a colour too light to read on white (contrast under 3:1, WCAG's floor for bold
    text: Okabe and Ito's yellow, orange and sky blue); none for the others."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in matplotlib.colors.to_rgb(colour)]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    if 1.05 / (luminance + 0.05) >= 3:
        return []
    return [patheffects.withStroke(linewidth=1.0, foreground="#444444")]


def wrapped(text: str, width: int) -> str:
    """Each line of ``text`` in lines of about ``width`` characters, broken after a space, a comma or a plus (a fused
    model's name, such as ``integrated(onedcnn,twodcnn,crnn)`` or ``musicnn+lldstats``, has no space); a piece longer
    than ``width`` keeps a line of its own."""
    lines = []
    for given in text.split("\n"):
        lines.append("")
        for piece in re.findall(r"[^ ,+]+[ ,+]*|[ ,+]+", given):
            if lines[-1] and len(lines[-1]) + len(piece.rstrip()) > width:
                lines.append("")
            lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def model_styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct colour and line style per model, readable with a dozen models or more (9 colours x 4 styles;
    tab10's grey is left to the chance line)."""
    colours = [c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 7]  # type: ignore[attr-defined]
    dashes = ["-", "--", "-.", (0, (1, 1))]
    return {name: {"color": colours[i % 9], "linestyle": dashes[(i + i // 9) % 4]} for i, name in enumerate(names)}


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], path: Path, *, repeats: int = 1) -> Path:
    """Each model's macro-average one-vs-rest ROC curve in its own colour and line style, its AUC in the legend
    (both the mean over ``repeats``)."""
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=100)
    styles = model_styles(list(curves))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.4, label=f"{name} (AUC {auc:.3f})" if auc is not None else name, **styles[name])
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    over = f", mean over {repeats} repeats" if repeats > 1 else ""
    ax.set_title(f"Macro-average ROC, out-of-fold{over}")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def comparison_png(metrics: dict[str, dict[str, Any]], path: Path) -> Path:
    """Per model: the accuracy of every test fold of every repeat as points, with their mean and 95 % interval as a
    bar; and the macro F1 of each repeat's pooled out-of-fold predictions as points, with their mean."""
    names = list(metrics)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.42 * len(names)), dpi=100, sharey=True)
    rng = np.random.default_rng(0)
    repeats = max(m["repeats"] for m in metrics.values())
    for i, name in enumerate(names):
        accuracy = metrics[name]["accuracy"]
        points = [100 * v for rep in accuracy["folds"] for v in rep if v is not None]
        left.scatter(points, i + rng.uniform(-0.18, 0.18, len(points)), s=9, color="tab:blue", alpha=0.45, linewidths=0)
        low, high = (100 * v for v in accuracy["interval"])
        left.plot([low, high], [i, i], color="black", linewidth=2)
        left.plot([100 * accuracy["mean"]], [i], marker="D", color="tab:red", markersize=5)
        f1 = [100 * v for v in metrics[name]["f1_macro_per_repeat"]]
        right.scatter(f1, i + rng.uniform(-0.18, 0.18, len(f1)), s=12, color="tab:green", alpha=0.6, linewidths=0)
        right.plot([100 * metrics[name]["f1_macro"]], [i], marker="D", color="tab:red", markersize=5)
    left.set_xlabel(wrapped("accuracy % per test fold of every repeat; mean and 95 % interval", 45))
    right.set_xlabel(wrapped(f"macro F1 % of each repeat's pooled predictions ({repeats} repeat(s)); mean", 45))
    for ax in (left, right):
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    left.set_yticks(range(len(names)), [wrapped(name, 32) for name in names])
    left.invert_yaxis()
    fig.suptitle("Models compared over the same folds")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roc_curves(
    predictions: dict[str, list[tuple[np.ndarray, np.ndarray]]], aucs: dict[str, float | None]
) -> dict[str, tuple[np.ndarray, np.ndarray, float | None]]:
    """Each model's macro ROC curve averaged over its repeats' (y, proba), with its AUC (the mean over repeats)."""
    curves = {}
    for name, runs in predictions.items():
        per_repeat = [macro_roc(y, proba) for y, proba in runs]
        curves[name] = (per_repeat[0][0], np.mean([tpr for _, tpr in per_repeat], axis=0), aucs[name])
    return curves


def accuracy_bars_png(accuracy: dict[str, dict[str, dict[str, float]]], path: Path, *, title: str) -> Path:
    """Grouped bars: for each group (a net), each member's (an optimizer's) mean accuracy, whiskers to min and max."""
    groups = list(accuracy)
    members = list(dict.fromkeys(m for group in accuracy.values() for m in group))
    width = 0.8 / len(members)
    fig, ax = plt.subplots(figsize=(1.5 + 1.4 * len(groups), 4.5), dpi=100)
    for i, member in enumerate(members):
        x = [g + (i - (len(members) - 1) / 2) * width for g, name in enumerate(groups) if member in accuracy[name]]
        stats = [accuracy[name][member] for name in groups if member in accuracy[name]]
        mean = np.array([100 * s["mean"] for s in stats])
        spread = np.array(
            [[100 * s["mean"] - 100 * s["min"] for s in stats], [100 * s["max"] - 100 * s["mean"] for s in stats]]
        )
        spread = np.clip(spread, 0, None)  # the mean of equal folds can exceed their max by a rounding error
        ax.bar(x, mean, width, yerr=spread, capsize=3, label=member)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("test accuracy % (mean over folds, min-max)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# Okabe & Ito's palette ("Color Universal Design", 2008): eight colours told apart with any colour vision.
COLOUR_BLIND_SAFE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")


def class_colours(classes: list[str] | tuple[str, ...]) -> dict[str, str]:
    """One colour per class, in class order, as ``#rrggbb``: Okabe and Ito's eight for up to eight classes, told
    apart with any colour vision; tab20 past eight."""
    if len(classes) <= len(COLOUR_BLIND_SAFE):
        palette = list(COLOUR_BLIND_SAFE)
    else:
        tab20 = matplotlib.colormaps["tab20"].colors  # type: ignore[attr-defined]
        palette = [matplotlib.colors.to_hex(c) for c in tab20]
    return {c: palette[i % len(palette)] for i, c in enumerate(classes)}


def window_edges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The seconds each of overlapping windows stands for: those nearer its middle than its neighbours' middles
    (n + 1 edges, from the first start to the last end)."""
    middles = (starts + ends) / 2
    return np.concatenate([[starts[0]], (middles[1:] + middles[:-1]) / 2, [ends[-1]]])


def timeline_png(
    starts: np.ndarray,
    ends: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    title: str,
    path: Path,
    *,
    faces: dict[str, np.ndarray] | None = None,
) -> Path:
    """Each class's probability stacked over time, the argmax as a band beneath. Windows overlap: each one
    stands for the seconds nearer its middle than its neighbours' middles. ``faces`` (``face_share`` and a
    ``face_<expression>`` mean probability per window) adds the expression track beneath: the expressions stacked,
    scaled by the share of frames that show a face."""
    colours = class_colours(classes)
    edges = window_edges(starts, ends)
    rows = [6, 1] + ([4] if faces else [])
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 4 + 2 * bool(faces)), sharex=True, height_ratios=rows)
    ax, band = axes[0], axes[1]
    _stacked(ax, edges, proba, classes, colours)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    for left, right, row in zip(edges[:-1], edges[1:], proba):
        band.axvspan(left, right, color=colours[classes[int(np.argmax(row))]])
    band.set_yticks([])
    band.set_ylabel("argmax", rotation=0, ha="right", va="center", fontsize=8)
    if faces:
        expressions = [name.removeprefix("face_") for name in faces if name != "face_share"]
        shares = np.stack([faces[f"face_{e}"] for e in expressions], axis=1) * faces["face_share"][:, None]
        _stacked(axes[2], edges, shares, expressions, class_colours(expressions))
        axes[2].set_ylabel("faces:\nexpression x\nshare shown", fontsize=8)
    return _save_timeline(fig, axes[-1], starts, ends, path)


def _save_timeline(fig: Any, bottom: Any, starts: np.ndarray, ends: np.ndarray, path: Path) -> Path:
    """A timeline figure's time axis on its ``bottom`` panel, from the first start to the last end, saved to
    ``path``."""
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(starts[0], ends[-1])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _stacked(ax: Any, edges: np.ndarray, values: np.ndarray, names: list[str], colours: dict[str, str]) -> None:
    """``values`` (windows x names) stacked as steps over the windows' ``edges``, a legend to the right."""
    tops = np.cumsum(values, axis=1)
    bottoms = tops - values
    for k, name in enumerate(names):
        low, high = np.append(bottoms[:, k], bottoms[-1, k]), np.append(tops[:, k], tops[-1, k])
        ax.fill_between(edges, low, high, step="post", color=colours[name], label=name, linewidth=0)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, ncols=legend_columns(len(names)))


LEGEND_ROWS = 14  # the entries a timeline's legend holds in one column beside its panel


def legend_columns(entries: int) -> int:
    """Columns enough for a legend of ``entries`` beside a timeline's panel (40 classes in one column overflowed it)."""
    return max(1, -(-entries // LEGEND_ROWS))


def tags_timeline_png(
    starts: np.ndarray,
    ends: np.ndarray,
    proba: np.ndarray,
    tags: list[str],
    thresholds: list[float],
    title: str,
    path: Path,
) -> Path:
    """Each tag's probability over time as steps, its threshold dotted; beneath, a row per tag filled where the
    tag is called (at or above its threshold)."""
    colours = class_colours(tags)
    edges = window_edges(starts, ends)
    fig, (ax, band) = plt.subplots(
        2, 1, figsize=(10, 4 + 0.2 * len(tags)), sharex=True, height_ratios=[6, 1 + 0.3 * len(tags)]
    )
    for k, tag in enumerate(tags):
        ax.step(edges, np.append(proba[:, k], proba[-1, k]), where="post", color=colours[tag], label=tag)
        ax.axhline(thresholds[k], color=colours[tag], linestyle=":", linewidth=0.8)
        for left, right, p in zip(edges[:-1], edges[1:], proba[:, k]):
            if p >= thresholds[k]:
                band.fill_between([left, right], k, k + 0.8, color=colours[tag], linewidth=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability (dotted: threshold)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, ncols=legend_columns(len(tags)))
    band.set_yticks(np.arange(len(tags)) + 0.4, tags, fontsize=7)
    band.set_ylim(0, len(tags))
    return _save_timeline(fig, band, starts, ends, path)


QUADRANT_COLOURS = {
    "Q1": "#E69F00",
    "Q2": "#D55E00",
    "Q3": "#0072B2",
    "Q4": "#009E73",
    "high": "#E69F00",
    "low": "#0072B2",
}
VALUE_COLOURS = {"valence": "#CC79A7", "arousal": "#56B4E9"}


def category_colours(categories: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The colour of each class, tag or quadrant: the quadrants' own (``QUADRANT_COLOURS``, as every value figure
    draws them) where every category is one, else ``class_colours``."""
    if categories and all(c in QUADRANT_COLOURS for c in categories):
        return {c: QUADRANT_COLOURS[c] for c in categories}
    return class_colours(categories)


def values_timeline_png(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    names: list[str],
    scale: tuple[float, float],
    title: str,
    path: Path,
) -> Path:
    """Valence and arousal (or one of them) over time on their scale, its middle dashed; beneath, the quadrant of
    each window (Q1 both high, Q2 valence low and arousal high, Q3 both low, Q4 valence high and arousal low)."""
    edges = window_edges(starts, ends)
    colours = VALUE_COLOURS
    fig, (ax, band) = plt.subplots(2, 1, figsize=(10, 4), sharex=True, height_ratios=[6, 1])
    for k, name in enumerate(names):
        ax.step(
            edges, np.append(values[:, k], values[-1, k]), where="post", color=colours[name], label=name, linewidth=2
        )
    ax.axhline(sum(scale) / 2, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(*scale)
    ax.set_ylabel("value")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    categories = value_categories(len(names))
    for left, right, index in zip(edges[:-1], edges[1:], quadrants(values, scale)):
        quadrant = categories[index]
        band.axvspan(left, right, color=QUADRANT_COLOURS[quadrant])
        band.text((left + right) / 2, 0.5, quadrant, ha="center", va="center", fontsize=7, color="white")
    band.set_yticks([])
    band.set_ylabel("quadrant", rotation=0, ha="right", va="center", fontsize=8)
    return _save_timeline(fig, band, starts, ends, path)
