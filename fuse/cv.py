"""Nested cross-validation of the fusion models over the cache's folds, repeated over fold seeds where allowed.

For test fold k, every model is fitted on the other folds' rows of the inputs
written for fold k (nets fine-tuned without fold k), with each choice made on
inner folds of those rows (``fuse.compose``), and predicts fold k. Repeat 0 uses
the manifest's folds, stored in the cache; repeat r > 0 draws folds again with
seed r, groups and stratification kept, which only inputs that no fold trained
allow: re-splitting would put clips that trained a fold's nets into its test set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mvemo.cache.read import Cache, CacheLike, opened
from mvemo.fuse.compose import Trainings, fit
from mvemo.fuse.heads.families import make_head
from mvemo.fuse.heads.upper import UpperLayers
from mvemo.fuse.inputs import input_set_name, layers_above, missing_reasons, patch_count, read_input
from mvemo.fuse.metrics import best_f1_threshold, mean_present, paired_differences, summarize, summarize_repeats
from mvemo.fuse.models import FusionModel, incomplete_inputs, per_patch_inputs, random_init_nets, select_models
from mvemo.fuse.provenance import fine_tuned_nets, protocol
from mvemo.fuse.selection import SelectionConfig
from mvemo.manifests.errors import CacheError, ConfigError
from mvemo.manifests.executor import Executor, Progress
from mvemo.manifests.folds import TooFewGroups, draw_folds, iterative_folds, require_whole_groups


class TooFewToChoose(ConfigError):
    """A class has fewer than two groups among a fold's training rows: nothing can be chosen on inner folds."""


@dataclass(frozen=True)
class Labels:
    """What the heads learn: class names, each row's class index, and what the folds of repeats are stratified by:
    ``strata`` (the classes), or for one tag of ``fuse.targets.tags`` every tag at once (``tag_matrix``), so that every
    tag sees the same folds."""

    classes: tuple[str, ...]
    y: np.ndarray
    strata: np.ndarray
    tag_matrix: np.ndarray | None = None


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


def check_folds(cache: Cache, n_folds: int | None) -> int:
    """The cache's number of folds; ``n_folds`` must agree, and no fold may split a group (exit 2 otherwise)."""
    if len(cache) == 0 or cache.folds.min() < 0:
        raise CacheError(
            f"cache {str(cache.path)!r} has no folds; run `mvemo manifest folds MANIFEST --k 6`, then `mvemo extract` again"
        )
    require_whole_groups(cache.folds, cache.groups, cache.clip_ids, where=f"cache {str(cache.path)!r}")
    stored = int(cache.folds.max()) + 1
    if n_folds is not None and n_folds != stored:
        raise ConfigError(
            f"--folds {n_folds}: the cache holds the manifest's {stored} folds, and re-splitting would put clips"
            f" that trained a fold's nets into its test set; use --folds {stored} (or leave --folds out)"
        )
    return stored


# The matrices of the run in progress in this process (a cross-validation, or fuse's CV and final model): the sets
# one step (a fold, the final model) reads, kept for the next step while it reads them too (a set every fold shares,
# LLD statistics, a frozen net's embeddings) and dropped as soon as a step does not; all dropped when the run ends
# (``release_run``) or another starts. Memory: one step's inputs at a time, never every set a run has read.
_RUN: dict[str, Any] = {"id": None, "matrices": {}}


def run_matrices(run: str, cache: Cache, set_names: Iterable[str]) -> dict[str, np.ndarray]:
    """The float32 input matrix of each of ``set_names`` (``fuse.inputs.read_input``), those the ``run``'s last
    step read in this process reused, the others read."""
    if _RUN["id"] != run:
        _RUN.update(id=run, matrices={})
    held = _RUN["matrices"]
    keys = {set_name: (str(cache.path), set_name, cache.modified_ns(set_name)) for set_name in set(set_names)}
    matrices = {s: held[key] if key in held else read_input(cache, s)[0] for s, key in keys.items()}
    _RUN["matrices"] = {key: matrices[s] for s, key in keys.items()}
    return matrices


def release_run(run: str) -> None:
    """Drop the matrices that ``run`` read in this process."""
    if _RUN["id"] == run:
        _RUN.update(id=None, matrices={})


def new_run() -> str:
    """A name for a run whose matrices ``run_matrices`` holds until ``release_run``."""
    return uuid.uuid4().hex


@dataclass
class FoldOutcome:
    rows: np.ndarray
    proba: np.ndarray
    choices: dict[str, Any]
    described: str
    note: str | None
    inner_accuracy: float | None = None
    threshold: float = 0.5


@dataclass(frozen=True)
class FoldInputs:
    """What every fit of one test fold reads, fixed before any fit: the set each input reads, and per model the rows
    that hold all its inputs (read once, so that a writer still adding rows cannot make the fits and the clip counts
    disagree)."""

    sets: dict[str, str]
    usable: dict[str, np.ndarray]
    patches: dict[str, int]
    upper: dict[str, UpperLayers] = field(default_factory=dict)


def fold_inputs(cache: Cache, models: list[FusionModel], n_folds: int) -> list[FoldInputs]:
    """The ``FoldInputs`` of each test fold."""
    done: dict[str, np.ndarray] = {}
    per_fold = []
    for fold in range(n_folds):
        sets = {i: input_set_name(cache, i, fold) for m in models for i in m.inputs}
        for set_name in sets.values():
            if set_name not in done:
                done[set_name] = cache.done(set_name)
        usable = {m.name: np.logical_and.reduce([done[sets[i]] for i in m.inputs]) for m in models}
        patches = {i: n for i, s in sets.items() if (n := patch_count(cache, s)) is not None}
        per_fold.append(FoldInputs(sets, usable, patches))
    return per_fold


def fit_fold(
    cache: CacheLike,
    models: tuple[FusionModel, ...],
    head: Any,
    selection: SelectionConfig,
    labels: Labels,
    folds: np.ndarray,
    fold: int,
    inputs: FoldInputs,
    run: str,
) -> dict[str, FoldOutcome]:
    """Every model fitted on the rows outside ``fold`` of ``folds`` and its probabilities for the rows inside (its
    inputs' matrices those of ``run``, ``run_matrices``); ``cache`` the run's open cache, or in a worker process
    its folder, opened there.

    A model uses the rows that hold all its inputs (``inputs.usable``). Models on the same rows share
    their fits (a pair's head serves ``integrated`` too). A fold's note says what it
    lacked: test rows, or classes among its training rows (those classes get
    probability 0; with fewer than two, nothing is learnt and the fold's test rows are not scored: a guess of 1/n
    for every class would be scored as if it were a prediction, and flatter a rare tag's ranking).
    """
    with opened(cache) as cache:
        groups = cache.groups
        matrices = run_matrices(run, cache, inputs.sets.values())
    classes, y = labels.classes, labels.y
    n_classes = len(classes)
    trainings = Trainings(y, groups, n_classes, head, selection, inputs.patches, inputs.upper)
    outcomes = {}
    for model in models:
        read = {i: matrices[inputs.sets[i]] for i in model.inputs}
        usable = inputs.usable[model.name]
        train = np.flatnonzero(usable & (folds != fold))
        test = np.flatnonzero(usable & (folds == fold))
        proba = np.zeros((len(test), n_classes))
        if len(test) == 0:
            outcomes[model.name] = FoldOutcome(
                test, proba, {}, "", f"{model.name}, fold {fold}: no test clip has all its inputs; not scored"
            )
            continue
        absent = [classes[c] for c in range(n_classes) if not np.any(y[train] == c)]
        note = f"{model.name}, fold {fold}: no training clip of class {', '.join(absent)}" if absent else None
        if n_classes - len(absent) < 2:
            note = f"{note}; fewer than two classes to learn: its {len(test)} test clip(s) are not scored"
            outcomes[model.name] = FoldOutcome(test[:0], proba[:0], {}, "", note)
            continue
        try:  # a tag's threshold is chosen on inner folds, as the saved model's is: they are computed where nothing asked
            fitted = fit(model.node, trainings.on(train, read), inner=labels.tag_matrix is not None)
        except TooFewGroups as err:
            raise TooFewToChoose(
                f"{model.name}, fold {fold}: class {classes[int(err.label)]!r} has fewer than 2 groups among the"  # type: ignore[call-overload]
                " training folds, and every choice is made on inner folds of them; add clips of that class, or"
                " draw fewer folds (`mvemo manifest folds MANIFEST --k`)"
            ) from None
        except ConfigError as err:
            raise ConfigError(f"{model.name}, fold {fold}: {err}") from None
        proba = fitted.proba({i: X[test] for i, X in read.items()})
        note = None if note is None else f"{note}, predicted with probability 0"
        inner = None if fitted.inner_proba is None else float(np.mean(np.argmax(fitted.inner_proba, axis=1) == y[train]))
        threshold = 0.5
        if n_classes == 2 and fitted.inner_proba is not None:
            threshold = best_f1_threshold(y[train], fitted.inner_proba[:, 1])
        outcomes[model.name] = FoldOutcome(test, proba, fitted.choices(), fitted.describe(), note, inner, threshold)
    return outcomes


def repeat_folds(
    cache: Cache, models: list[FusionModel], k: int, repeats: int, strata: np.ndarray, *, tag_matrix: np.ndarray | None = None
) -> list[np.ndarray]:
    """The folds of each repeat: the manifest's, then folds drawn with seeds 1, 2, ... (a draw equal to an earlier
    repeat's is skipped: it would count one split twice), stratified by ``strata``, or by every tag of
    ``tag_matrix`` at once (``manifests.folds.iterative_folds``). More than one repeat needs inputs that no fold
    trained (exit 2 otherwise). Drawn folds keep the cache's ``group`` column whole."""
    if repeats < 1:
        raise ConfigError(f"--repeats {repeats}: expected 1 or more")
    if repeats > 1:
        per_fold = sorted({s for m in models for i in m.inputs for s in [input_set_name(cache, i, 0)] if "/fold" in s})
        if per_fold:
            raise ConfigError(
                f"--repeats {repeats}: {', '.join(per_fold)} and the other folds' sets were fine-tuned per fold of the"
                " manifest, so other folds would test clips that trained them; use --repeats 1 with these, or"
                " embeddings of nets used as they are (--finetune none)"
            )
    drawn, seen = [cache.folds], {_partition(cache.folds)}
    for seed in range(1, 20 * repeats):
        if len(drawn) == repeats:
            return drawn
        if tag_matrix is None:
            folds = draw_folds(strata, cache.groups, k=k, seed=seed)
        else:
            folds = iterative_folds(tag_matrix, cache.groups, k=k, seed=seed)
        if _partition(folds) not in seen:
            drawn.append(folds)
            seen.add(_partition(folds))
    if len(drawn) < repeats:
        raise ConfigError(f"--repeats {repeats}: these clips and groups allow only {len(drawn)} different splits into {k} folds")
    return drawn


def _partition(folds: np.ndarray) -> frozenset[frozenset[int]]:
    """A split as the set of its folds' rows, whatever the folds' numbers."""
    return frozenset(frozenset(np.flatnonzero(folds == f).tolist()) for f in np.unique(folds))


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
    labels: Labels | None = None,
    run: str | None = None,
) -> CvResult:
    """Every model x every fold x every repeat, metrics per model, and each model against a reference model.

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
    labels : Labels, optional
        What the heads learn; default the cache's classes (``cache_labels``).
    run : str, optional
        The run whose matrices the fits read (``run_matrices``), kept for the caller to reuse (the final model, the
        other tags) and release; default a run of this call's own, released when it ends.
    """
    selection = selection or SelectionConfig()
    head = head if head is not None else make_head(selection=selection)
    with opened(cache) as cache:
        k = check_folds(cache, n_folds)
        chosen = select_models(cache, models)
        reference = reference_model(chosen, reference)
        labels = labels or cache_labels(cache)
        all_folds = repeat_folds(cache, chosen, k, repeats, labels.strata, tag_matrix=labels.tag_matrix)
        classes, y_all, used_protocol = labels.classes, labels.y, protocol(cache)
        fine_tuned = tuple(fine_tuned_nets(cache))
        per_fold = [replace(f, upper=layers_above(cache, f.sets, upper or {})) for f in fold_inputs(cache, chosen, k)]
        clips, left_out_notes = clip_counts(cache, chosen, per_fold, labels)
        if not any(inputs.usable[m.name].any() for m in chosen for inputs in per_fold):
            first = next(iter(clips["models"].values()))["left_out"][0]
            raise CacheError(
                f"cache {str(cache.path)!r}: no clip holds every input of any model of {[m.name for m in chosen]}"
                f" (clip {first['clip_id']!r}: {first['reason']}); compute the inputs with `mvemo extract`, or name"
                " models of inputs the cache holds"
            )
        incomplete = incomplete_inputs(cache)
        if models is None:
            notes = [f"{name}: left out of the default models: {why}" for name, why in incomplete.items()]
        else:
            notes = [f"{name} is incomplete: {why}" for name, why in incomplete.items()]
        random_init, per_patch = random_init_nets(cache), per_patch_inputs(cache)
        clip_ids, groups = cache.clip_ids, cache.groups
        tuned_models = [m.name for m in chosen if any("/fold" in per_fold[0].sets[i] for i in m.inputs)]
        tasks = [(r, fold) for r in range(repeats) for fold in range(k)]
        n = len(tasks)
        # in this process the fits read the open cache; worker processes get its folder and open it themselves
        where = cache if executor is None else cache.path
        fixed = ([where] * n, [tuple(chosen)] * n, [head] * n, [selection] * n, [labels] * n)
        this_run = run or new_run()
        results = (map if executor is None else executor.map)(
            fit_fold,
            *fixed,
            [all_folds[r] for r, _ in tasks],
            [fold for _, fold in tasks],
            [per_fold[f] for _, f in tasks],
            [this_run] * n,
        )
        outputs = list(progress(results, len(tasks)) if progress else results)
        if run is None:
            release_run(this_run)
    for out in outputs:
        if isinstance(out, BaseException):
            raise out
    notes += left_out_notes
    if random_init and models is None:
        notes.append(
            f"{', '.join(random_init)}: embeddings of random weights, never fine-tuned; reported alone and left out of"
            " every default fusion (name them in --models to fuse them)"
        )
    if per_patch and models is None:
        notes.append(
            f"{', '.join(per_patch)}: per-patch inputs, each for its own patch-level or fine-tuned head; reported alone"
            " and left out of every default fusion (name them in --models, e.g. late(musicnn.upper,i3d), to fuse them)"
        )
    per_repeat = []
    unscored: dict[str, str] = {}
    for r in range(repeats):
        parts = [(fold, out) for (rr, fold), out in zip(tasks, outputs) if rr == r]
        predictions = {}
        for model in chosen:
            pieces = [out[model.name] for _, out in parts]
            notes += [p.note if repeats == 1 else f"repeat {r}: {p.note}" for p in pieces if p.note is not None]
            rows = np.concatenate([p.rows for p in pieces])
            if len(rows) == 0:
                unscored[model.name] = "no clip has all its inputs in the cache (see the clips table)"
                continue
            predictions[model.name] = ModelPredictions(
                rows,
                y_all[rows],
                all_folds[r][rows],
                np.concatenate([p.proba for p in pieces]),
                [p.choices for p in pieces],
                [p.described for p in pieces],
                [p.inner_accuracy for p in pieces],
                [p.threshold for p in pieces],
            )
        per_repeat.append(predictions)
    result = CvResult(tuple(classes), k, used_protocol, per_repeat[0], fine_tuned, notes=notes)
    result.repeats, result.repeat_folds, result.clips, result.models = per_repeat, all_folds, clips, chosen
    result.clip_ids, result.groups, result.unscored, result.fine_tuned_models = clip_ids, groups, unscored, tuned_models
    result.metrics = {
        m.name: summarize_repeats([summarize(p.y, p.proba, p.folds, k) for p in (rep[m.name] for rep in per_repeat)], k=k)
        | {"inner_accuracy": mean_present([a for rep in per_repeat for a in rep[m.name].inner_accuracy])}
        for m in chosen
        if m.name not in unscored
    }
    result.comparison = compare(per_repeat, reference, k=k) if reference not in unscored else None
    if reference in unscored:
        notes.append(f"{reference}, the reference, has no scored clip: no model is compared with it")
    return result


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


def clip_counts(
    cache: Cache, models: list[FusionModel], per_fold: list[FoldInputs], labels: Labels
) -> tuple[dict[str, Any], list[str]]:
    """Clips in the cache per class, and per model the clips it uses and those it leaves out with the reason
    (a clip is left out when a set its test fold reads lacks it)."""
    classes, y, folds = labels.classes, labels.y, cache.folds
    reasons: dict[str, dict[int, str]] = {}
    per_model: dict[str, dict[str, Any]] = {}
    for model in models:
        missing: dict[int, list[str]] = {}
        for fold, inputs in enumerate(per_fold):
            for name in model.inputs:
                set_name = inputs.sets[name]
                if set_name not in reasons:
                    reasons[set_name] = missing_reasons(cache, set_name)
                for row, reason in reasons[set_name].items():
                    if folds[row] == fold:
                        missing.setdefault(row, []).append(reason)
        used = np.flatnonzero(
            np.logical_or.reduce([inputs.usable[model.name] & (folds == f) for f, inputs in enumerate(per_fold)])
        )
        per_model[model.name] = {
            "used": len(used),
            "used_per_class": {c: int(np.sum(y[used] == i)) for i, c in enumerate(classes)},
            "left_out": [{"clip_id": cache.clip_ids[row], "reason": "; ".join(why)} for row, why in sorted(missing.items())],
        }
    counts = {"total": len(cache), "per_class": {c: int(np.sum(y == i)) for i, c in enumerate(classes)}, "models": per_model}
    notes = [
        f"{name}: {len(m['left_out'])} clip(s) left out, listed in the report" for name, m in per_model.items() if m["left_out"]
    ]
    return counts, notes
