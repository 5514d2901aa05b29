"""Nested cross-validation of the fusion models for the classes (``--target label``), over the one loop of
``fuse.loop``: each model's class probabilities on every outer fold of every repeat, its metrics, and each model
against a reference model named before any scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mvemo.cache.read import Cache, CacheLike, opened
from mvemo.fuse.fitting import Trainings, fit, inner_threshold
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.heads.upper_net import UpperLayers
from mvemo.fuse.loop import Basis, FoldFit, FoldInputs, FoldOutcome, Labels, TooFewToChoose, run_folds
from mvemo.fuse.metrics import mean_present, paired_differences, summarize, summarize_repeats
from mvemo.fuse.models import FusionModel
from mvemo.fuse.selection import SelectionConfig
from mvemo.manifests.errors import ConfigError
from mvemo.manifests.executor import Executor, Progress
from mvemo.manifests.folds import TooFewGroups


def cache_labels(cache: Cache) -> Labels:
    """The cache's class labels (``--target label``).

    Raises
    ------
    ConfigError
        When the manifest gave the clips no class.
    """
    if not cache.classes:
        raise ConfigError(
            f"cache {str(cache.path)!r}: its manifest has no 'label' column; use --target tags or"
            " --target valence,arousal for the targets it has"
        )
    return Labels(cache.classes, cache.y, cache.y)


@dataclass
class ModelPredictions:
    """Out-of-fold predictions of one model in one repeat: rows of the cache, their true classes, folds and
    probabilities, and per fold what was chosen on inner folds (``choices``), in a few words (``described``), and
    the accuracy of the inner folds' out-of-fold predictions at what was chosen (``inner_accuracy``, None where the
    model chose nothing on inner folds)."""

    rows: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    proba: np.ndarray
    choices: list[dict[str, Any]] = field(default_factory=list)
    described: list[str] = field(default_factory=list)
    inner_accuracy: list[float | None] = field(default_factory=list)
    # per fold, for two classes, the probability of the second above which the inner folds' F1 is best
    thresholds: list[float] = field(default_factory=list)

    def outcomes(self, n_folds: int) -> list[np.ndarray]:
        """Per test fold, the (m, 2) array of each scored row and whether its most probable class is right."""
        right = np.argmax(self.proba, axis=1) == self.y
        return [np.stack([self.rows[self.folds == f], right[self.folds == f]], axis=1) for f in range(n_folds)]


@dataclass
class CvResult:
    classes: tuple[str, ...]
    n_folds: int
    protocol: str
    predictions: dict[str, ModelPredictions]
    fine_tuned: tuple[str, ...] = ()
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # every repeat's predictions (the first is ``predictions``) and the folds each repeat drew
    repeats: list[dict[str, ModelPredictions]] = field(default_factory=list)
    repeat_folds: list[np.ndarray] = field(default_factory=list)
    clips: dict[str, Any] = field(default_factory=dict)
    models: list[FusionModel] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # models that no fold could score, each with the reason: reported so, never with a figure
    unscored: dict[str, str] = field(default_factory=dict)
    # models that read embeddings of nets fine-tuned per fold (their inner scores are optimistic)
    fine_tuned_models: list[str] = field(default_factory=list)
    basis: Basis | None = None  # what the run scored from, for the final model (``fuse.loop.Basis``)


@dataclass(frozen=True)
class Classes:
    """The target of one class per clip: a classifier head's probabilities per class (``fuse.loop.TargetKind``)."""

    labels: Labels
    head: Any
    selection: SelectionConfig

    def fitter(self, groups: list[str], inputs: FoldInputs) -> FoldFit:
        trainings = Trainings(
            self.labels.y,
            groups,
            len(self.labels.classes),
            self.head,
            self.selection,
            inputs.patches,
            inputs.upper,
            inputs.in_sample,
        )
        return lambda model, read, train, test, fold: classify(model, read, train, test, fold, self.labels, trainings)


def classify(
    model: FusionModel,
    read: dict[str, np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    fold: int,
    labels: Labels,
    trainings: Trainings,
    *,
    inner: bool = False,
) -> FoldOutcome:
    """``model`` fitted on the ``train`` rows of ``read`` to ``labels`` and its probabilities for the ``test`` rows;
    ``inner``: compute the inner folds' probabilities even where nothing is chosen on them (a tag's threshold is, as
    is that of two classes).

    Models on the same rows share their fits through ``trainings`` (a pair's head serves ``integrated`` too). A
    class absent from the training rows gets probability 0, with a note; with fewer than two classes nothing is
    learnt and the test rows are not scored: a guess of 1/n for every class would be scored as if it were a
    prediction, and flatter a rare tag's ranking.
    """
    classes, y = labels.classes, labels.y
    n_classes = len(classes)
    proba = np.zeros((len(test), n_classes))
    absent = [classes[c] for c in range(n_classes) if not np.any(y[train] == c)]
    note = f"{model.name}, fold {fold}: no training clip of class {', '.join(absent)}" if absent else None
    if n_classes - len(absent) < 2:
        note = f"{note}; fewer than two classes to learn: its {len(test)} test clip(s) are not scored"
        return FoldOutcome(test[:0], proba[:0], notes=[note])
    try:
        fitted = fit(model.node, trainings.on(train, read), inner=inner or n_classes == 2)
    except TooFewGroups as err:
        rare_class = classes[int(err.label)]  # type: ignore[call-overload]
        raise TooFewToChoose(
            f"{model.name}, fold {fold}: class {rare_class!r} has fewer than 2 groups among the"
            " training folds, and every choice is made on inner folds of them; add clips of that class, or"
            " draw fewer folds (`mvemo manifest folds MANIFEST --k`)"
        ) from None
    except ConfigError as err:
        raise ConfigError(f"{model.name}, fold {fold}: {err}") from None
    proba = fitted.proba({i: X[test] for i, X in read.items()})
    notes = [] if note is None else [f"{note}, predicted with probability 0"]
    inner_accuracy = (
        None if fitted.inner_proba is None else float(np.mean(np.argmax(fitted.inner_proba, axis=1) == y[train]))
    )
    threshold = inner_threshold(fitted, y[train], trainings.on(train, read)) if n_classes == 2 else 0.5
    return FoldOutcome(test, proba, fitted.choices(), fitted.describe(), notes, inner_accuracy, threshold)


def cross_validate(
    cache: CacheLike,
    *,
    models: str | None = None,
    n_folds: int | None = None,
    repeats: int = 1,
    reference: str | None = None,
    head: Any = None,
    selection: SelectionConfig | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    upper: Mapping[str, UpperLayers] | None = None,
    run: str | None = None,
) -> CvResult:
    """Every model x every fold x every repeat of the classes, metrics per model, and each model against a reference
    model.

    Parameters
    ----------
    cache : Cache or path-like
        The cache, open or by its folder.
    models : str, optional
        ``--models`` (the grammar of ``fuse.grammar``); default the models of ``fuse.models.available_models``.
    n_folds : int, optional
        Must equal the cache's folds when given.
    repeats : int
        Runs of the whole protocol over fold seeds (above 1 only for inputs no fold trained).
    reference : str, optional
        The model every other is compared with, named before any scoring; default the first unimodal model listed.
    head : estimator, optional
        A scikit-learn classifier, cloned per fit (default ``LogisticHead``, C chosen on inner folds).
    selection : SelectionConfig, optional
        How choices are made on inner folds (a config's ``[fuse]`` table).
    executor : object with ``map``, optional
        Where the (repeat, fold) fits run; serial by default.
    progress : callable, optional
        ``progress(fits, total)`` wraps the fits' results as they arrive (a progress bar).
    upper : mapping of str to UpperLayers, optional
        For each input of activations at a cut, the published layers above it (``fuse.heads.upper``).
    run : str, optional
        As ``fuse.loop.run_folds``'s.
    """
    selection = selection or SelectionConfig()
    head = head if head is not None else make_head(selection=selection)
    named: list[str] = []

    def classes(cache: Cache, chosen: list[FusionModel]) -> Classes:
        named.append(reference_model(chosen, reference))  # before any fit, so that no outer score picks it
        return Classes(cache_labels(cache), head, selection)

    with opened(cache) as cache:
        runs = run_folds(
            cache,
            classes,
            models=models,
            n_folds=n_folds,
            repeats=repeats,
            executor=executor,
            progress=progress,
            upper=upper,
            run=run,
        )
    k, chosen, labels = runs.n_folds, runs.models, runs.kind.labels
    per_repeat: list[dict[str, ModelPredictions]] = []
    unscored: dict[str, str] = {}
    for r, folds in enumerate(runs.repeat_folds):
        predictions = {}
        for model in chosen:
            pieces = runs.pooled(r, model.name)
            if not pieces:
                unscored[model.name] = "no clip has all its inputs in the cache (see the clips table)"
                continue
            rows = np.concatenate([p.rows for p in pieces])
            predictions[model.name] = ModelPredictions(
                rows,
                labels.y[rows],
                folds[rows],
                np.concatenate([p.pred for p in pieces]),
                [p.choices for p in pieces],
                [p.described for p in pieces],
                [p.inner_accuracy for p in pieces],
                [p.threshold for p in pieces],
            )
        per_repeat.append(predictions)
    result = CvResult(labels.classes, k, runs.protocol, per_repeat[0], runs.fine_tuned, notes=runs.notes)
    result.repeats, result.repeat_folds, result.clips, result.models = per_repeat, runs.repeat_folds, runs.clips, chosen
    result.clip_ids, result.groups, result.unscored = runs.clip_ids, runs.groups, unscored
    result.fine_tuned_models, result.basis = runs.fine_tuned_models, runs.basis
    result.metrics = {
        m.name: summarize_repeats(
            [summarize(p.y, p.proba, p.folds, k) for p in (rep[m.name] for rep in per_repeat)], k=k
        )
        | {"inner_accuracy": mean_present([a for rep in per_repeat for a in rep[m.name].inner_accuracy])}
        for m in chosen
        if m.name not in unscored
    }
    if not result.metrics:
        raise ConfigError(
            f"no model scored a clip, so there is nothing to report ({why_unscored(unscored, runs.notes)})"
        )
    reference = named[0]
    result.comparison = compare(per_repeat, reference, k=k) if reference not in unscored else None
    if reference in unscored:
        result.notes.append(f"{reference}, the reference, has no scored clip: no model is compared with it")
    return result


def why_unscored(unscored: dict[str, str], notes: list[str]) -> str:
    """Why each model scored no clip: what its first fold that scored none said, else why it has none."""
    said = {name: [n.removeprefix(f"{name}, ") for n in notes if n.startswith(f"{name}, fold ")] for name in unscored}
    return "; ".join(f"{name}: {said[name][0] if said[name] else reason}" for name, reason in unscored.items())


def reference_model(models: list[FusionModel], reference: str | None) -> str:
    """The model every other is compared with: ``reference`` (one of ``models``), else the first unimodal one
    listed, else the first listed. Named before any fit, so that no outer score picks it."""
    names = [m.name for m in models]
    if reference is not None:
        if reference not in names:
            raise ConfigError(f"--reference {reference!r} is not among the models {names}; name one of them")
        return reference
    return next((m.name for m in models if m.kind == "unimodal"), names[0])


def compare(per_repeat: list[dict[str, ModelPredictions]], reference: str, *, k: int) -> dict[str, Any]:
    """Every scored model against ``reference`` on the clips both score, fold by fold over every repeat
    (``fuse.metrics.paired_differences``)."""
    theirs = [rep[reference].outcomes(k) for rep in per_repeat]
    models = {}
    for name in per_repeat[0]:
        if name != reference:
            versus = paired_differences([rep[name].outcomes(k) for rep in per_repeat], theirs, k=k)
            if versus is not None:
                models[name] = versus
    return {"reference": reference, "models": models}
