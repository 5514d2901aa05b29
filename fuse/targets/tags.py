"""Multi-label emotion tags (paper 004's framing): one-vs-rest heads over the same models, and tagging metrics.

Each tag is a two-class problem, all of them fitted in one pass of the loop of ``fuse.loop``: per outer fold a
head per tag (its C chosen on inner folds stratified by that tag, grouped as the outer ones), late fusion and
``integrated`` as for classes. Every tag sees the same outer folds in every repeat: the manifest's, then folds
that balance every tag at once (``manifests.folds.iterative_folds``), whatever the tag. A tag is called present at and
above the probability whose F1 is best on that fold's inner out-of-fold probabilities, never on the outer fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, label_ranking_average_precision_score, roc_auc_score

from mvemo.cache.read import CacheLike, opened
from mvemo.fuse.cv import classify
from mvemo.fuse.fitting import Trainings
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.loop import Basis, FoldFit, FoldInputs, FoldOutcome, FoldRuns, Labels, TooFewToChoose, run_folds
from mvemo.fuse.models import FusionModel
from mvemo.fuse.selection import SelectionConfig
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
class TagPredictions:
    """Out-of-fold predictions of one model in one repeat over the scored tags: the rows some tag scored, their
    folds, and per (row, tag) the truth, the probability, the threshold chosen on inner folds of the row's outer
    fold and whether the pair is scored (a fold whose training rows could not teach a tag scores none of its rows
    for it), each (n_rows, n_tags); per fold, what the inner folds chose for each tag (``described``)."""

    rows: np.ndarray
    folds: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    thresholds: np.ndarray
    scored: np.ndarray
    described: list[dict[str, str]] = field(default_factory=list)


@dataclass
class TagResult:
    """Cross-validated tags: the metrics per model over every repeat (``metrics[model]``), each repeat's
    predictions and folds, and the tags no fold could learn with the reason."""

    tags: tuple[str, ...]
    n_folds: int
    repeats: list[dict[str, TagPredictions]]
    repeat_folds: list[np.ndarray]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # the clips each model used and those it left out with why (as ``fuse.loop.clip_counts``, whatever the tag)
    clips: dict[str, Any] = field(default_factory=dict)
    # models that no fold could score, each with the reason
    unscored_models: dict[str, str] = field(default_factory=dict)
    basis: Basis | None = None  # what the run scored from, for the final model (``fuse.loop.Basis``)

    def choices(self) -> dict[str, dict[str, list[str]]]:
        """Per scored tag and model, what the inner folds chose in each outer fold of the first repeat."""
        scored = [tag for tag in self.tags if tag not in self.unscored]
        first = self.repeats[0]
        chosen = {tag: {m: [d[tag] for d in p.described if tag in d] for m, p in first.items()} for tag in scored}
        return {
            tag: {m: described for m, described in per_model.items() if described} for tag, per_model in chosen.items()
        }


@dataclass(frozen=True)
class Tags:
    """The target of several tags per clip: a two-class head per tag over the same models and folds, its threshold
    chosen on inner folds (``fuse.loop.TargetKind``). ``learnable``: the tags that enough groups carry and lack to
    choose on inner folds (``unlearnable``); the others are not fitted."""

    labels: Labels
    tags: tuple[str, ...]
    learnable: tuple[int, ...]
    head: Any
    selection: SelectionConfig

    def tag_labels(self, t: int) -> Labels:
        assert self.labels.tag_matrix is not None
        column = self.labels.tag_matrix[:, t].astype(np.int64)
        return Labels((f"not {self.tags[t]}", self.tags[t]), column, column, self.labels.tag_matrix)

    def fitter(self, groups: list[str], inputs: FoldInputs) -> FoldFit:
        per_tag = {t: self.tag_labels(t) for t in self.learnable}
        trainings = {
            t: Trainings(labels.y, groups, 2, self.head, self.selection, inputs.patches, inputs.upper, inputs.in_sample)
            for t, labels in per_tag.items()
        }

        def fit_tags(
            model: FusionModel, read: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, fold: int
        ) -> FoldOutcome:
            n = (len(test), len(self.tags))
            out = FoldOutcome(test, np.zeros(n), {}, {}, [], None, np.full(len(self.tags), 0.5), np.zeros(n, bool))
            for t, labels in per_tag.items():
                tag = self.tags[t]
                try:
                    one = classify(model, read, train, test, fold, labels, trainings[t], inner=True)
                except TooFewToChoose as err:
                    out.failed[tag] = str(err)
                    continue
                out.notes += [f"tag {tag!r}: {note}" for note in one.notes]
                if len(one.rows):
                    out.pred[:, t] = one.pred[:, 1]
                    out.scored[:, t] = True  # type: ignore[index]
                    out.threshold[t] = one.threshold
                    out.choices[tag], out.described[tag] = one.choices, one.described
            return out

        return fit_tags


def cross_validate_tags(
    cache: CacheLike,
    *,
    head: Any = None,
    selection: SelectionConfig | None = None,
    reference: str | None = None,
    **options: Any,
) -> TagResult:
    """Every tag's nested cross-validation in one pass of the loop (``fuse.loop.run_folds``, whose ``options`` it
    takes: models, n_folds, repeats, executor, progress, upper, run), then the tagging metrics per model
    (``TAG_METRIC_DEFINITIONS``). ``head`` and ``selection`` as ``fuse.cv.cross_validate``'s; no model is compared
    with a ``reference`` here. A tag with fewer than two groups of present (or absent) clips among some fold's training
    rows cannot choose on inner folds (``fuse.loop.TooFewToChoose``): it is reported unscored with the reason, and
    the others are scored; any other error stops the run.

    Raises
    ------
    ConfigError
        When the cache holds no tags, or no tag can be scored.
    """
    selection = selection or SelectionConfig()
    head = head if head is not None else make_head(selection=selection)
    with opened(cache) as cache:
        targets = cache.targets
        if not targets.tags:
            raise ConfigError(
                f"cache {str(cache.path)!r} holds no tags; give the manifest a 'tags' column (`mvemo manifest scan ROOT"
                " --labels LABELS.csv`) and run `mvemo extract` again to store them"
            )
        matrix = targets.tag_matrix.astype(np.int64)
        hopeless = {t: why for t in range(len(targets.tags)) if (why := unlearnable(matrix[:, t], cache.groups))}
        labels = Labels(("clips",), np.zeros(len(cache), np.int64), np.zeros(len(cache), np.int64), targets.tag_matrix)
        learnable = tuple(t for t in range(len(targets.tags)) if t not in hopeless)
        kind = Tags(labels, tuple(targets.tags), learnable, head, selection)
        runs = run_folds(cache, lambda cache, chosen: kind, **options)
    tags = kind.tags
    failed: dict[str, str] = {}  # each tag's first failure, in the order the fits ran
    for outcomes in runs.outcomes:
        for fold in range(runs.n_folds):
            for per_fold in outcomes.values():
                for tag, why in per_fold[fold].failed.items():
                    failed.setdefault(tag, why)
    unscored = {tag: hopeless.get(t) or failed[tag] for t, tag in enumerate(tags) if t in hopeless or tag in failed}
    if len(unscored) == len(tags):
        tag, why = next(iter(unscored.items()))
        raise ConfigError(f"no tag could be scored (tag {tag!r}: {why})")
    kept = [t for t, tag in enumerate(tags) if tag not in unscored]
    per_repeat = [
        {m.name: p for m in runs.models if (p := _pooled(runs, r, m.name, kept, matrix)) is not None}
        for r in range(len(runs.outcomes))
    ]
    unscored_models = {}
    for m in runs.models:
        if m.name not in per_repeat[0]:
            unscored_models[m.name] = "no clip has all its inputs in the cache (see the clips table)"
        elif not per_repeat[0][m.name].scored.any(axis=0).all():
            unscored_models[m.name] = "no tag scored it"
    result = TagResult(
        tags, runs.n_folds, per_repeat, runs.repeat_folds, unscored=unscored, notes=runs.notes, basis=runs.basis
    )
    result.notes += [f"tag {tag!r}: not scored: {why}" for tag, why in unscored.items()]
    result.clips = {
        "total": runs.clips["total"],
        "models": {m: {k: c[k] for k in ("used", "left_out")} for m, c in runs.clips["models"].items()},
    }
    result.unscored_models = unscored_models
    result.notes += [f"{name}: not scored: {why}" for name, why in unscored_models.items()]
    names = [tags[t] for t in kept]
    models = [m.name for m in runs.models if m.name not in unscored_models]
    result.metrics = {m: _over_repeats([tag_metrics(names, *_arrays(rep[m])) for rep in per_repeat]) for m in models}
    return result


def _pooled(runs: FoldRuns, r: int, model: str, kept: list[int], matrix: np.ndarray) -> TagPredictions | None:
    """One repeat of one model on the ``kept`` tags: the rows some of them scored, in the cache's order."""
    pieces = runs.pooled(r, model)
    if not pieces:
        return None
    rows = np.concatenate([p.rows for p in pieces])
    scored = np.concatenate([p.scored[:, kept] for p in pieces])  # type: ignore[index]
    proba = np.concatenate([p.pred[:, kept] for p in pieces])
    thresholds = np.concatenate([np.broadcast_to(p.threshold[kept], (len(p.rows), len(kept))) for p in pieces])
    take = np.flatnonzero(scored.any(axis=1))
    take = take[np.argsort(rows[take], kind="stable")]
    rows = rows[take]
    folds = runs.repeat_folds[r][rows]
    described = [p.described for p in pieces]
    return TagPredictions(rows, folds, matrix[rows][:, kept], proba[take], thresholds[take], scored[take], described)


def _arrays(p: TagPredictions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return p.y, p.proba, p.thresholds, p.scored


def unlearnable(y: np.ndarray, groups: list[str]) -> str | None:
    """Why nothing can be chosen on inner folds for a tag (``y`` 0/1 per row), or None: fewer than two groups carry
    it, or lack it. Such a tag is reported unscored, and a saved model gives it its share (``fuse.saved.targets``)."""
    carried = len({g for g, v in zip(groups, y) if v})
    lacked = len({g for g, v in zip(groups, y) if not v})
    if min(carried, lacked) >= 2:
        return None
    return f"{carried} group(s) carry it and {lacked} lack it; choosing on inner folds needs 2 or more of each"


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
        tag: {k: spread([run["per_tag"][tag][k] for run in runs]) for k in runs[0]["per_tag"][tag]}
        for tag in runs[0]["per_tag"]
    }
    summary["repeats"], summary["n_rows"] = len(runs), runs[0]["n_rows"]
    return summary
