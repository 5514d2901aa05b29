"""Multi-label emotion tags (paper 004's framing): one-vs-rest heads over the same models, and tagging metrics.

Each tag is a two-class problem run through the whole nested cross-validation of ``fuse.cv``: per outer fold a
head per tag (its C chosen on inner folds stratified by that tag, grouped as the outer ones), late fusion and
``integrated`` as for classes. Every tag sees the same outer folds in every repeat: the manifest's, then folds
that balance every tag at once (``manifests.folds.iterative_folds``), whatever the tag. A tag is called present at and above the
probability whose F1 is best on that fold's inner out-of-fold probabilities, never on the outer fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, label_ranking_average_precision_score, roc_auc_score

from mvemo.cache.read import Cache, CacheLike, opened
from mvemo.fuse.cv import CvResult, Labels, TooFewToChoose, cross_validate, new_run, release_run
from mvemo.manifests.errors import ConfigError

TAG_METRIC_DEFINITIONS = {
    "ROC-AUC macro": "per tag, the ROC-AUC of its out-of-fold probabilities over a repeat's pooled clips; the mean"
    " over tags with both present and absent clips; averaged over repeats",
    "ROC-AUC micro": "the ROC-AUC of every (clip, tag) pair's probability pooled, averaged over repeats",
    "mAP": "per tag, the average precision (the area under its precision-recall curve, sklearn's step form); the"
    " mean over tags; averaged over repeats",
    "AP micro": "the average precision of every (clip, tag) pair pooled",
    "F1": "per tag, with the tag called present at and above the threshold chosen on each fold's inner folds; its"
    " macro mean over tags",
    "LRAP": "label-ranking average precision over the scored tags: per clip with at least one of them, the mean over"
    " its tags of the share of tags ranked at or above it that are its own; averaged over clips",
}


@dataclass
class TagResult:
    """Cross-validated tags: per tag its ``CvResult`` (two classes, the tag second), the metrics per model over
    every repeat (``metrics[model]``), and the tags no fold could learn with the reason."""

    tags: tuple[str, ...]
    n_folds: int
    per_tag: dict[str, CvResult]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # the clips each model used and those it left out with why (as ``fuse.cv.clip_counts``, whatever the tag)
    clips: dict[str, Any] = field(default_factory=dict)
    # models that no fold could score, each with the reason
    unscored_models: dict[str, str] = field(default_factory=dict)


def cross_validate_tags(cache: CacheLike, **options: Any) -> TagResult:
    """Every tag's nested cross-validation, then the tagging metrics per model (``TAG_METRIC_DEFINITIONS``).

    ``options`` are ``fuse.cv.cross_validate``'s (models, n_folds, repeats, head, selection, executor, progress,
    upper, run: every tag's CV reads the same run's matrices). A tag with fewer than two groups of present (or absent) clips among some fold's training rows cannot
    choose on inner folds (``fuse.cv.TooFewToChoose``): it is reported unscored with the reason, and the others are
    scored; any other error stops the run.

    Raises
    ------
    ConfigError
        When the cache holds no tags, or no tag can be scored.
    """
    with opened(cache) as cache:
        return _cross_validate_tags(cache, **options)


def _cross_validate_tags(cache: Cache, **options: Any) -> TagResult:
    targets, groups = cache.targets, cache.groups
    if not targets.tags:
        raise ConfigError(
            f"cache {str(cache.path)!r} holds no tags; give the manifest a 'tags' column (`mvemo manifest scan ROOT"
            " --labels LABELS.csv`) and run `mvemo extract` again to store them"
        )
    matrix = targets.tag_matrix.astype(np.int64)
    per_tag, unscored = {}, {}
    run = options.pop("run", None)
    options["run"] = run or new_run()  # every tag reads the same matrices
    for t, tag in enumerate(targets.tags):
        labels = Labels((f"not {tag}", tag), matrix[:, t], matrix[:, t], targets.tag_matrix)
        why = unlearnable(matrix[:, t], groups)
        if why:
            unscored[tag] = why
            continue
        try:
            per_tag[tag] = cross_validate(cache, labels=labels, **options)
        except TooFewToChoose as err:
            unscored[tag] = str(err)
    if run is None:
        release_run(options["run"])
    if not per_tag:
        tag, why = next(iter(unscored.items()))
        raise ConfigError(f"no tag could be scored (tag {tag!r}: {why})")
    first = next(iter(per_tag.values()))
    common = [note for note in first.notes if all(note in r.notes for r in per_tag.values())]
    own = [f"tag {tag!r}: {note}" for tag, r in per_tag.items() for note in r.notes if note not in common]
    result = TagResult(targets.tags, first.n_folds, per_tag, unscored=unscored, notes=common + own)
    result.notes += [f"tag {tag!r}: not scored: {why}" for tag, why in unscored.items()]
    result.clips = {
        "total": first.clips["total"],
        "models": {m: {k: c[k] for k in ("used", "left_out")} for m, c in first.clips["models"].items()},
    }
    models = [m for m in first.predictions if all(m in r.predictions for r in per_tag.values())]
    result.unscored_models = {
        m.name: first.unscored.get(m.name, "no tag scored it") for m in first.models if m.name not in models
    }
    result.notes += [f"{name}: not scored: {why}" for name, why in result.unscored_models.items()]
    result.metrics = {m: _over_repeats([tag_metrics(*_repeat(per_tag, m, r)) for r in range(len(first.repeats))]) for m in models}
    return result


def unlearnable(y: np.ndarray, groups: list[str]) -> str | None:
    """Why nothing can be chosen on inner folds for a tag (``y`` 0/1 per row), or None: fewer than two groups carry
    it, or lack it. Such a tag is reported unscored, and a saved model gives it its share (``fuse.saved.targets``)."""
    carried = len({g for g, v in zip(groups, y) if v})
    lacked = len({g for g, v in zip(groups, y) if not v})
    if min(carried, lacked) >= 2:
        return None
    return f"{carried} group(s) carry it and {lacked} lack it; choosing on inner folds needs 2 or more of each"


def _repeat(per_tag: dict[str, CvResult], model: str, r: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One repeat of one model: the tags, and on the rows some tag scored, the true tags, the probabilities, the
    inner-chosen thresholds and whether each (row, tag) was scored, shape (n_rows, n_tags) each. A tag leaves out
    the test rows of a fold whose training rows could not teach it (``fuse.cv.fit_fold``)."""
    predictions = [result.repeats[r][model] for result in per_tag.values()]
    rows = sorted(set().union(*(p.rows.tolist() for p in predictions)))
    at = {row: i for i, row in enumerate(rows)}
    shape = (len(rows), len(predictions))
    y, proba, thresholds, scored = np.zeros(shape, np.int64), np.zeros(shape), np.full(shape, 0.5), np.zeros(shape, bool)
    for t, p in enumerate(predictions):
        take = [at[row] for row in p.rows.tolist()]
        y[take, t], proba[take, t], scored[take, t] = p.y, p.proba[:, 1], True
        thresholds[take, t] = np.asarray(p.thresholds)[p.folds]
    return list(per_tag), y, proba, thresholds, scored


def tag_metrics(
    tags: list[str], y: np.ndarray, proba: np.ndarray, thresholds: np.ndarray, scored: np.ndarray | None = None
) -> dict[str, Any]:
    """The tagging metrics of one repeat (``TAG_METRIC_DEFINITIONS``): ``y`` 0/1, ``proba`` and ``thresholds``
    of shape (n_rows, n_tags), each computed on the (row, tag) pairs ``scored`` (default all). A per-tag AUC or AP
    is None where the tag is always present or always absent among its scored rows."""
    scored = np.ones(y.shape, bool) if scored is None else scored
    called = proba >= thresholds
    per_tag = {}
    for t, tag in enumerate(tags):
        rows = scored[:, t]
        truth, score = y[rows, t], proba[rows, t]
        both = 0 < truth.sum() < len(truth)
        per_tag[tag] = {
            "roc_auc": float(roc_auc_score(truth, score)) if both else None,
            "average_precision": float(average_precision_score(truth, score)) if both else None,
            "f1": float(f1_score(truth, called[rows, t], zero_division=0)),
            "prevalence": float(truth.mean()) if len(truth) else None,
            "n_rows": int(rows.sum()),
        }
    pairs_y, pairs_p = y[scored], proba[scored]
    return {
        "roc_auc_macro": _mean([m["roc_auc"] for m in per_tag.values()]),
        "roc_auc_micro": float(roc_auc_score(pairs_y, pairs_p)) if 0 < pairs_y.sum() < pairs_y.size else None,
        "map": _mean([m["average_precision"] for m in per_tag.values()]),
        "ap_micro": float(average_precision_score(pairs_y, pairs_p)) if pairs_y.sum() else None,
        "f1_macro": float(np.mean([m["f1"] for m in per_tag.values()])),
        "lrap": _lrap(y, proba, scored),
        "per_tag": per_tag,
        "n_rows": len(y),
    }


def _lrap(y: np.ndarray, proba: np.ndarray, scored: np.ndarray) -> float | None:
    """Label-ranking average precision (scikit-learn's) over each row's scored tags, the rows with at least one of
    their scored tags present; None where no row has one."""
    rows = [(truth[on][None], p[on][None]) for truth, p, on in zip(y, proba, scored) if truth[on].any()]
    return float(np.mean([label_ranking_average_precision_score(t, p) for t, p in rows])) if rows else None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _over_repeats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's mean over repeats with its min and max (``{"mean", "min", "max"}``), per tag too."""

    def spread(values: list[float | None]) -> dict[str, float] | None:
        present = [v for v in values if v is not None]
        return {"mean": float(np.mean(present)), "min": min(present), "max": max(present)} if present else None

    keys = [k for k in runs[0] if k not in ("per_tag", "n_rows")]
    summary: dict[str, Any] = {k: spread([run[k] for run in runs]) for k in keys}
    summary["per_tag"] = {
        tag: {k: spread([run["per_tag"][tag][k] for run in runs]) for k in runs[0]["per_tag"][tag]} for tag in runs[0]["per_tag"]
    }
    summary["repeats"], summary["n_rows"] = len(runs), runs[0]["n_rows"]
    return summary
