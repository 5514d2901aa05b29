"""Pictures of a CV result: a confusion matrix per model and one ROC plot of every model (paper 001 Fig. 6, 7)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mvemo.fuse.metrics import macro_roc


def confusion_png(confusion: list[list[int]], classes: tuple[str, ...], title: str, path: Path) -> Path:
    """Counts summed over folds, rows true class, columns predicted, each row shaded by its share."""
    matrix = np.asarray(confusion)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.75 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), dpi=100)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], path: Path) -> Path:
    """Each model's macro-average one-vs-rest ROC curve, its AUC in the legend."""
    fig, ax = plt.subplots(figsize=(6.5, 6), dpi=100)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})" if auc is not None else name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Macro-average ROC, out-of-fold")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def roc_curves(
    predictions: dict[str, tuple[np.ndarray, np.ndarray]], aucs: dict[str, float | None]
) -> dict[str, tuple[np.ndarray, np.ndarray, float | None]]:
    return {name: (*macro_roc(y, proba), aucs[name]) for name, (y, proba) in predictions.items()}


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
        spread = np.array([[100 * s["mean"] - 100 * s["min"] for s in stats], [100 * s["max"] - 100 * s["mean"] for s in stats]])
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
